// The wire format of docs/PROTOCOL.md "Envelopes": one JSON object per text frame.

/** One message of the melody protocol, in either direction. */
export interface Envelope<T = unknown> {
  /** What the message is; routes it. */
  type: string;
  /** The payload (`null` or absent when there is none). */
  data?: T;
  /** Set on a request that wants exactly one `reply` or `error` with the same id. */
  id?: number;
  /** Client → server: a direct send to another session (only types the server allows). */
  target?: string;
  /** Server → client: the session id of the client the server forwards this for. */
  from?: string;
}

/** The `data` of an `error` envelope: always a `reason`, maybe a `message` for people. */
export interface ErrorData {
  reason: string;
  message?: string;
  [field: string]: unknown;
}

/** The text frame for `envelope`; absent fields stay absent. */
export function encode(envelope: Envelope): string {
  return JSON.stringify(envelope);
}

/**
 * The envelope in a received frame, or `undefined` when it is not one: a binary frame, text
 * that is not a JSON object with a string `type`, an `id` that is not an integer in
 * 1 ..= 2⁵³−1, or a `from` that is not a string. Such frames are ignored (they still prove
 * the connection alive).
 */
export function decode(frame: unknown): Envelope | undefined {
  if (typeof frame !== "string") return undefined;
  let value: unknown;
  try {
    value = JSON.parse(frame);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  const envelope = value as Record<string, unknown>;
  if (typeof envelope.type !== "string") return undefined;
  const id = envelope.id;
  if (id !== undefined && !(Number.isSafeInteger(id) && (id as number) >= 1)) return undefined;
  if (envelope.from !== undefined && typeof envelope.from !== "string") return undefined;
  return envelope as unknown as Envelope;
}

/** Whether `envelope` answers a request (a `reply` or `error` with an id). */
export function isAnswer(envelope: Envelope): envelope is Envelope & { id: number } {
  return envelope.id !== undefined && (envelope.type === "reply" || envelope.type === "error");
}
