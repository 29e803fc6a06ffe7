// The connection: its state machine, reconnects, the heartbeat watchdog, requests both ways,
// the offline buffer, and the dispatch of received envelopes to handlers and subscriptions.

import { Backoff } from "./backoff.js";
import { closeAction } from "./closeCodes.js";
import { Emitter } from "./emitter.js";
import { type Envelope, decode, encode, isAnswer } from "./envelope.js";
import { RequestError } from "./errors.js";
import { type ClientOptions, type Settings, type WebSocketLike, settings } from "./options.js";
import {
  type SubscribeOptions,
  Subscription,
  type SubscriptionHandlers,
  type SubscriptionHost,
} from "./subscription.js";

/** Where the connection is; see the README's state diagram. */
export type ConnectionState = "idle" | "connecting" | "connected" | "disconnected" | "closed";

/** Why a connection ended, as the `disconnected` event tells it. */
export interface Disconnect {
  /** The close code: the server's, 1006 for a lost connection, 4000 for the client's own
   * decisions (`heartbeat timeout`, `connect timeout`, `reconnect`, `token failed`). */
  code: number;
  reason: string;
  /** False when the client stops: a refusal (4400–4499), `close()`. */
  willReconnect: boolean;
  /** When it will reconnect: in how many ms. */
  delay?: number;
}

/** The client's own events, listened to with `client.onEvent`. */
export interface ClientEvents {
  /** A connection attempt starts; `attempt` counts the failed ones since the last connection. */
  connecting: [info: { attempt: number }];
  /** The server accepted the connection (it answered the first message); subscriptions are
   * renewed and the offline buffer sent before this fires. */
  connected: [];
  /** The connection ended, or an attempt failed. */
  disconnected: [info: Disconnect];
  /** `send` or `request` found the offline buffer full: this envelope was not sent. */
  overflow: [envelope: Envelope];
}

/** A map from envelope type to its `data` type. */
export type EventMap = Record<string, unknown>;

/** Options of `send`. */
export interface SendOptions {
  /** Deliver to this session id instead of the server's handler (types the server allows). */
  target?: string;
}

/** Options of `request`. */
export interface RequestOptions extends SendOptions {
  /** Milliseconds before the promise rejects with reason `timeout` (default `requestTimeout`). */
  timeout?: number;
}

/** Answers a server request of one type: the result is the reply's data; a throw answers an
 * `error` (a `RequestError`'s reason and message, or `internal error`). */
export type RequestHandler<T = unknown> = (data: T, envelope: Envelope<T>) => unknown;

/** A request waiting for its answer. */
interface Pending {
  done(error: RequestError | undefined, data?: unknown): void;
  timer: unknown;
  /** Sent on the current connection (false: still in the offline buffer). */
  sent: boolean;
}

/** The client's timers: reconnect delay, stable period, connect/heartbeat watchdog. */
type TimerKind = "retry" | "stable" | "watchdog";

/** The client's own close code for the connections it gives up on. */
const GIVE_UP = 4000;

/**
 * A melody client: one WebSocket at a time, replaced with backoff when it is lost.
 *
 * `In` maps the envelope types the server sends to their data (for `on`), `Out` the ones the
 * client sends (for `send` and `request`).
 */
export class Client<In extends object = EventMap, Out extends object = EventMap> {
  private current: ConnectionState = "idle";
  private readonly settings: Settings;
  private readonly backoff: Backoff;
  private readonly events = new Emitter<ClientEvents>();
  /** Envelope handlers by type (typed by `In` at `on`). */
  private readonly handlers = new Emitter<Record<string, [data: unknown, envelope: Envelope]>>();
  private readonly answerers = new Map<string, RequestHandler<never>>();
  private readonly subscriptions = new Map<string, Subscription<never>>();
  private readonly pending = new Map<number, Pending>();
  private buffer: Envelope[] = [];
  private socket: WebSocketLike | undefined;
  private nextId = 1;
  /** Bumped whenever the current attempt is abandoned, so its late callbacks do nothing. */
  private generation = 0;
  /** Failed attempts since the last connection (for the `connecting` event). */
  private failures = 0;
  /** `token expired` refusals since the last connection: a second one in a row stops. */
  private expired = 0;
  /** The one running timer of each kind, if any. */
  private readonly timers: Record<TimerKind, unknown> = {
    retry: undefined,
    stable: undefined,
    watchdog: undefined,
  };

