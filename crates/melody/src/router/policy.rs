//! What the router does with input it cannot route: unknown types and malformed envelopes.

/// What the router does with an envelope whose type has no handler.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnknownType {
    /// Drop it silently (Velocity's behaviour). The default.
    #[default]
    Drop,
    /// Answer the sender with `{"type":"error","data":{"reason":"unknown type","type":"…"}}`.
    Reply,
}

/// What the router does with text that is not an envelope. Either way the error handler gets
/// [`RouterError::Malformed`](super::RouterError::Malformed) and other sessions are unaffected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Malformed {
    /// Answer the sender with
    /// `{"type":"error","data":{"reason":"malformed envelope","detail":"…"}}`; the session stays
    /// open. The default.
    #[default]
    Reply,
    /// Close the session with 1003 Unsupported Data, reason "malformed envelope".
    Close,
}
