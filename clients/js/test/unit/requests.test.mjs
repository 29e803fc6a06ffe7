// Requests both ways and the offline buffer: replies and errors by id, timeouts, requests cut
// by a lost connection, answers to the server's requests, and a bounded buffer whose overflow
// is reported, never silent.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { RequestError } from '../../build/index.js';
import { accept, settle, setup } from './fakes.mjs';

/** A connected client on the fakes. */
function connected(options) {
  const fixture = setup(options);
  fixture.client.connect();
  accept(fixture.socket());
  return fixture;
}

/** The outcome of `promise` once settled: ['ok', value] or ['error', RequestError]. */
async function outcome(promise) {
  try {
    return ['ok', await promise];
  } catch (error) {
    return ['error', error];
  }
}

test('a request resolves with the data of the reply that has its id', async () => {
  const { client, socket } = connected();
  const first = client.request('say', { text: 'a' });
  const second = client.request('say', { text: 'b' }, { target: '77' });
  const [a, b] = socket().sentOf('say');
  assert.ok(b.id > a.id, 'increasing ids');
  assert.equal(b.target, '77');
  socket().receive({ type: 'reply', id: b.id, data: { offset: 2 } });
  socket().receive({ type: 'reply', id: a.id });
  assert.deepEqual(await second, { offset: 2 });
  assert.equal(await first, null, 'a reply without data resolves with null');
  client.close();
});

test("an error answer rejects with the server's reason and message", async () => {
  const { client, socket } = connected();
  const pending = outcome(client.request('say', { text: '' }));
  socket().receive({ type: 'error', id: socket().last('say').id, data: { reason: 'invalid', message: '1 to 1000 characters' } });
  const [kind, error] = await pending;
  assert.equal(kind, 'error');
  assert.ok(error instanceof RequestError);
  assert.equal(error.reason, 'invalid');
  assert.equal(error.message, '1 to 1000 characters');
  assert.equal(error.remote, true);
  client.close();
});

test('answers with an unknown id, and late answers, are ignored', async () => {
  const { client, clock, socket } = connected({ requestTimeout: 100, heartbeatInterval: 10_000 });
  const pending = outcome(client.request('slow'));
  clock.advance(100);
  socket().receive({ type: 'reply', id: socket().last('slow').id, data: 'late' });
  socket().receive({ type: 'reply', id: 999, data: 'never asked' });
  const [kind, error] = await pending;
  assert.equal(kind, 'error');
  assert.equal(error.reason, 'timeout');
  assert.equal(error.remote, false);
  client.close();
});

test('a per-request timeout overrides the default', async () => {
  const { client, clock } = connected({ requestTimeout: 10_000 });
  const pending = outcome(client.request('slow', null, { timeout: 50 }));
  clock.advance(50);
  assert.equal((await pending)[1].reason, 'timeout');
  client.close();
});

test('a request sent on a connection that is lost rejects with disconnected', async () => {
  const { client, socket } = connected();
  const pending = outcome(client.request('say', {}));
  socket().serverClose(1006);
  const [kind, error] = await pending;
  assert.equal(kind, 'error');
  assert.equal(error.reason, 'disconnected');
  client.close();
});

test('close() rejects waiting requests with closed; requests after close are refused', async () => {
  const { client } = connected();
  const waiting = outcome(client.request('say', {}));
  client.close();
  assert.equal((await waiting)[1].reason, 'closed');
  assert.equal((await outcome(client.request('say', {})))[1].reason, 'closed');
  assert.equal(client.send('say', {}), false);
});

test('server requests are answered with the handler result, same id', async () => {
  const { client, socket } = connected();
  client.onRequest('confirm', async (data, envelope) => {
    assert.equal(envelope.id, 41);
    return { ok: data.question === 'sure?' };
  });
  client.onRequest('nothing', () => undefined);
  socket().receive({ type: 'confirm', id: 41, data: { question: 'sure?' } });
  socket().receive({ type: 'nothing', id: 42 });
  await settle();
  assert.deepEqual(socket().sentOf('reply'), [
    { type: 'reply', id: 41, data: { ok: true } },
    { type: 'reply', id: 42, data: null },
  ]);
  client.close();
});

test('server requests: unknown type, a RequestError thrown, any other throw', async () => {
  const { client, socket } = connected();
  client.onRequest('pick', () => {
    throw new RequestError('busy', 'try later');
  });
  client.onRequest('crash', () => {
    throw new Error('secret detail');
  });
  socket().receive({ type: 'what', id: 1 });
  socket().receive({ type: 'pick', id: 2 });
  socket().receive({ type: 'crash', id: 3 });
  await settle();
  assert.deepEqual(socket().sentOf('error'), [
    { type: 'error', id: 1, data: { reason: 'unknown type', type: 'what' } },
    { type: 'error', id: 2, data: { reason: 'busy', message: 'try later' } },
    { type: 'error', id: 3, data: { reason: 'internal error' } },
  ]);
  client.close();
});

