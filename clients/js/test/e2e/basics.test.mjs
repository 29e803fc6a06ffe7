// Against the real live example, in Node on `ws`: connecting with a token, subscribing with
// history, presence (reply members, join/leave events, the presence request), the `say`
// request with its reply and its errors, publications to every subscriber once, unsubscribe.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { RequestError } from '../../dist/melody-client.js';
import { connected, liveClient, liveServer, tag, until, wsUrl } from './support.mjs';

let server;
const clients = [];
before(async () => {
  server = await liveServer();
});
after(() => {
  for (const client of clients) client.close();
});

/** A connected client for `name`, closed after the tests. */
async function user(name) {
  const made = liveClient(wsUrl(server), name);
  clients.push(made.client);
  await connected(made.client, name);
  return made;
}

/** Subscribes `client` to `topic`, recording every handler call; resolves once subscribed. */
async function join(client, topic, options) {
  const seen = { publications: [], joins: [], leaves: [], subscribed: [], errors: [] };
  const subscription = client.subscribe(topic, {
    publication: (data, position) => seen.publications.push({ ...data, ...position }),
    join: (member) => seen.joins.push(member.info.name),
    leave: (member) => seen.leaves.push(member.info.name),
    subscribed: (info) => seen.subscribed.push(info),
    error: (error) => seen.errors.push(error.reason),
  }, options);
  await until(`subscribed to ${topic}`, () => subscription.state === 'subscribed');
  return { subscription, seen };
}

const names = (members) => members.map((member) => member.info.name).sort();

test('connect, subscribe, presence, say: the whole conversation, each message once', async () => {
  const room = `room:basics-${tag()}`;
  const alice = await user('alice');
  const bob = await user('bob');
  assert.deepEqual(alice.log.map((entry) => entry.event), ['connecting', 'connected']);

  const a = await join(alice.client, room, { history: 10 });
  assert.deepEqual(names(a.subscription.members), ['alice']);
  assert.equal(a.seen.subscribed[0].resubscribed, false);
  assert.equal(a.seen.subscribed[0].recovered, undefined);

  const first = await alice.client.request('say', { room, text: 'before bob' });
  assert.equal(typeof first.offset, 'number');

  const b = await join(bob.client, room, { history: 10 });
  assert.deepEqual(names(b.subscription.members), ['alice', 'bob'], "bob's reply lists both");
  assert.deepEqual(b.seen.publications.map((p) => p.text), ['before bob'], 'history on the first subscribe');
  await until('alice to see bob join', () => a.seen.joins.includes('bob'));
  assert.deepEqual(names(a.subscription.members), ['alice', 'bob']);
  assert.deepEqual(names(await bob.client.subscription(room).presence()), ['alice', 'bob']);

  const reply = await bob.client.request('say', { room, text: 'hello alice' });
  assert.equal(reply.offset, first.offset + 1);
  for (const seen of [a.seen, b.seen]) {
    await until('the message to reach both', () => seen.publications.some((p) => p.text === 'hello alice'));
  }
  assert.deepEqual(a.seen.publications.map((p) => `${p.name}: ${p.text}`), ['alice: before bob', 'bob: hello alice']);
  assert.deepEqual(b.seen.publications.map((p) => p.offset), [first.offset, reply.offset]);

  await bob.client.subscription(room).unsubscribe();
  await until('alice to see bob leave', () => a.seen.leaves.includes('bob'));
  assert.deepEqual(names(a.subscription.members), ['alice']);
  await alice.client.request('say', { room, text: 'bob is gone' });
  await until('alice to get her message', () => a.seen.publications.length === 3);
  assert.equal(b.seen.publications.length, 2, 'nothing after unsubscribe');
  assert.deepEqual([...a.seen.errors, ...b.seen.errors], []);
});

test("request errors carry the server's reason and message", async () => {
  const room = `room:errors-${tag()}`;
  const carol = await user('carol');
  await assert.rejects(carol.client.request('say', { room, text: 'not in it' }), (error) => {
    assert.ok(error instanceof RequestError);
    assert.equal(error.reason, 'not in room');
    assert.equal(error.remote, true);
    return true;
  });
  await join(carol.client, room);
  await assert.rejects(carol.client.request('say', { room, text: '' }), { reason: 'invalid', message: '1 to 1000 characters' });
  await assert.rejects(carol.client.request('no such type'), { reason: 'unknown type' });
  const forbidden = carol.client.subscribe('not-a-room', { error: () => {} });
  await until('the forbidden subscription to end', () => forbidden.state === 'unsubscribed');
});

test('sends made before connecting wait in the buffer and go out once connected', async () => {
  const room = `room:buffer-${tag()}`;
  const dave = liveClient(wsUrl(server), 'dave');
  clients.push(dave.client);
  const seen = [];
  dave.client.subscribe(room, { publication: (data) => seen.push(data.text) });
  const replies = [1, 2, 3].map((n) => dave.client.request('say', { room, text: `queued ${n}` }));
  dave.client.connect();
  const offsets = (await Promise.all(replies)).map((reply) => reply.offset);
  assert.deepEqual(offsets, [offsets[0], offsets[0] + 1, offsets[0] + 2]);
  await until('the queued messages to come back', () => seen.length === 3);
  assert.deepEqual(seen, ['queued 1', 'queued 2', 'queued 3']);
});
