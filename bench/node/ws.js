// Broadcast (default) or echo server on the `ws` package, for bench/compare.sh.
const { WebSocketServer } = require('ws');
const [host, port] = (process.env.ADDR || '127.0.0.1:5000').split(':');
const mode = process.argv[2] || 'broadcast';
// DEFLATE=1: permessage-deflate as melody's shared mode negotiates it (no context takeover,
// level 1, nothing under 256 bytes), but compressed for each recipient, as ws does.
const perMessageDeflate = process.env.DEFLATE === '1'
  ? { serverNoContextTakeover: true, clientNoContextTakeover: true, threshold: 256, zlibDeflateOptions: { level: 1 } }
  : false;
const wss = new WebSocketServer({ host, port: Number(port), maxPayload: 16 << 20, perMessageDeflate });
wss.on('connection', (ws) => {
  ws.on('error', () => {});
  ws.on('message', (data, isBinary) => {
    if (mode === 'echo') {
      ws.send(data, { binary: isBinary });
    } else if (!isBinary) {
      for (const client of wss.clients) {
        if (client.readyState === 1) client.send(data, { binary: false });
      }
    }
  });
});
wss.on('listening', () => console.log(`node-ws (${mode}): ws://${host}:${port}/`));
