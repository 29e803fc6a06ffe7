// The one error type of requests: a server's `error` answer or a local failure.

import type { ErrorData } from "./envelope.js";

/**
 * Why a request got no result. `reason` is machine-readable: the server's (`forbidden`,
 * `unknown type`, …; then `remote` is true and `data` holds the whole error), or one of the
 * client's own:
 * - `timeout`: no answer within the request's timeout (counted from the call, buffered time
 *   included);
 * - `disconnected`: the connection was lost after the request was sent (the server may or may
 *   not have handled it; it is not sent again);
 * - `overflow`: the offline buffer was full, the request was never sent;
 * - `closed`: the client was closed (by `close()` or a refusal) before an answer came.
 *
 * Throw one from an `onRequest` handler to answer the server with that reason and message.
 */
export class RequestError extends Error {
  override name = "RequestError";
  /** What went wrong, for programs. */
  readonly reason: string;
  /** Whether the server answered with this error (false: the client's own reasons above). */
  readonly remote: boolean;
  /** The server's error data (`reason`, `message`, and whatever else it added). */
  readonly data: ErrorData;

  constructor(reason: string, message?: string, data?: ErrorData) {
    super(message ?? reason);
    this.reason = reason;
    this.remote = data !== undefined;
    this.data = data ?? { reason };
  }

  /** The error a server's `error` answer stands for. */
  static from(data: unknown): RequestError {
    const fields = (typeof data === "object" && data !== null ? data : {}) as Partial<ErrorData>;
    const reason = typeof fields.reason === "string" ? fields.reason : "unknown error";
    const message = typeof fields.message === "string" ? fields.message : undefined;
    return new RequestError(reason, message, { ...fields, reason });
  }
}
