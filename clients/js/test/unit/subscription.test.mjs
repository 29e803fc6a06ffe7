// Topics on the fakes: the first subscribe (history), the reply's publications before live
// ones, dedupe by offset, catching up after a gap or a new epoch, resubscribing `since` after
// a reconnect, `recovered`, members from the reply and join/leave, presence and unsubscribe.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { accept, setup } from './fakes.mjs';

const TOPIC = 'room:lobby';

/** A connected client subscribed to TOPIC whose handlers append to `seen`. */
function subscribed(subscribeOptions = {}, clientOptions = {}) {
  const fixture = setup({ random: () => 0, ...clientOptions });
  const seen = [];
  fixture.client.connect();
  accept(fixture.socket());
  const subscription = fixture.client.subscribe(TOPIC, {
    publication: (data, { epoch, offset }) => seen.push(`pub ${data} ${epoch}:${offset}`),
    subscribed: (info) =>
      seen.push(`subscribed recovered=${info.recovered} again=${info.resubscribed} pubs=${info.publications.map((p) => p.offset)}`),
    join: (member) => seen.push(`join ${member.id}`),
    leave: (member) => seen.push(`leave ${member.id}`),
    error: (error) => seen.push(`error ${error.reason}`),
  }, subscribeOptions);
  return { ...fixture, seen, subscription };
}

/** A `pub` of TOPIC. */
function pub(offset, data = `m${offset}`, epoch = 'e1') {
  return { type: 'pub', data: { topic: TOPIC, epoch, offset, data } };
}

/** Publications `from`..=`to` as a subscribe reply lists them. */
function publications(from, to) {
  return Array.from({ length: to - from + 1 }, (_, i) => ({ offset: from + i, data: `m${from + i}` }));
}

test('the first subscribe asks for history; its publications come before the live ones', () => {
  const { client, socket, seen, subscription } = subscribed({ history: 20 });
  assert.deepEqual(socket().last('subscribe').data, { topic: TOPIC, history: 20 });
  assert.equal(subscription.state, 'subscribing');
  socket().reply('subscribe', { topic: TOPIC, epoch: 'e1', offset: 3, publications: publications(2, 3), members: [] });
  socket().receive(pub(4));
  assert.deepEqual(seen, [
    'subscribed recovered=undefined again=false pubs=2,3',
    'pub m2 e1:2',
    'pub m3 e1:3',
    'pub m4 e1:4',
  ]);
  assert.equal(subscription.state, 'subscribed');
  assert.deepEqual(subscription.position, { epoch: 'e1', offset: 4 });
  client.close();
});

test('a subscribe without history starts counting from the reply offset', () => {
  const { client, socket, seen } = subscribed();
  assert.deepEqual(socket().last('subscribe').data, { topic: TOPIC });
  socket().reply('subscribe', { topic: TOPIC, epoch: 'e1', offset: 10, publications: [] });
  socket().receive(pub(11));
  assert.deepEqual(seen.slice(1), ['pub m11 e1:11']);
  client.close();
});

test('duplicates (offset not above the last seen, same epoch) are ignored', () => {
  const { client, socket, seen } = subscribed();
  socket().reply('subscribe', { topic: TOPIC, epoch: 'e1', offset: 5, publications: [] });
  for (const offset of [6, 6, 5, 3, 7]) socket().receive(pub(offset));
  assert.deepEqual(seen.slice(1), ['pub m6 e1:6', 'pub m7 e1:7']);
  client.close();
});

test('publications that arrive while the subscribe is out are left to its reply', () => {
  const { client, socket, seen } = subscribed();
  socket().receive(pub(4));
  socket().reply('subscribe', { topic: TOPIC, epoch: 'e1', offset: 4, publications: [] });
  assert.deepEqual(seen, ['subscribed recovered=undefined again=false pubs=']);
  client.close();
});

