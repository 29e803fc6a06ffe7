// Test doubles for the unit tests: a clock whose time moves only when told, a WebSocket that
// records what the client sends and lets the test play the server, and a client wired to both.

import { Client } from '../../build/index.js';

/** Timers that fire only from `advance`, in time order. */
export class FakeClock {
  now = 0;
  #timers = new Map();
  #nextHandle = 1;

  setTimeout = (callback, ms) => {
    const handle = this.#nextHandle++;
    this.#timers.set(handle, { at: this.now + ms, callback });
    return handle;
  };

  clearTimeout = (handle) => {
    this.#timers.delete(handle);
  };

  /** Moves time forward by `ms`, firing every timer due meanwhile (timers they set included). */
  advance(ms) {
    const end = this.now + ms;
    for (;;) {
      let next;
      for (const [handle, timer] of this.#timers) {
        if (timer.at <= end && (!next || timer.at < next[1].at)) next = [handle, timer];
      }
      if (!next) break;
      this.#timers.delete(next[0]);
      this.now = next[1].at;
      next[1].callback();
    }
    this.now = end;
  }

  /** How many timers are pending. */
  get pending() {
    return this.#timers.size;
  }
}

/** A WebSocket the test drives: `open`, `receive`, `serverClose`; `sent` holds what went out. */
export class FakeSocket {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSED = 3;
  /** Every socket made, oldest first. */
  static made = [];

  readyState = FakeSocket.CONNECTING;
  /** The envelopes the client sent, parsed. */
  sent = [];
  /** The code and reason of the client's `close`, or whether it called `terminate`. */
  closedWith = null;
  onopen = null;
  onmessage = null;
  onclose = null;
  onerror = null;

  constructor(url) {
    this.url = new URL(url);
    FakeSocket.made.push(this);
  }

  send(text) {
    if (this.readyState !== FakeSocket.OPEN) throw new Error(`send on a socket in state ${this.readyState}`);
    this.sent.push(JSON.parse(text));
  }

  close(code, reason) {
    this.closedWith = { code, reason };
    this.readyState = FakeSocket.CLOSED;
  }

  open() {
    this.readyState = FakeSocket.OPEN;
    this.onopen?.({});
  }

  /** The server sends `envelope` (an object, or raw text). */
  receive(envelope) {
    this.onmessage?.({ data: typeof envelope === 'string' ? envelope : JSON.stringify(envelope) });
  }

  /** The connection ends with `code` (1006: lost). */
  serverClose(code = 1006, reason = '') {
    this.readyState = FakeSocket.CLOSED;
    this.onclose?.({ code, reason });
  }

  /** The sent envelopes of `type`. */
  sentOf(type) {
    return this.sent.filter((envelope) => envelope.type === type);
  }

  /** The last sent envelope of `type`; fails the test if there is none. */
  last(type) {
    const all = this.sentOf(type);
    if (all.length === 0) throw new Error(`nothing of type ${type} was sent; sent: ${JSON.stringify(this.sent)}`);
    return all.at(-1);
  }

  /** Answers the last `type` request with a reply of `data`. */
  reply(type, data = null) {
    this.receive({ type: 'reply', id: this.last(type).id, data });
  }
}

/**
 * A client on the fakes with `options` (the random defaults to 1 - ε: each delay is its upper
 * bound), its clock, its sockets, and `log`: every client event as a string.
 */
export function setup(options = {}) {
  FakeSocket.made = [];
  const clock = new FakeClock();
  const client = new Client('ws://server.test/ws', {
    WebSocket: FakeSocket,
    timers: clock,
    random: () => 0.999999,
    ...options,
  });
  const log = [];
  client.onEvent('connecting', ({ attempt }) => log.push(`connecting ${attempt}`));
  client.onEvent('connected', () => log.push('connected'));
  client.onEvent('disconnected', ({ code, reason, willReconnect, delay }) =>
    log.push(`disconnected ${code} ${reason} ${willReconnect}${delay === undefined ? '' : ` ${Math.round(delay)}`}`));
  client.onEvent('overflow', (envelope) => log.push(`overflow ${envelope.type}`));
  return { client, clock, log, socket: () => FakeSocket.made.at(-1), sockets: FakeSocket.made };
}

/** Opens the current socket and answers its first ping: the client is then connected. */
export function accept(socket) {
  socket.open();
  socket.reply('ping');
}

/** Lets pending promise callbacks run (the token provider is awaited). */
export function settle() {
  return new Promise((resolve) => setImmediate(resolve));
}
