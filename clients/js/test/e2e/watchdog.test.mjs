// Against the real live example, through a proxy that goes silent without closing anything (a
// half-open connection): the heartbeat watchdog notices within heartbeatInterval +
// heartbeatTimeout, the client keeps trying (attempts time out while the proxy is silent),
// and once the proxy forwards again it reconnects and recovers what it missed.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { connected, liveClient, liveServer, startProxy, tag, until, wsUrl } from './support.mjs';

const HEARTBEAT_INTERVAL = 400;
const HEARTBEAT_TIMEOUT = 300;
/** Slack for timers and the event loop of a loaded machine. */
const SLACK = 1000;

let server;
let proxy;
before(async () => {
  server = await liveServer();
  proxy = await startProxy(server);
});
after(() => proxy.close());

test('a half-open connection is detected by the heartbeat and replaced once traffic flows again', async () => {
  const room = `room:watchdog-${tag()}`;
  const alice = liveClient(wsUrl(server), 'alice');
  const bob = liveClient(wsUrl(server, proxy.port), 'bob', {
    heartbeatInterval: HEARTBEAT_INTERVAL,
    heartbeatTimeout: HEARTBEAT_TIMEOUT,
    connectTimeout: 500,
    backoffBase: 100,
    backoffCap: 400,
  });
  try {
    await connected(alice.client, 'alice');
    await connected(bob.client, 'bob');
    const bobSaw = [];
    const subscribed = [];
    const bobRoom = bob.client.subscribe(room, {
      publication: (data) => bobSaw.push(data.text),
      subscribed: (info) => subscribed.push(info),
    });
    const aliceRoom = alice.client.subscribe(room);
    await until('both subscribed', () => bobRoom.state === 'subscribed' && aliceRoom.state === 'subscribed');
    // Heartbeats keep a quiet connection up: several intervals pass without a disconnect.
    await new Promise((resolve) => setTimeout(resolve, 3 * HEARTBEAT_INTERVAL));
    assert.equal(bob.client.state, 'connected');
    assert.ok(!bob.log.some((entry) => entry.event === 'disconnected'), 'no disconnect while the connection works');

    const frozenAt = Date.now();
    proxy.stall();
    await until('the watchdog to give the silent connection up', () =>
      bob.log.some((entry) => entry.event === 'disconnected'), HEARTBEAT_INTERVAL + HEARTBEAT_TIMEOUT + SLACK + 2000);
    const noticed = bob.log.find((entry) => entry.event === 'disconnected');
    const after = noticed.at - frozenAt;
    assert.equal(noticed.reason, 'heartbeat timeout');
    assert.equal(noticed.willReconnect, true);
    assert.ok(after <= HEARTBEAT_INTERVAL + HEARTBEAT_TIMEOUT + SLACK, `noticed ${after} ms after the stall`);

    await alice.client.request('say', { room, text: 'while bob was silent' });
    // Attempts made while the proxy is silent never get an answer: the connect timeout ends them.
    await until('an attempt to time out while frozen', () =>
      bob.log.some((entry) => entry.event === 'disconnected' && entry.reason === 'connect timeout'));
    assert.notEqual(bob.client.state, 'connected');

    proxy.resume();
    await until('bob to reconnect and resubscribe', () => bob.client.state === 'connected' && bobRoom.state === 'subscribed' && subscribed.length === 2);
    assert.equal(subscribed[1].recovered, true);
    assert.deepEqual(bobSaw, ['while bob was silent']);
  } finally {
    alice.client.close();
    bob.client.close();
  }
});