test('a gap while connected: subscribe again since the last offset, deliver what it recovers once', () => {
  const { client, socket, seen } = subscribed();
  socket().reply('subscribe', { topic: TOPIC, epoch: 'e1', offset: 5, publications: [] });
  socket().receive(pub(6));
  socket().receive(pub(9)); // 7 and 8 were dropped on the way
  assert.deepEqual(socket().last('subscribe').data, { topic: TOPIC, since: { epoch: 'e1', offset: 6 } });
  socket().receive(pub(10)); // still catching up: in the reply
  assert.equal(socket().sentOf('subscribe').length, 2, 'one catch-up at a time');
  socket().reply('subscribe', { topic: TOPIC, epoch: 'e1', offset: 10, recovered: true, publications: publications(7, 10) });
  socket().receive(pub(10));
  socket().receive(pub(11));
  assert.deepEqual(seen.slice(1), [
    'pub m6 e1:6',
    'subscribed recovered=true again=true pubs=7,8,9,10',
    'pub m7 e1:7',
    'pub m8 e1:8',
    'pub m9 e1:9',
    'pub m10 e1:10',
    'pub m11 e1:11',
  ]);
  client.close();
});

test('a publication of another epoch: subscribe again, recovered false, count from the new offsets', () => {
  const { client, socket, seen, subscription } = subscribed();
  socket().reply('subscribe', { topic: TOPIC, epoch: 'e1', offset: 5, publications: [] });
  socket().receive(pub(1, 'fresh', 'e2'));
  assert.deepEqual(socket().last('subscribe').data, { topic: TOPIC, since: { epoch: 'e1', offset: 5 } });
  socket().reply('subscribe', { topic: TOPIC, epoch: 'e2', offset: 1, recovered: false, publications: [] });
  assert.equal(subscription.recovered, false);
  socket().receive(pub(1, 'fresh', 'e2'));
  socket().receive(pub(2, 'next', 'e2'));
  assert.deepEqual(seen.slice(1), ['subscribed recovered=false again=true pubs=', 'pub next e2:2']);
  assert.deepEqual(subscription.position, { epoch: 'e2', offset: 2 });
  client.close();
});

test('after a reconnect: subscribe since the last position, missed ones once and in order', () => {
  const { client, clock, socket, seen } = subscribed({ history: 5 });
  socket().reply('subscribe', { topic: TOPIC, epoch: 'e1', offset: 2, publications: publications(1, 2) });
  socket().receive(pub(3));
  socket().serverClose(1006);
  clock.advance(0);
  const second = socket();
  accept(second);
  assert.deepEqual(second.last('subscribe').data, { topic: TOPIC, since: { epoch: 'e1', offset: 3 } });
  second.reply('subscribe', { topic: TOPIC, epoch: 'e1', offset: 6, recovered: true, publications: publications(4, 6) });
  second.receive(pub(6));
  second.receive(pub(7));
  assert.deepEqual(seen, [
    'subscribed recovered=undefined again=false pubs=1,2',
    'pub m1 e1:1',
    'pub m2 e1:2',
    'pub m3 e1:3',
    'subscribed recovered=true again=true pubs=4,5,6',
    'pub m4 e1:4',
    'pub m5 e1:5',
    'pub m6 e1:6',
    'pub m7 e1:7',
  ]);
  client.close();
});

test('recovered false after a reconnect is surfaced in the subscribed event and on the subscription', () => {
  const { client, clock, socket, seen, subscription } = subscribed();
  socket().reply('subscribe', { topic: TOPIC, epoch: 'e1', offset: 2, publications: [] });
  socket().serverClose(1006);
  clock.advance(0);
  accept(socket());
  socket().reply('subscribe', { topic: TOPIC, epoch: 'e1', offset: 400, recovered: false, publications: [] });
  assert.equal(subscription.recovered, false);
  assert.equal(seen.at(-1), 'subscribed recovered=false again=true pubs=');
  socket().receive(pub(401));
  assert.equal(seen.at(-1), 'pub m401 e1:401', 'live ones follow from the new position');
  client.close();
});