  /**
   * @param url the server's WebSocket endpoint (`ws:`/`wss:`; `http:`/`https:` and, in a
   *   page, a path like `/ws` are turned into one)
   */
  constructor(
    readonly url: string,
    options: ClientOptions = {},
  ) {
    this.settings = settings(options);
    this.socketUrl(undefined); // a URL that cannot be one fails here, not at every attempt
    this.backoff = new Backoff(this.settings.backoffBase, this.settings.backoffCap, this.settings.random);
  }

  /** Where the connection is. */
  get state(): ConnectionState {
    return this.current;
  }

  /** Starts connecting (and reconnecting until `close()` or a refusal). Does nothing when
   * already connecting or connected. */
  connect(): void {
    if (this.state === "connecting" || this.state === "connected") return;
    if (this.state === "closed") {
      this.backoff.reset();
      this.failures = 0;
      this.expired = 0;
    }
    this.stopTimer("retry");
    this.open();
  }

  /**
   * Closes the connection for good (until `connect()`): requests still waiting reject with
   * reason `closed`, the offline buffer is emptied, subscriptions stay and are renewed by a
   * later `connect()`.
   */
  close(code = 1000, reason = ""): void {
    if (this.state === "idle" || this.state === "closed") return;
    this.abandon(code, reason);
    this.stop({ code, reason, willReconnect: false });
  }

  /** Replaces the connection: closes it (code 4000) and reconnects with backoff. */
  reconnect(): void {
    if (this.state !== "connecting" && this.state !== "connected") return;
    this.giveUp("reconnect");
  }

  /** Calls `handler` with each envelope of `type` the server sends (no requests, no answers,
   * no topic events of a subscription). Returns the function that removes it. */
  on<K extends keyof In & string>(type: K, handler: (data: In[K], envelope: Envelope<In[K]>) => void): () => void {
    return this.handlers.on(type, handler as (data: unknown, envelope: Envelope) => void);
  }

  /** Calls `listener` on a client event (`connecting`, `connected`, `disconnected`,
   * `overflow`). Returns the function that removes it. */
  onEvent<K extends keyof ClientEvents>(event: K, listener: (...args: ClientEvents[K]) => void): () => void {
    return this.events.on(event, listener);
  }

  /** Answers the server's requests of `type` with `handler`'s result (awaited). Requests of
   * a type without a handler are answered with the error `unknown type`. */
  onRequest<T = unknown>(type: string, handler: RequestHandler<T>): void {
    this.answerers.set(type, handler as RequestHandler<never>);
  }

  /**
   * Sends an envelope: now when connected, else through the offline buffer once connected.
   * Returns false when it was not accepted: the client is closed, or the buffer is full (then
   * the `overflow` event also fires with the envelope).
   */
  send<K extends keyof Out & string>(type: K, data?: Out[K], options: SendOptions = {}): boolean {
    return this.deliver({ type, data, target: options.target });
  }

  /**
   * Sends a request and resolves with the reply's data. Rejects with a `RequestError`: the
   * server's `error` (`remote` true), or `timeout`, `disconnected`, `overflow`, `closed`
   * (see RequestError). While not connected it waits in the offline buffer, its timeout
   * running.
   */
  request<R = unknown, K extends keyof Out & string = keyof Out & string>(
    type: K,
    data?: Out[K],
    options: RequestOptions = {},
  ): Promise<R> {
    return new Promise((resolve, reject) => {
      const envelope: Envelope = { type, data, target: options.target, id: this.nextId++ };
      const id = envelope.id!;
      this.track(id, options.timeout ?? this.settings.requestTimeout, (error, reply) =>
        error ? reject(error) : resolve(reply as R),
      );
      if (!this.deliver(envelope)) this.settle(id, new RequestError(this.state === "closed" ? "closed" : "overflow"));
    });
  }

  /**
   * Subscribes to `topic` (now, or once connected) and keeps the subscription across
   * reconnects until `unsubscribe()`. Throws if the topic is subscribed already.
   */
  subscribe<T = unknown>(
    topic: string,
    handlers: SubscriptionHandlers<T> = {},
    options: SubscribeOptions = {},
  ): Subscription<T> {
    if (this.subscriptions.has(topic)) throw new Error(`melody-client: already subscribed to ${topic}`);
    const subscription = new Subscription<T>(topic, handlers, options, this.host);
    this.subscriptions.set(topic, subscription as Subscription<never>);
    subscription.subscribe();
    return subscription;
  }

  /** The subscription to `topic`, if any. */
  subscription(topic: string): Subscription<unknown> | undefined {
    return this.subscriptions.get(topic) as Subscription<unknown> | undefined;
  }

