//! [`Error`]: everything a session or the hub reports, and the one table that maps errors to
//! close codes.

use std::time::Duration;

use crate::{CloseCode, SessionId};

/// What went wrong. The first four variants are Go melody's error values
/// (`ErrClosed`, `ErrSessionClosed`, `ErrWriteClosed`, `ErrMessageBufferFull`); the others are
/// reported to the error handler when a session ends badly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The hub is closed: no broadcast, no new session.
    #[error("melody instance is closed")]
    Closed,
    /// The session was already closed when `close` was called.
    #[error("session is closed")]
    SessionClosed,
    /// A write to a session that is closed or closing.
    #[error("tried to write to a closed session")]
    WriteClosed,
    /// A write found the session's outbound queue full; the message was dropped.
    #[error("session message buffer is full")]
    MessageBufferFull,
    /// No session with this id is connected.
    #[error("session {0} is not connected")]
    SessionNotFound(SessionId),
    /// The peer sent a message over [`Config::max_message_size`](crate::Config). Closed with 1009.
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    MessageTooBig {
        /// Size of the message (so far, if it arrived in fragments).
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// The peer sent a text message that is not valid UTF-8. Closed with 1007.
    #[error("text message is not valid utf-8")]
    InvalidUtf8,
    /// The peer broke the WebSocket protocol. Closed with 1002.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The peer sent messages faster than [`Config::message_rate_limit`](crate::Config) allows,
    /// beyond its burst. Closed with 1008.
    #[error("message rate limit exceeded")]
    RateLimited,
    /// The peer sent more frames than [`Config::frame_rate_limit`](crate::Config) allows,
    /// beyond its burst. Closed with 1008.
    #[error("frame rate limit exceeded")]
    FrameRateLimited,
    /// The peer ended the connection without a close frame (Go melody reports this as a
    /// close error with code 1006). Nothing is sent: the connection is gone.
    #[error("connection closed without a close frame (1006 abnormal closure)")]
    AbnormalClosure,
    /// No pong arrived within [`Config::pong_wait`](crate::Config).
    #[error("no pong within {0:?}")]
    PongTimeout(Duration),
    /// Queued messages could not be written within [`Config::write_wait`](crate::Config).
    #[error("write did not complete within {0:?}")]
    WriteTimeout(Duration),
    /// A close code that may not be sent (1004, 1005, 1006, 1015) was given to a close call.
    #[error("close code {0} cannot be sent in a close frame")]
    ReservedCloseCode(CloseCode),
    /// A close payload that is not a code followed by UTF-8 text was given to `close_with_msg`.
    #[error("invalid close payload")]
    InvalidClosePayload,
    /// A handler panicked. The session is closed with 1011.
    #[error("handler panicked: {0}")]
    HandlerPanicked(String),
    /// A route handler or a router middleware returned an error (see [`router`](crate::router)).
    /// The session stays open.
    #[error("handler failed: {0}")]
    HandlerFailed(String),
    /// A text message was not a routing envelope, or its data did not decode for the route's
    /// handler (see [`router`](crate::router)). The sender gets an error envelope, or is closed
    /// with 1003 when the router is configured so.
    #[error("malformed envelope: {0}")]
    MalformedEnvelope(String),
    /// An envelope's data could not be encoded as JSON; nothing was sent.
    #[error("could not encode envelope")]
    Encode(#[source] serde_json::Error),
    /// The connection failed underneath the WebSocket protocol.
    #[error("transport error")]
    Io(#[source] std::io::Error),
}

impl Error {
    /// The close code a session is closed with after this error, if the error ends it.
    ///
    /// | error | code |
    /// |---|---|
    /// | [`Error::MessageTooBig`] | 1009 |
    /// | [`Error::InvalidUtf8`] | 1007 |
    /// | [`Error::Protocol`] | 1002 |
    /// | [`Error::HandlerPanicked`] | 1011 |
    /// | [`Error::Closed`] (hub shut down) | 1001 |
    /// | [`Error::RateLimited`], [`Error::FrameRateLimited`] | 1008 |
    /// | [`Error::AbnormalClosure`] | 1006 (reported only: the connection is already gone) |
    /// | [`Error::MessageBufferFull`] under [`OverflowPolicy::CloseSession`](crate::OverflowPolicy) | 1008 |
    /// | the rest | none (the session goes on, or the connection is already gone) |
    ///
    /// ```
    /// use melody::{CloseCode, Error};
    ///
    /// assert_eq!(Error::InvalidUtf8.close_code(), Some(CloseCode::INVALID_FRAME_PAYLOAD_DATA));
    /// assert_eq!(Error::WriteClosed.close_code(), None);
    /// ```
    #[must_use]
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            Self::MessageTooBig { .. } => Some(CloseCode::MESSAGE_TOO_BIG),
            Self::InvalidUtf8 => Some(CloseCode::INVALID_FRAME_PAYLOAD_DATA),
            Self::Protocol(_) => Some(CloseCode::PROTOCOL_ERROR),
            Self::HandlerPanicked(_) => Some(CloseCode::INTERNAL_SERVER_ERR),
            Self::Closed => Some(CloseCode::GOING_AWAY),
            Self::MessageBufferFull | Self::RateLimited | Self::FrameRateLimited => {
                Some(CloseCode::POLICY_VIOLATION)
            }
            Self::AbnormalClosure => Some(CloseCode::ABNORMAL_CLOSURE),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_code_table() {
        let rows = [
            (Error::MessageTooBig { len: 2, max: 1 }, Some(1009)),
            (Error::InvalidUtf8, Some(1007)),
            (Error::Protocol("x".into()), Some(1002)),
            (Error::HandlerPanicked("x".into()), Some(1011)),
            (Error::Closed, Some(1001)),
            (Error::MessageBufferFull, Some(1008)),
            (Error::RateLimited, Some(1008)),
            (Error::FrameRateLimited, Some(1008)),
            (Error::AbnormalClosure, Some(1006)),
            (Error::WriteClosed, None),
            (Error::PongTimeout(Duration::ZERO), None),
            (Error::HandlerFailed("x".into()), None),
            (Error::MalformedEnvelope("x".into()), None),
            (
                Error::Encode(serde_json::from_str::<u8>("x").unwrap_err()),
                None,
            ),
        ];
        for (error, code) in rows {
            assert_eq!(error.close_code().map(u16::from), code, "{error}");
        }
    }
}
