// The client's knobs, their defaults, and the seams tests use (WebSocket, timers, random).

/** The part of a WebSocket the client uses: the browser's, `ws`'s, or a test's fake. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  /** `ws`'s immediate teardown; used when present (a half-open socket need not linger). */
  terminate?(): void;
  // `any`: the browser's and `ws`'s event types differ; the client reads `data`, `code`, `reason`.
  onopen: ((event: any) => void) | null;
  onmessage: ((event: any) => void) | null;
  onclose: ((event: any) => void) | null;
  onerror: ((event: any) => void) | null;
}

/** A WebSocket class: `globalThis.WebSocket`, or `ws`'s `WebSocket` in Node 20. */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** The timer functions the client schedules with (tests pass a fake clock). */
export interface Timers {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** Everything a `Client` can be told; every field is optional, defaults below. */
export interface ClientOptions {
  /** The WebSocket class. Default: `globalThis.WebSocket` (browsers, Node ≥ 22). */
  WebSocket?: WebSocketConstructor;
  /**
   * Called before every connection attempt; its result goes in the URL's query as
   * `tokenParam`. Called again after a close 4401 `token expired`. A throw or rejection counts
   * as a failed attempt (retried with backoff). Default: none (the URL as given).
   */
  token?: () => string | Promise<string>;
  /** The query parameter carrying the token. Default `"token"`. */
  tokenParam?: string;
  /** Upper bound of the first reconnect delay, in ms. Default 500. */
  backoffBase?: number;
  /** Largest upper bound of a reconnect delay, in ms. Default 20 000. */
  backoffCap?: number;
  /** A connection that stays up this long (ms) resets the backoff. Default 10 000. */
  stableAfter?: number;
  /** Quiet time (ms) after the last message received before a `ping` is sent. Default 25 000. */
  heartbeatInterval?: number;
  /** How long (ms) a `ping` may go without any message arriving before the connection is
   * declared dead and replaced. Default 10 000. */
  heartbeatTimeout?: number;
  /** How long (ms) an attempt may take from opening the socket to the server's first message
   * (the answer to the client's first `ping`). Default 10 000. */
  connectTimeout?: number;
  /** Default timeout of `request` (ms), buffered time included. Default 10 000. */
  requestTimeout?: number;
  /** How many messages (sends and requests) wait while not connected. Default 100. */
  bufferSize?: number;
  /** A number in [0, 1) for the backoff's jitter. Default `Math.random`. */
  random?: () => number;
  /** Timer functions. Default the global `setTimeout`/`clearTimeout`. */
  timers?: Timers;
}

/** The options with every default filled in. */
export type Settings = Required<Omit<ClientOptions, "token" | "WebSocket">> &
  Pick<ClientOptions, "token"> & { WebSocket: WebSocketConstructor };

const globalTimers: Timers = {
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/** `options` with the defaults; throws when there is no WebSocket class to use. */
export function settings(options: ClientOptions): Settings {
  const WebSocket =
    options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (!WebSocket) {
    throw new TypeError("melody-client: no global WebSocket; pass one as options.WebSocket");
  }
  return {
    tokenParam: "token",
    backoffBase: 500,
    backoffCap: 20_000,
    stableAfter: 10_000,
    heartbeatInterval: 25_000,
    heartbeatTimeout: 10_000,
    connectTimeout: 10_000,
    requestTimeout: 10_000,
    bufferSize: 100,
    random: Math.random,
    timers: globalTimers,
    ...definedOnly(options),
    WebSocket,
  };
}

/** `options` without its `undefined` fields, so that they do not hide a default. */
function definedOnly(options: ClientOptions): ClientOptions {
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined));
}
