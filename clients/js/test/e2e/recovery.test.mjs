// Against the real live example, through a TCP proxy that loses bob's connection the way a
// network does (resets both sides, then refuses new connections for a while): bob's client
// reconnects with full-jitter backoff, subscribes again `since` its last position and gets
// every message sent meanwhile exactly once, in order, then the live ones.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { connected, liveClient, liveServer, startProxy, tag, until, wsUrl } from './support.mjs';

/** How many messages alice sends while bob is cut off. */
const MISSED = 5;
/** How many of bob's attempts the proxy refuses before letting him through. */
const REFUSALS = 3;
const BASE = 100;
const CAP = 800;

let server;
let proxy;
before(async () => {
  server = await liveServer();
  proxy = await startProxy(server);
});
after(() => proxy.close());

test('a killed connection reconnects with backoff, resubscribes and recovers the missed messages once, in order', async () => {
  const room = `room:recovery-${tag()}`;
  const alice = liveClient(wsUrl(server), 'alice');
  const bob = liveClient(wsUrl(server, proxy.port), 'bob', { backoffBase: BASE, backoffCap: CAP });
  try {
    await connected(alice.client, 'alice');
    await connected(bob.client, 'bob');
    const aliceSaw = [];
    const aliceRoom = alice.client.subscribe(room, { publication: (data) => aliceSaw.push(data.text) });
    const bobSaw = [];
    const bobSubscribed = [];
    const bobRoom = bob.client.subscribe(room, {
      publication: (data, { offset }) => bobSaw.push(`${offset} ${data.text}`),
      subscribed: (info) => bobSubscribed.push(info),
    });
    await until('both subscribed', () => aliceRoom.state === 'subscribed' && bobRoom.state === 'subscribed');
    await until('alice to see bob', () => aliceRoom.members.length === 2);

    const first = await alice.client.request('say', { room, text: 'before the cut' });
    await until('bob to get the first message', () => bobSaw.length === 1);

    assert.equal(proxy.cut(), 1, "bob's connection goes through the proxy");
    await until("bob's client to notice the loss", () => bob.client.state !== 'connected');
    const lost = bob.log.find((entry) => entry.event === 'disconnected');
    assert.equal(lost.code, 1006, 'an abnormal close, no handshake');
    assert.equal(lost.willReconnect, true);
    await until('alice to see bob leave (the server dropped his session)', () => aliceRoom.members.length === 1);

    const missed = [];
    for (let i = 1; i <= MISSED; i++) {
      const text = `missed ${i}`;
      const { offset } = await alice.client.request('say', { room, text });
      missed.push(`${offset} ${text}`);
    }
    assert.deepEqual(bobSaw, [`${first.offset} before the cut`], 'nothing reaches bob while cut off');

    await until(`the proxy to refuse ${REFUSALS} attempts`, () => proxy.refused >= REFUSALS);
    assert.notEqual(bob.client.state, 'connected');
    const refused = proxy.restore();
    await until('bob to reconnect', () => bob.client.state === 'connected' && bobRoom.state === 'subscribed');

    // Backoff: each delay within [0, min(cap, base × 2ⁿ)], n counting the failed attempts.
    const delays = bob.log.filter((entry) => entry.event === 'disconnected').map((entry) => entry.delay);
    assert.ok(delays.length > REFUSALS && refused >= REFUSALS, `several attempts were refused (${delays.length} delays, ${refused} refused)`);
    delays.forEach((delay, n) => {
      const bound = Math.min(CAP, BASE * 2 ** n);
      assert.ok(delay >= 0 && delay <= bound, `delay ${n} = ${delay} not in [0, ${bound}]`);
    });

    const again = bobSubscribed.at(-1);
    assert.equal(again.resubscribed, true);
    assert.equal(again.recovered, true, 'the server had everything bob missed');
    assert.deepEqual(again.publications.map((p) => `${p.offset} ${p.data.text}`), missed);
    assert.deepEqual(bobSaw, [`${first.offset} before the cut`, ...missed]);

    await until('alice to see bob back', () => aliceRoom.members.length === 2);
    const live = await alice.client.request('say', { room, text: 'after' });
    await bob.client.request('say', { room, text: 'back' });
    await until('the live messages to reach bob', () => bobSaw.length === MISSED + 3);
    assert.deepEqual(bobSaw, [`${first.offset} before the cut`, ...missed, `${live.offset} after`, `${live.offset + 1} back`]);
    await until('alice to get them all', () => aliceSaw.length === MISSED + 3);
  } finally {
    alice.client.close();
    bob.client.close();
  }
});
