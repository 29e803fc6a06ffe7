// Plumbing of the end-to-end tests against the live example server (crates/melody/examples/
// live.rs): where the server is, a TCP proxy that loses connections the ways networks do, a
// client on `ws` with an event log, and waiting on conditions without sleeping blindly.
//
// The server: `MELODY_LIVE_URL` (the URL the example prints, e.g. http://127.0.0.1:5000/), or
// the URL given as the first script argument; without either, the tests start the built
// example themselves (`MELODY_LIVE_BIN`, default <workspace>/target/debug/examples/live).

import { spawn } from 'node:child_process';
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

export { startProxy } from './proxy.mjs';
