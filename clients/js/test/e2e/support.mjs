// Plumbing of the end-to-end tests against the live example server (crates/melody/examples/
// live.rs): where the server is, a TCP proxy that loses connections the ways networks do, a
// client on `ws` with an event log, and waiting on conditions without sleeping blindly.
//
// The server: `MELODY_LIVE_URL` (the URL the example prints, e.g. http://127.0.0.1:5000/), or
// the URL given as the first script argument; without either, the tests start the built
// example themselves (`MELODY_LIVE_BIN`, default <workspace>/target/debug/examples/live).

import { spawn } from 'node:child_process';
import net from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import WebSocket from 'ws';

import { Client } from '../../dist/melody-client.js';

/** Upper bound of any single wait; only reached when a test fails. */
export const WAIT_MS = 10_000;

const workspace = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');

/** The live example's http:// URL, starting it (killed at exit) when none is given. */
export async function liveServer() {
  const given = process.env.MELODY_LIVE_URL ?? process.argv.slice(2).find((arg) => arg.startsWith('http'));
  if (given) return new URL(given);
  const binary = process.env.MELODY_LIVE_BIN ?? join(workspace, 'target', 'debug', 'examples', 'live');
  const child = spawn(binary, [], { env: { ...process.env, ADDR: '127.0.0.1:0' }, stdio: ['ignore', 'pipe', 'inherit'] });
  process.on('exit', () => child.kill());
  return new Promise((resolve, reject) => {
    let seen = '';
    child.on('error', (error) => reject(new Error(`cannot start ${binary} (build it with ` +
      `\`cargo build -p melody-ws --features live --example live\`): ${error.message}`)));
    child.stdout.on('data', (chunk) => {
      seen += chunk;
      const url = /http:\/\/\S+/.exec(seen);
      if (!url) return;
      // From now on the server must not keep the test process alive; it goes when that does.
      child.unref();
      child.stdout.unref();
      resolve(new URL(url[0]));
    });
    child.on('exit', (code) => reject(new Error(`${binary} exited (${code}) before printing its URL: ${seen}`)));
  });
}

/** The WebSocket endpoint of the server at `http`, through `port` when given (a proxy). */
export function wsUrl(http, port) {
  return `ws://${http.hostname}:${port ?? http.port}/ws`;
}

/** A unique suffix, so that topics of runs against one server never meet. */
export function tag() {
  return `${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`;
}

/**
 * A `Client` on `ws` for the user `name` (sent as `?name=`, as the live example wants), with
 * `log`: its events in order, and `sockets`: how many sockets it opened. `options` override.
 */
export function liveClient(url, name, options = {}) {
  const log = [];
  let sockets = 0;
  class CountingWebSocket extends WebSocket {
    constructor(...args) {
      super(...args);
      sockets += 1;
    }
  }
  const client = new Client(url, {
    WebSocket: CountingWebSocket,
    tokenParam: 'name',
    token: () => name,
    ...options,
  });
  client.onEvent('connecting', (info) => log.push({ event: 'connecting', ...info, at: Date.now() }));
  client.onEvent('connected', () => log.push({ event: 'connected', at: Date.now() }));
  client.onEvent('disconnected', (info) => log.push({ event: 'disconnected', ...info, at: Date.now() }));
  client.onEvent('overflow', (envelope) => log.push({ event: 'overflow', envelope, at: Date.now() }));
  return { client, log, sockets: () => sockets };
}

/** Resolves once `condition()` is truthy (checked every 10 ms), failing after `ms` with `what`. */
export async function until(what, condition, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await condition();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Connects `client` and waits until it is connected. */
export async function connected(client, label = 'the client') {
  client.connect();
  await until(`${label} to connect`, () => client.state === 'connected');
}

/**
 * A TCP proxy on a free loopback port in front of `target` (a URL's host and port):
 * - `cut()` resets both sides of every open connection (no closing handshake, no FIN: a lost
 *   network) and resets every new one until `restore()`;
 * - `freeze()` stops forwarding bytes in both directions without closing anything (a
 *   half-open connection: a peer or a network that vanished silently), new connections
 *   included, until `thaw()`.
 */
export async function startProxy(target) {
  const open = new Set();
  let cutOff = false;
  let frozen = false;
  let refused = 0;
  const reset = (socket) => {
    if (!socket.destroyed) socket.resetAndDestroy();
  };
  const forward = ({ client, upstream }) => {
    client.pipe(upstream);
    upstream.pipe(client);
    client.resume();
    upstream.resume();
  };
  const hold = ({ client, upstream }) => {
    client.unpipe(upstream);
    upstream.unpipe(client);
    client.pause();
    upstream.pause();
  };
  const server = net.createServer((client) => {
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
    const drop = () => {
      open.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', drop);
    upstream.on('close', drop);
    if (frozen) hold(pair);
    else forward(pair);
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
    restore() {
      cutOff = false;
      const count = refused;
      refused = 0;
      return count;
    },
    freeze() {
      frozen = true;
      for (const pair of open) hold(pair);
    },
    thaw() {
      frozen = false;
      for (const pair of open) forward(pair);
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
