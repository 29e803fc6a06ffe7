// What a close code means for reconnecting (docs/PROTOCOL.md "Reconnecting").

/** What the client does after a connection closed with some code and reason. */
export type CloseAction = "reconnect" | "refresh token" | "stop";

/** The close reason that, with code 4401, says the token is stale rather than wrong. */
export const TOKEN_EXPIRED = "token expired";

/**
 * `4400`–`4499` are refusals (4000 + the HTTP status the server would have answered, 4401
 * unauthorized, 4403 forbidden): the same credentials will be refused again, so the client
 * stops, except for 4401 `token expired`, which is worth one reconnect with a fresh token.
 * Every other close (1000, 1001 going away, 1006 abnormal, 1008 policy: a rate limit or an
 * overflowing queue, 1011, 1012, 1013, the client's own 4000, …) is worth a reconnect with
 * backoff.
 */
export function closeAction(code: number, reason: string): CloseAction {
  if (code === 4401 && reason === TOKEN_EXPIRED) return "refresh token";
  if (code >= 4400 && code <= 4499) return "stop";
  return "reconnect";
}
