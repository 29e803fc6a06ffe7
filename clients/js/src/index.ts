// melody-client: the browser and Node client of the melody live protocol (docs/PROTOCOL.md).

export { Client } from "./client.js";
export type {
  ClientEvents,
  ConnectionState,
  Disconnect,
  EventMap,
  RequestHandler,
  RequestOptions,
  SendOptions,
} from "./client.js";
export { Backoff } from "./backoff.js";
export { type CloseAction, TOKEN_EXPIRED, closeAction } from "./closeCodes.js";
export { type Envelope, type ErrorData, decode, encode } from "./envelope.js";
export { RequestError } from "./errors.js";
export type { ClientOptions, Timers, WebSocketConstructor, WebSocketLike } from "./options.js";
export { Subscription } from "./subscription.js";
export type {
  Member,
  Position,
  Publication,
  SubscribeOptions,
  Subscribed,
  SubscriptionHandlers,
} from "./subscription.js";