test("an answer is not sent on a newer connection than the request's", async () => {
  const { client, clock, socket, sockets } = connected({ random: () => 0 });
  let finish;
  client.onRequest('slow', () => new Promise((resolve) => { finish = resolve; }));
  socket().receive({ type: 'slow', id: 5 });
  socket().serverClose(1006);
  clock.advance(0);
  accept(socket());
  finish('done');
  await settle();
  assert.equal(sockets[1].sentOf('reply').length, 0);
  client.close();
});

test('envelopes go to their on() handlers by type, with the envelope; off() stops them', () => {
  const { client, socket } = connected();
  const seen = [];
  const off = client.on('chat', (data, envelope) => seen.push([data, envelope.from]));
  client.on('error', (data) => seen.push(['error', data.reason]));
  socket().receive({ type: 'chat', data: { text: 'hi' }, from: '12' });
  socket().receive({ type: 'error', data: { reason: 'not in room' } });
  socket().receive({ type: 'reply', id: 12345, data: 'not for handlers' });
  off();
  socket().receive({ type: 'chat', data: { text: 'gone' } });
  assert.deepEqual(seen, [[{ text: 'hi' }, '12'], ['error', 'not in room']]);
  client.close();
});

test('a throwing handler does not stop the others nor the client', async () => {
  const { client, socket } = connected();
  const seen = [];
  const uncaught = [];
  const original = process.listeners('uncaughtException');
  process.removeAllListeners('uncaughtException');
  process.on('uncaughtException', (error) => uncaught.push(error.message));
  try {
    client.on('chat', () => {
      throw new Error('boom');
    });
    client.on('chat', (data) => seen.push(data));
    socket().receive({ type: 'chat', data: 1 });
    socket().receive({ type: 'chat', data: 2 });
    await settle();
  } finally {
    process.removeAllListeners('uncaughtException');
    for (const listener of original) process.on('uncaughtException', listener);
  }
  assert.deepEqual(seen, [1, 2]);
  assert.deepEqual(uncaught, ['boom', 'boom'], 'the error is reported, not swallowed');
  assert.equal(client.state, 'connected');
  client.close();
});

test('offline: sends and requests wait in the buffer and go out in order once connected', async () => {
  const { client, socket, log } = setup();
  assert.equal(client.send('a', 1), true, 'queued before connect()');
  client.connect();
  const reply = client.request('b', 2);
  assert.equal(client.send('c', 3, { target: '9' }), true);
  client.subscribe('room:x');
  accept(socket());
  const order = socket().sent.filter((envelope) => envelope.type !== 'ping');
  assert.deepEqual(order.map((envelope) => envelope.type), ['subscribe', 'a', 'b', 'c'], 'subscriptions first');
  assert.deepEqual(order.at(-1), { type: 'c', data: 3, target: '9' });
  socket().reply('b', 'done');
  assert.equal(await reply, 'done');
  assert.deepEqual(log, ['connecting 0', 'connected'], 'connected fires after the flush');
  client.close();
});

test('offline buffer overflow: send returns false and the overflow event has the dropped envelope', async () => {
  const { client, log, socket } = setup({ bufferSize: 2 });
  const dropped = [];
  client.onEvent('overflow', (envelope) => dropped.push(envelope));
  assert.equal(client.send('m', 1), true);
  assert.equal(client.send('m', 2), true);
  assert.equal(client.send('m', 3), false);
  const refused = outcome(client.request('r', 4));
  assert.deepEqual(dropped.map((envelope) => envelope.data), [3, 4]);
  assert.equal((await refused)[1].reason, 'overflow');
  assert.deepEqual(log, ['overflow m', 'overflow r']);
  client.connect();
  accept(socket());
  assert.deepEqual(socket().sentOf('m').map((envelope) => envelope.data), [1, 2], 'the accepted ones, none lost');
  client.close();
});

test('a buffered request that times out leaves the buffer and is never sent', async () => {
  const { client, clock, socket } = setup({ requestTimeout: 1000, bufferSize: 1 });
  const pending = outcome(client.request('late'));
  clock.advance(1000);
  assert.equal((await pending)[1].reason, 'timeout');
  assert.equal(client.send('fits', 1), true, 'its place in the buffer is free again');
  client.connect();
  accept(socket());
  assert.equal(socket().sentOf('late').length, 0);
  assert.equal(socket().sentOf('fits').length, 1);
  client.close();
});

test('buffered requests survive a lost attempt; sent ones are rejected', async () => {
  const { client, clock, socket } = setup({ random: () => 0 });
  client.connect();
  accept(socket());
  const sent = outcome(client.request('first'));
  socket().serverClose(1006);
  const queued = client.request('second');
  clock.advance(0);
  socket().serverClose(1006); // an attempt that failed before connecting
  clock.advance(0);
  accept(socket());
  assert.equal((await sent)[1].reason, 'disconnected');
  socket().reply('second', 2);
  assert.equal(await queued, 2);
  client.close();
});