  /** What subscriptions use of the client. */
  private readonly host: SubscriptionHost = {
    connected: () => this.state === "connected",
    ask: (type, data, done) => {
      if (this.state !== "connected") return done(new RequestError("disconnected"));
      const id = this.nextId++;
      this.track(id, this.settings.requestTimeout, done);
      this.transmit({ type, data, id });
      this.pending.get(id)!.sent = true;
    },
    forget: (subscription) => {
      if (this.subscriptions.get(subscription.topic) === subscription) this.subscriptions.delete(subscription.topic);
    },
  };

  // --- connecting ---------------------------------------------------------------------------

  /** Starts an attempt: the token (maybe awaited), then the socket. */
  private open(): void {
    const generation = ++this.generation;
    this.current = "connecting";
    this.events.emit("connecting", { attempt: this.failures });
    const failed = (error: unknown) =>
      generation === this.generation && this.lost(GIVE_UP, `token failed: ${(error as Error)?.message ?? error}`);
    let token: string | Promise<string> | undefined;
    try {
      token = this.settings.token?.();
    } catch (error) {
      return void failed(error);
    }
    // A token given at once opens at once (no turn of the event loop in between).
    if (typeof token === "object") {
      token.then((token) => generation === this.generation && this.dial(token), failed);
    } else this.dial(token);
  }

  private dial(token: string | undefined): void {
    let socket: WebSocketLike;
    try {
      socket = new this.settings.WebSocket(this.socketUrl(token));
    } catch (error) {
      return this.lost(GIVE_UP, `cannot open: ${(error as Error)?.message ?? error}`);
    }
    this.socket = socket;
    this.watch(this.settings.connectTimeout, () => this.giveUp("connect timeout"));
    socket.onopen = () => this.ping();
    socket.onmessage = (event) => this.socket === socket && this.receive(event.data);
    socket.onclose = (event) => this.socket === socket && this.lost(event.code, event.reason ?? "");
    socket.onerror = () => {}; // a close event follows, with the code
  }

  private socketUrl(token: string | undefined): string {
    const location = (globalThis as { location?: { href: string } }).location;
    const url = new URL(this.url, location?.href);
    url.protocol = url.protocol.replace(/^http/, "ws");
    if (token !== undefined) url.searchParams.set(this.settings.tokenParam, token);
    return url.href;
  }

  /** The first message of a connection: the server proved it accepted it. */
  private connected(): void {
    this.current = "connected";
    this.failures = 0;
    this.expired = 0;
    this.startTimer("stable", this.settings.stableAfter, () => this.backoff.reset());
    // Subscriptions first: buffered messages may need them (a `say` to a room one is in).
    for (const subscription of this.subscriptions.values()) subscription.subscribe();
    const buffered = this.buffer;
    this.buffer = [];
    for (const envelope of buffered) {
      this.transmit(envelope);
      const pending = envelope.id === undefined ? undefined : this.pending.get(envelope.id);
      if (pending) pending.sent = true;
    }
    this.events.emit("connected");
  }

  // --- liveness -----------------------------------------------------------------------------

  /** Asks the server for an answer; any message that arrives proves the connection alive. */
  private ping(): void {
    // Its id is not tracked: the answer only has to arrive, and an unknown id is ignored.
    this.transmit({ type: "ping", id: this.nextId++ });
  }

  /** After a message: wait `heartbeatInterval` for the next, then ping and wait
   * `heartbeatTimeout` for anything at all before giving the connection up. */
  private alive(): void {
    this.watch(this.settings.heartbeatInterval, () => {
      this.ping();
      this.watch(this.settings.heartbeatTimeout, () => this.giveUp("heartbeat timeout"));
    });
  }

  private watch(ms: number, expired: () => void): void {
    this.startTimer("watchdog", ms, expired);
  }

  // --- receiving ----------------------------------------------------------------------------

  private receive(frame: unknown): void {
    if (this.state === "connecting") this.connected();
    this.alive();
    const envelope = decode(frame);
    if (!envelope) return;
    if (isAnswer(envelope)) {
      const error = envelope.type === "error" ? RequestError.from(envelope.data) : undefined;
      return this.settle(envelope.id, error, envelope.data ?? null);
    }
    if (envelope.id !== undefined) return void this.answer(envelope as Envelope & { id: number });
    const data = envelope.data as { topic?: unknown } | null | undefined;
    const subscription =
      (envelope.type === "pub" || envelope.type === "join" || envelope.type === "leave") &&
      typeof data?.topic === "string"
        ? this.subscriptions.get(data.topic)
        : undefined;
    if (subscription) return subscription.receive(envelope.type, data as Record<string, unknown>);
    this.handlers.emit(envelope.type, envelope.data, envelope);
  }

