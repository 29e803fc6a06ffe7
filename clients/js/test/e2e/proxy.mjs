// A TCP proxy that loses connections the ways networks do, for the end-to-end tests of the
// client (test/e2e/) and of the live example's page in Chromium
// (crates/melody/tests/browser/live.mjs), which imports it from here.

import net from 'node:net';

/**
 * A TCP proxy on a free loopback port forwarding every connection to `target` (a URL's host
 * and port). Two ways to lose the network:
 *
 * - `cut()` resets both sides of every open connection, as a lost network does (no closing
 *   handshake, no FIN), and resets every new connection as soon as it is accepted until
 *   `restore()`: the page behind it can neither keep nor get a connection meanwhile.
 * - `stall()` stops forwarding in both directions on every open connection and closes nothing:
 *   each side still sees an open TCP connection, but nothing it sends arrives (a half-open
 *   connection, as after a NAT or Wi-Fi that silently dropped the path). Both sockets of each
 *   connection are unpiped and paused, so the proxy reads no more of either (bytes, and a FIN
 *   if one comes, wait in its buffers and the kernel's) and writes nothing. A connection
 *   accepted while stalled is held the same way, unanswered: a black hole does not refuse a
 *   connection, it leaves it hanging, so the page learns nothing from a refusal and has only
 *   its own timers to go by. `resume()` forwards again, everything: what waited in the
 *   buffers is delivered in order, held connections go through as if the path had come back
 *   while they were being set up, and new ones are forwarded at once.
 */
export async function startProxy(target) {
  const open = new Set();
  let cutOff = false;
  let refused = 0;
  let stalled = false;
  let held = 0;
  // An RST rather than a FIN: neither side gets to close cleanly.
  const reset = (socket) => {
    if (!socket.destroyed) socket.resetAndDestroy();
  };
  const forward = ({ client, upstream }) => {
    client.pipe(upstream);
    upstream.pipe(client);
    client.resume();
    upstream.resume();
  };
  // Unpiping also pauses each socket (it has no other reader): nothing more is read of it.
  const hold = ({ client, upstream }) => {
    client.unpipe(upstream);
    upstream.unpipe(client);
    client.pause();
    upstream.pause();
  };
  const server = net.createServer((client) => {
    // Resets and their echoes are what this proxy is for, not errors of the test.
    client.on('error', () => {});
    if (cutOff) {
      refused += 1;
      reset(client);
      return;
    }
    const upstream = net.connect(Number(target.port), target.hostname);
    upstream.on('error', () => {});
    const pair = { client, upstream };
    open.add(pair);
    // Whichever side goes, the other goes with it (the proxy keeps no half-open connection).
    const drop = () => {
      open.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', drop);
    upstream.on('close', drop);
    if (stalled) {
      // Not piped, so not read: the request waits in the proxy until `resume()`.
      held += 1;
      hold(pair);
    } else {
      forward(pair);
    }
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return {
    port: server.address().port,
    /** How many connections are open through the proxy. */
    get connections() {
      return open.size;
    },
    /** How many connections were refused since the last `cut()`. */
    get refused() {
      return refused;
    },
    /** Resets every open connection and refuses new ones; how many connections were open. */
    cut() {
      cutOff = true;
      const count = open.size;
      for (const { client, upstream } of [...open]) {
        reset(client);
        reset(upstream);
      }
      open.clear();
      return count;
    },
    /** Forwards new connections again; how many were refused since `cut()`. */
    restore() {
      cutOff = false;
      const count = refused;
      refused = 0;
      return count;
    },
    /** Stops forwarding on every open connection, closing none, and holds new ones
     * unanswered; how many connections were open. */
    stall() {
      stalled = true;
      for (const pair of open) hold(pair);
      return open.size;
    },
    /** Forwards again on every connection, held ones included; how many connections were
     * accepted (and held) since `stall()`. */
    resume() {
      stalled = false;
      for (const pair of open) forward(pair);
      const count = held;
      held = 0;
      return count;
    },
    close() {
      for (const { client, upstream } of open) {
        client.destroy();
        upstream.destroy();
      }
      server.close();
    },
  };
}