test('members: from the reply, then join and leave; presence() refreshes them', async () => {
  const { client, socket, seen, subscription } = subscribed();
  const alice = { id: '1', info: { name: 'alice' } };
  const bob = { id: '2', info: { name: 'bob' } };
  socket().reply('subscribe', { topic: TOPIC, epoch: 'e1', offset: 0, publications: [], members: [alice] });
  assert.deepEqual(subscription.members, [alice]);
  socket().receive({ type: 'join', data: { topic: TOPIC, member: bob } });
  assert.deepEqual(subscription.members, [alice, bob]);
  socket().receive({ type: 'leave', data: { topic: TOPIC, member: alice } });
  assert.deepEqual(subscription.members, [bob]);
  assert.deepEqual(seen.slice(1), ['join 2', 'leave 1']);
  const asked = subscription.presence();
  assert.deepEqual(socket().last('presence').data, { topic: TOPIC });
  socket().reply('presence', { topic: TOPIC, members: [alice, bob] });
  assert.deepEqual(await asked, [alice, bob]);
  assert.deepEqual(subscription.members, [alice, bob]);
  client.close();
});

test('events of other topics, and of topics not subscribed, go to on() handlers', () => {
  const { client, socket, seen } = subscribed();
  const other = [];
  client.on('pub', (data) => other.push(data.topic));
  socket().reply('subscribe', { topic: TOPIC, epoch: 'e1', offset: 0, publications: [] });
  socket().receive({ type: 'pub', data: { topic: 'room:other', epoch: 'e1', offset: 1, data: 'x' } });
  assert.deepEqual(other, ['room:other']);
  assert.equal(seen.length, 1);
  client.close();
});

test('unsubscribe: the request goes out, nothing more is delivered, no resubscribe after a reconnect', async () => {
  const { client, clock, socket, seen, subscription } = subscribed();
  socket().reply('subscribe', { topic: TOPIC, epoch: 'e1', offset: 0, publications: [] });
  const done = subscription.unsubscribe();
  assert.equal(subscription.state, 'unsubscribed');
  assert.deepEqual(socket().last('unsubscribe').data, { topic: TOPIC });
  socket().receive(pub(1));
  socket().reply('unsubscribe', { topic: TOPIC, left: true });
  await done;
  socket().serverClose(1006);
  clock.advance(0);
  accept(socket());
  assert.equal(socket().sentOf('subscribe').length, 0);
  assert.equal(seen.length, 1);
  assert.equal(client.subscription(TOPIC), undefined);
  client.subscribe(TOPIC); // the topic can be subscribed again
  client.close();
});

test('a refused subscription ends with its error; a timed-out one is tried again', () => {
  const { client, clock, socket, seen, subscription } = subscribed({}, { requestTimeout: 1000, heartbeatInterval: 60_000 });
  clock.advance(1000);
  assert.equal(seen.at(-1), 'error timeout');
  assert.equal(socket().sentOf('subscribe').length, 2);
  socket().receive({ type: 'error', id: socket().last('subscribe').id, data: { reason: 'forbidden' } });
  assert.equal(seen.at(-1), 'error forbidden');
  assert.equal(subscription.state, 'unsubscribed');
  assert.equal(client.subscription(TOPIC), undefined);
  client.close();
});

test('subscribing twice to one topic is a mistake that throws', () => {
  const { client } = subscribed();
  assert.throws(() => client.subscribe(TOPIC), /already subscribed/);
  client.close();
});

test('a subscription made offline subscribes once connected; topics without history deliver as they come', () => {
  const { client, socket } = setup();
  const seen = [];
  client.subscribe('news', { publication: (data, position) => seen.push([data, position]) });
  client.connect();
  accept(socket());
  socket().receive({ type: 'pub', data: { topic: 'news', data: 'early' } });
  socket().reply('subscribe', { topic: 'news' });
  socket().receive({ type: 'pub', data: { topic: 'news', data: 'later' } });
  assert.deepEqual(seen, [['early', {}], ['later', {}]]);
  client.close();
});
