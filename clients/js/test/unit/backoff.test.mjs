// Full-jitter backoff: delays within [0, min(cap, base × 2ⁿ)], spread by the random source,
// and back to the first bound after a reset; and the client's use of it (reset only after a
// connection that stayed up `stableAfter`).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Backoff } from '../../build/index.js';
import { accept, setup } from './fakes.mjs';

test('upper bounds double from base up to cap', () => {
  const backoff = new Backoff(500, 20_000, () => 1);
  const delays = Array.from({ length: 9 }, () => backoff.next());
  assert.deepEqual(delays, [500, 1000, 2000, 4000, 8000, 16_000, 20_000, 20_000, 20_000]);
  assert.equal(backoff.attempts, 9);
});

test('the bound stays at cap after very many attempts (no overflow to NaN or Infinity)', () => {
  const backoff = new Backoff(500, 20_000, () => 1);
  backoff.attempts = 5000;
  assert.equal(backoff.next(), 20_000);
});

test('full jitter: the delay is the random fraction of the bound, never below 0', () => {
  for (const fraction of [0, 0.25, 0.5, 0.999]) {
    const backoff = new Backoff(1000, 60_000, () => fraction);
    backoff.next();
    backoff.next();
    assert.equal(backoff.next(), fraction * 4000);
  }
});

test('delays from Math.random stay within their bounds', () => {
  const backoff = new Backoff(500, 20_000);
  for (let attempt = 0; attempt < 50; attempt++) {
    const bound = Math.min(20_000, 500 * 2 ** attempt);
    const delay = backoff.next();
    assert.ok(delay >= 0 && delay <= bound, `attempt ${attempt}: ${delay} not in [0, ${bound}]`);
  }
});

test('reset starts over from base', () => {
  const backoff = new Backoff(500, 20_000, () => 1);
  backoff.next();
  backoff.next();
  backoff.reset();
  assert.equal(backoff.next(), 500);
});

test('the client waits a growing delay between failed attempts', () => {
  const { client, clock, log, socket } = setup({ backoffBase: 100, backoffCap: 1000, random: () => 1 });
  client.connect();
  for (let i = 0; i < 6; i++) {
    socket().serverClose(1006);
    clock.advance(5000);
  }
  const delays = log.filter((line) => line.startsWith('disconnected')).map((line) => Number(line.split(' ').at(-1)));
  assert.deepEqual(delays, [100, 200, 400, 800, 1000, 1000]);
  client.close();
});

test('a connection that stays up stableAfter resets the backoff; a shorter one does not', () => {
  const { client, clock, log, socket } = setup({
    backoffBase: 100,
    backoffCap: 10_000,
    random: () => 1,
    stableAfter: 5000,
    heartbeatInterval: 60_000,
  });
  const lastDelay = () => Number(log.filter((line) => line.startsWith('disconnected')).at(-1).split(' ').at(-1));
  client.connect();
  socket().serverClose(1006); // 100
  clock.advance(100);
  socket().serverClose(1006); // 200
  clock.advance(200);
  accept(socket());
  clock.advance(4999); // up, but not for stableAfter
  socket().serverClose(1006);
  assert.equal(lastDelay(), 400);
  clock.advance(400);
  accept(socket());
  clock.advance(5000); // up for stableAfter
  socket().serverClose(1006);
  assert.equal(lastDelay(), 100);
  client.close();
});
