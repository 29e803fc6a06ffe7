// Broadcast (default) or echo server on uWebSockets.js, for bench/compare.sh: the same
// behaviour as the `ws` server beside it, in uWebSockets' own idiom (a broadcast is one
// `publish` to a topic every connection subscribed to).
const uWS = require('@trufflesuite/uws-js-unofficial');

const [host, port] = (process.env.ADDR || '127.0.0.1:5000').split(':');
const mode = process.argv[2] || 'broadcast';

const app = uWS.App();
app
  .ws('/*', {
    // Large enough that nothing is dropped for a slow reader (as ws and melody's 256-message
    // queue of 64-byte messages): the benchmark counts losses, and uWebSockets skips a
    // subscriber over this limit.
    maxBackpressure: 64 * 1024 * 1024,
    maxPayloadLength: 16 * 1024 * 1024,
    // Pings every ~2 minutes of silence, as its default (melody: every 54 s).
    idleTimeout: 120,
    sendPingsAutomatically: true,
    open: (ws) => {
      if (mode === 'broadcast') ws.subscribe('all');
    },
    message: (ws, message, isBinary) => {
      if (mode === 'echo') {
        ws.send(message, isBinary);
      } else if (!isBinary) {
        app.publish('all', message, false);
      }
    },
  })
  .listen(host, Number(port), (listening) => {
    if (!listening) {
      console.error(`uws: cannot listen on ${host}:${port}`);
      process.exit(1);
    }
    console.log(`uws (${mode}): ws://${host}:${port}/`);
  });