  private async answer(request: Envelope & { id: number }): Promise<void> {
    const socket = this.socket;
    const handler = this.answerers.get(request.type) as RequestHandler | undefined;
    let answer: Envelope;
    if (!handler) {
      answer = { type: "error", id: request.id, data: { reason: "unknown type", type: request.type } };
    } else {
      try {
        answer = { type: "reply", id: request.id, data: (await handler(request.data, request)) ?? null };
      } catch (error) {
        const data =
          error instanceof RequestError
            ? { reason: error.reason, message: error.message }
            : { reason: "internal error" };
        answer = { type: "error", id: request.id, data };
      }
    }
    // An answer belongs to the connection that asked: a new session never heard the question.
    if (socket === this.socket && this.state === "connected") this.transmit(answer);
  }

  // --- sending ------------------------------------------------------------------------------

  /** Sends now, or buffers; false when the envelope was refused (closed, or buffer full). */
  private deliver(envelope: Envelope): boolean {
    if (this.state === "connected") {
      this.transmit(envelope);
      const pending = envelope.id === undefined ? undefined : this.pending.get(envelope.id);
      if (pending) pending.sent = true;
      return true;
    }
    if (this.state === "closed") return false;
    if (this.buffer.length >= this.settings.bufferSize) {
      this.events.emit("overflow", envelope);
      return false;
    }
    this.buffer.push(envelope);
    return true;
  }

  private transmit(envelope: Envelope): void {
    this.socket?.send(encode(envelope));
  }

  private track(id: number, timeout: number, done: Pending["done"]): void {
    const timer = this.settings.timers.setTimeout(() => this.settle(id, new RequestError("timeout")), timeout);
    this.pending.set(id, { done, timer, sent: false });
  }

  /** Ends request `id` (a no-op if it ended already) and takes it out of the buffer. */
  private settle(id: number, error: RequestError | undefined, data?: unknown): void {
    const pending = this.pending.get(id);
    if (!pending) return;
    this.pending.delete(id);
    this.settings.timers.clearTimeout(pending.timer);
    if (!pending.sent) this.buffer = this.buffer.filter((envelope) => envelope.id !== id);
    pending.done(error, data);
  }

  // --- losing the connection ----------------------------------------------------------------

  /** Gives up on the current connection (closed with 4000 and `reason`) and reconnects. */
  private giveUp(reason: string): void {
    this.abandon(GIVE_UP, reason);
    this.lost(GIVE_UP, reason);
  }

  /** Detaches and closes the current socket, if any; stops its timers. */
  private abandon(code: number, reason: string): void {
    this.generation += 1;
    const socket = this.socket;
    this.socket = undefined;
    this.stopTimer("watchdog");
    this.stopTimer("stable");
    this.stopTimer("retry");
    if (!socket) return;
    socket.onopen = socket.onmessage = socket.onclose = null;
    try {
      // `ws` would wait up to 30 s for the closing handshake of a dead connection.
      if (socket.terminate) socket.terminate();
      else socket.close(code, reason);
    } catch {
      // Closing a socket that is already closing is no news.
    }
  }

  /** The connection (or attempt) ended with `code`: reconnect, refresh the token, or stop. */
  private lost(code: number, reason: string): void {
    this.abandon(code, reason);
    for (const [id, pending] of this.pending) if (pending.sent) this.settle(id, new RequestError("disconnected"));
    for (const subscription of this.subscriptions.values()) subscription.disconnected();
    let action = closeAction(code, reason);
    if (action === "refresh token" && (this.expired++ > 0 || !this.settings.token)) action = "stop";
    if (action === "stop") return this.stop({ code, reason, willReconnect: false });
    this.failures += 1;
    const delay = action === "refresh token" ? 0 : this.backoff.next();
    this.current = "disconnected";
    this.startTimer("retry", delay, () => this.open());
    this.events.emit("disconnected", { code, reason, willReconnect: true, delay });
  }

  private stop(info: Disconnect): void {
    this.current = "closed";
    for (const subscription of this.subscriptions.values()) subscription.disconnected();
    for (const id of [...this.pending.keys()]) this.settle(id, new RequestError("closed"));
    this.buffer = [];
    this.events.emit("disconnected", info);
  }

  private startTimer(kind: TimerKind, ms: number, callback: () => void): void {
    this.stopTimer(kind);
    this.timers[kind] = this.settings.timers.setTimeout(() => {
      this.timers[kind] = undefined;
      callback();
    }, ms);
  }

  private stopTimer(kind: TimerKind): void {
    if (this.timers[kind] !== undefined) this.settings.timers.clearTimeout(this.timers[kind]);
    this.timers[kind] = undefined;
  }
}
