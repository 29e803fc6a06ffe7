// The connection state machine on a fake WebSocket and a fake clock: when it counts as
// connected, which closes reconnect and which stop, the token provider, the heartbeat
// watchdog, close() and reconnect().

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Client } from '../../build/index.js';
import { FakeSocket, accept, settle, setup } from './fakes.mjs';

test('connected only once the server answered: open alone is not enough', () => {
  const { client, log, socket } = setup();
  assert.equal(client.state, 'idle');
  client.connect();
  assert.equal(client.state, 'connecting');
  socket().open();
  assert.equal(client.state, 'connecting');
  const ping = socket().last('ping');
  assert.deepEqual(Object.keys(ping).sort(), ['id', 'type']);
  socket().receive({ type: 'reply', id: ping.id, data: null });
  assert.equal(client.state, 'connected');
  assert.deepEqual(log, ['connecting 0', 'connected']);
  client.close();
});

test("a router without the live plug-in answers the ping with an error: that proves it too", () => {
  const { client, socket } = setup();
  client.connect();
  socket().open();
  socket().receive({ type: 'error', id: socket().last('ping').id, data: { reason: 'unknown type' } });
  assert.equal(client.state, 'connected');
  client.close();
});

test('an accepted-then-refused connection (4401 right after open) never counts as connected', () => {
  const { client, log, socket } = setup();
  client.connect();
  socket().open();
  socket().serverClose(4401, 'a name is needed');
  assert.equal(client.state, 'closed');
  assert.deepEqual(log, ['connecting 0', 'disconnected 4401 a name is needed false']);
});

test('retryable closes reconnect with backoff; the attempt counter shows in connecting', () => {
  for (const code of [1000, 1001, 1006, 1008, 1011, 1012, 1013]) {
    const { client, clock, log, socket, sockets } = setup({ backoffBase: 100, random: () => 0.5 });
    client.connect();
    accept(socket());
    socket().serverClose(code, 'why');
    assert.equal(client.state, 'disconnected', `code ${code}`);
    assert.equal(sockets.length, 1);
    clock.advance(49);
    assert.equal(sockets.length, 1, 'not before the delay');
    clock.advance(1);
    assert.equal(sockets.length, 2, `code ${code}: a new attempt after the delay`);
    socket().serverClose(1006);
    clock.advance(100);
    assert.deepEqual(log, [
      'connecting 0',
      'connected',
      `disconnected ${code} why true 50`,
      'connecting 1',
      'disconnected 1006  true 100',
      'connecting 2',
    ]);
    client.close();
  }
});

test('refusals 4400-4499 stop for good: no timer left, state closed', () => {
  for (const code of [4400, 4401, 4403, 4429]) {
    const { client, clock, log, sockets, socket } = setup();
    client.connect();
    accept(socket());
    socket().serverClose(code, 'no');
    assert.equal(client.state, 'closed');
    assert.equal(log.at(-1), `disconnected ${code} no false`);
    clock.advance(60_000);
    assert.equal(sockets.length, 1);
    assert.equal(clock.pending, 0);
  }
});

test('connect() after a refusal starts over', () => {
  const { client, log, socket, sockets } = setup();
  client.connect();
  socket().serverClose(4403, 'forbidden');
  client.connect();
  assert.equal(sockets.length, 2);
  accept(socket());
  assert.equal(client.state, 'connected');
  assert.deepEqual(log.slice(-2), ['connecting 0', 'connected']);
  client.close();
});

test('the token provider is called before every attempt and goes in the query', () => {
  let calls = 0;
  const { client, clock, socket } = setup({ token: () => `t${++calls}`, tokenParam: 'name' });
  client.connect();
  assert.equal(socket().url.searchParams.get('name'), 't1');
  socket().serverClose(1006);
  clock.advance(1000);
  assert.equal(socket().url.searchParams.get('name'), 't2');
  assert.equal(socket().url.pathname, '/ws');
  client.close();
});

