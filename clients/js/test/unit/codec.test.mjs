// The protocol codec: envelopes out and in (malformed frames are not envelopes), the close
// code table of docs/PROTOCOL.md "Reconnecting", and errors made from `error` answers.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { RequestError, TOKEN_EXPIRED, closeAction, decode, encode } from '../../build/index.js';

test('encode writes the fields that are set, and only those', () => {
  assert.equal(encode({ type: 'say', id: 3, data: { text: 'hi' } }), '{"type":"say","id":3,"data":{"text":"hi"}}');
  assert.equal(encode({ type: 'dm', data: 1, target: '42', id: undefined }), '{"type":"dm","data":1,"target":"42"}');
  assert.equal(encode({ type: 'ping', id: 1 }), '{"type":"ping","id":1}');
});

test('decode reads every field of an envelope', () => {
  const envelope = decode('{"type":"chat","data":{"a":1},"id":9007199254740991,"from":"123"}');
  assert.deepEqual(envelope, { type: 'chat', data: { a: 1 }, id: 2 ** 53 - 1, from: '123' });
  assert.deepEqual(decode('{"type":"x"}'), { type: 'x' });
});

test('decode refuses what is not an envelope', () => {
  for (const frame of [
    'not json',
    '[]',
    'null',
    '"text"',
    '{}',
    '{"type":5}',
    '{"type":"x","id":0}',
    '{"type":"x","id":1.5}',
    '{"type":"x","id":"1"}',
    '{"type":"x","id":9007199254740992}',
    '{"type":"x","from":7}',
  ]) {
    assert.equal(decode(frame), undefined, frame);
  }
  assert.equal(decode(new ArrayBuffer(4)), undefined, 'a binary frame');
});

test('close codes: refusals stop, token expiry refreshes, every other close reconnects', () => {
  const table = [
    [1000, '', 'reconnect'],
    [1001, 'going away', 'reconnect'],
    [1006, '', 'reconnect'],
    [1008, 'rate limit', 'reconnect'],
    [1011, '', 'reconnect'],
    [1012, '', 'reconnect'],
    [1013, '', 'reconnect'],
    [4000, 'heartbeat timeout', 'reconnect'],
    [4400, 'bad request', 'stop'],
    [4401, 'a name is needed', 'stop'],
    [4401, TOKEN_EXPIRED, 'refresh token'],
    [4403, TOKEN_EXPIRED, 'stop'],
    [4403, 'forbidden', 'stop'],
    [4429, 'too many', 'stop'],
    [4499, '', 'stop'],
    [4500, '', 'reconnect'],
  ];
  for (const [code, reason, action] of table) {
    assert.equal(closeAction(code, reason), action, `${code} ${reason}`);
  }
});

test("an error answer's data becomes a RequestError with its reason and message", () => {
  const error = RequestError.from({ reason: 'invalid', message: '1 to 1000 characters', room: 'x' });
  assert.ok(error instanceof Error);
  assert.equal(error.name, 'RequestError');
  assert.equal(error.reason, 'invalid');
  assert.equal(error.message, '1 to 1000 characters');
  assert.equal(error.remote, true);
  assert.deepEqual(error.data, { reason: 'invalid', message: '1 to 1000 characters', room: 'x' });
  assert.equal(RequestError.from({ reason: 'forbidden' }).message, 'forbidden');
  assert.equal(RequestError.from(null).reason, 'unknown error');
  const local = new RequestError('timeout');
  assert.equal(local.remote, false);
  assert.deepEqual(local.data, { reason: 'timeout' });
});
