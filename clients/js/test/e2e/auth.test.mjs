// Against the real live example (which refuses after the upgrade, close code 4000 + status):
// a refused name stops the client for good (4401, terminal), and a 4401 `token expired` makes
// it ask the token provider again and reconnect, at most once in a row.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { liveClient, liveServer, until, wsUrl } from './support.mjs';

let server;
const clients = [];
before(async () => {
  server = await liveServer();
});
after(() => {
  for (const client of clients) client.close();
});

function make(token, options = {}) {
  const made = liveClient(wsUrl(server), undefined, { token, ...options });
  clients.push(made.client);
  return made;
}

test('a refused name ends in the closed state with 4401, and no attempt follows', async () => {
  let calls = 0;
  const { client, log, sockets } = make(() => {
    calls += 1;
    return 'not a valid name!';
  }, { backoffBase: 10, backoffCap: 50 });
  client.connect();
  await until('the client to stop', () => client.state === 'closed');
  const disconnected = log.filter((entry) => entry.event === 'disconnected');
  assert.equal(disconnected.length, 1);
  assert.equal(disconnected[0].code, 4401);
  assert.match(disconnected[0].reason, /a name of 1 to 32/);
  assert.equal(disconnected[0].willReconnect, false);
  assert.ok(!log.some((entry) => entry.event === 'connected'), 'a refused connection never counts as connected');
  // With a 10-50 ms backoff a retry would have happened well within this.
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(sockets(), 1);
  assert.equal(calls, 1);
});

test('token expired: the provider is called again and the fresh token connects', async () => {
  const tokens = ['expired', 'erin'];
  const given = [];
  const { client, log } = make(() => {
    const token = tokens.shift();
    given.push(token);
    return Promise.resolve(token);
  });
  client.connect();
  await until('the client to connect with the fresh token', () => client.state === 'connected');
  assert.deepEqual(given, ['expired', 'erin']);
  const refusal = log.find((entry) => entry.event === 'disconnected');
  assert.deepEqual({ code: refusal.code, reason: refusal.reason, willReconnect: refusal.willReconnect, delay: refusal.delay },
    { code: 4401, reason: 'token expired', willReconnect: true, delay: 0 });
});

test('a provider that keeps giving expired tokens is asked twice, then the client stops', async () => {
  let calls = 0;
  const { client, log, sockets } = make(() => {
    calls += 1;
    return 'expired';
  });
  client.connect();
  await until('the client to stop', () => client.state === 'closed');
  assert.equal(calls, 2);
  assert.equal(sockets(), 2);
  assert.deepEqual(log.filter((entry) => entry.event === 'disconnected').map((entry) => entry.willReconnect), [true, false]);
});