test('an async token is awaited; a closed client ignores a late token', async () => {
  let resolve;
  const { client, sockets } = setup({ token: () => new Promise((r) => { resolve = r; }) });
  client.connect();
  assert.equal(sockets.length, 0);
  resolve('abc');
  await settle();
  assert.equal(sockets.length, 1);
  assert.equal(sockets[0].url.searchParams.get('token'), 'abc');
  sockets[0].serverClose(1006);
  client.close();
  resolve('late');
  await settle();
  assert.equal(sockets.length, 1);
});

test('a failing token provider counts as a failed attempt, retried with backoff', async () => {
  let fail = true;
  const { client, clock, log, sockets } = setup({
    token: () => (fail ? Promise.reject(new Error('auth server down')) : 'ok'),
  });
  client.connect();
  await settle();
  assert.equal(sockets.length, 0);
  assert.equal(client.state, 'disconnected');
  assert.equal(log.at(-1), 'disconnected 4000 token failed: auth server down true 500');
  fail = false;
  clock.advance(500);
  assert.equal(sockets.length, 1);
  client.close();
});

test('4401 "token expired": the token is asked again and the client reconnects at once', () => {
  const tokens = ['old', 'new'];
  const { client, clock, log, sockets, socket } = setup({ token: () => tokens.shift() ?? 'newest' });
  client.connect();
  accept(socket());
  socket().serverClose(4401, 'token expired');
  assert.equal(log.at(-1), 'disconnected 4401 token expired true 0');
  assert.equal(client.state, 'disconnected');
  clock.advance(0);
  assert.equal(sockets.length, 2);
  assert.equal(socket().url.searchParams.get('token'), 'new');
  accept(socket());
  assert.equal(client.state, 'connected');
  client.close();
});

test('token expired twice in a row without a connection in between stops; a connection resets that', () => {
  let n = 0;
  const { client, clock, log, sockets, socket } = setup({ token: () => `t${++n}` });
  client.connect();
  socket().open();
  socket().serverClose(4401, 'token expired');
  clock.advance(0);
  assert.equal(sockets.length, 2);
  assert.equal(sockets[1].url.searchParams.get('token'), 't2');
  accept(socket()); // the fresh token works
  socket().serverClose(4401, 'token expired'); // expired later again: one more refresh
  clock.advance(0);
  assert.equal(sockets.length, 3);
  socket().open();
  socket().serverClose(4401, 'token expired'); // the fresh one is refused too: stop
  assert.equal(client.state, 'closed');
  assert.equal(log.at(-1), 'disconnected 4401 token expired false');
  clock.advance(60_000);
  assert.equal(sockets.length, 3);
});

test('token expired without a token provider stops (the same URL would be refused again)', () => {
  const { client, socket } = setup();
  client.connect();
  socket().open();
  socket().serverClose(4401, 'token expired');
  assert.equal(client.state, 'closed');
});

test('watchdog: a ping after heartbeatInterval of silence; any message defers it', () => {
  const { client, clock, socket } = setup({ heartbeatInterval: 1000, heartbeatTimeout: 300 });
  client.connect();
  accept(socket());
  const pings = () => socket().sentOf('ping').length;
  assert.equal(pings(), 1);
  clock.advance(900);
  socket().receive({ type: 'chat', data: 'x' });
  clock.advance(900);
  assert.equal(pings(), 1, 'a message arrived 900 ms ago');
  clock.advance(100);
  assert.equal(pings(), 2);
  socket().reply('ping');
  clock.advance(999);
  assert.equal(pings(), 2);
  clock.advance(1);
  assert.equal(pings(), 3);
  assert.equal(client.state, 'connected');
  client.close();
});

test('watchdog: silence for heartbeatTimeout after a ping gives the connection up and reconnects', () => {
  const { client, clock, log, socket, sockets } = setup({ heartbeatInterval: 1000, heartbeatTimeout: 300, random: () => 0 });
  client.connect();
  accept(socket());
  clock.advance(1000 + 299);
  assert.equal(client.state, 'connected');
  clock.advance(1);
  assert.ok(log.includes('disconnected 4000 heartbeat timeout true 0'), log.join('; '));
  assert.equal(sockets[0].onmessage, null, 'the dead socket is detached');
  assert.deepEqual(sockets[0].closedWith, { code: 4000, reason: 'heartbeat timeout' });
  assert.equal(sockets.length, 2, 'a new attempt after the (zero) delay');
  accept(socket());
  assert.equal(client.state, 'connected');
  client.close();
});

test('any message, even one that is not an envelope, counts as a sign of life', () => {
  const { client, clock, socket } = setup({ heartbeatInterval: 1000, heartbeatTimeout: 300 });
  client.connect();
  accept(socket());
  clock.advance(1000);
  clock.advance(299);
  socket().receive('not json at all');
  clock.advance(999);
  assert.equal(client.state, 'connected');
  client.close();
});

test('connect timeout: an attempt without an answer in connectTimeout is given up', () => {
  const { client, clock, log, sockets } = setup({ connectTimeout: 2000 });
  client.connect();
  sockets[0].open();
  clock.advance(1999);
  assert.equal(client.state, 'connecting');
  clock.advance(1);
  assert.equal(log.at(-1), 'disconnected 4000 connect timeout true 500');
  client.close();
});

test('close() ends everything: event with willReconnect false, no timers, later closes ignored', () => {
  const { client, clock, log, sockets, socket } = setup();
  client.connect();
  accept(socket());
  client.close(1000, 'bye');
  assert.equal(client.state, 'closed');
  assert.deepEqual(sockets[0].closedWith, { code: 1000, reason: 'bye' });
  assert.equal(log.at(-1), 'disconnected 1000 bye false');
  sockets[0].onclose?.({ code: 1000, reason: 'bye' });
  client.close();
  assert.equal(log.filter((line) => line.startsWith('disconnected')).length, 1);
  assert.equal(clock.pending, 0);
});

test('close() while waiting to reconnect cancels the attempt', () => {
  const { client, clock, sockets, socket } = setup();
  client.connect();
  socket().serverClose(1006);
  client.close();
  clock.advance(60_000);
  assert.equal(sockets.length, 1);
});

test('reconnect() replaces the connection through the backoff', () => {
  const { client, clock, log, sockets, socket } = setup({ random: () => 0 });
  client.connect();
  accept(socket());
  client.reconnect();
  assert.equal(log.at(-1), 'disconnected 4000 reconnect true 0');
  clock.advance(0);
  assert.equal(sockets.length, 2);
  client.close();
});

test('events of a replaced socket are ignored', () => {
  const { client, clock, sockets, socket } = setup({ random: () => 0 });
  const chats = [];
  client.on('chat', (data) => chats.push(data));
  client.connect();
  accept(socket());
  const old = socket();
  client.reconnect();
  clock.advance(0);
  old.onmessage?.({ data: '{"type":"chat","data":1}' });
  old.onclose?.({ code: 1006, reason: '' });
  assert.deepEqual(chats, []);
  assert.equal(sockets.length, 2);
  assert.equal(client.state, 'connecting');
  client.close();
});

test('URLs: http becomes ws, and a URL that cannot be one throws at once', () => {
  const { sockets } = setup();
  const client = new Client('https://example.test/live/ws?room=1', { WebSocket: FakeSocket });
  client.connect();
  assert.equal(sockets.at(-1).url.href, 'wss://example.test/live/ws?room=1');
  client.close();
  assert.throws(() => new Client('/ws', { WebSocket: FakeSocket }), TypeError);
});

test('without a WebSocket class the constructor says what to pass', () => {
  const saved = globalThis.WebSocket;
  delete globalThis.WebSocket;
  try {
    assert.throws(() => new Client('ws://x.test/'), /options\.WebSocket/);
  } finally {
    if (saved) globalThis.WebSocket = saved;
  }
});
