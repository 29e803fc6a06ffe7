//! Errors, one type per operation: what a send, a close, a join or a read of session data can
//! fail with, and [`Error`], what goes wrong in a session and reaches the error handler. All are
//! cheap to clone; the one table from errors to close codes is [`Error::close_code`].

use std::{fmt, sync::Arc, time::Duration};

use crate::protocol::{
    close::CloseCode,
    frames::{ProtocolError, Violation},
    message::Message,
};

/// What went wrong in a session, as the error handler ([`Melody::on_error`]) sees it.
///
/// [`Melody::on_error`]: crate::Melody::on_error
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A message was dropped: the session's outbound queue was full.
    #[error("session message buffer is full")]
    MessageBufferFull,
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
    Protocol(#[from] ProtocolError),
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
    /// A handler panicked. The session is closed with 1011.
    #[error("handler panicked: {0}")]
    HandlerPanicked(Arc<str>),
    /// A handler or a plug-in reported an error (the typed router's errors are
    /// `router::RouterError`s: downcast the source to read them).
    /// The session stays open.
    #[error("handler failed: {0}")]
    Handler(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// The connection failed underneath the WebSocket protocol.
    #[error("transport error: {0}")]
    Io(#[source] Arc<std::io::Error>),
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
    /// | [`Error::RateLimited`], [`Error::FrameRateLimited`] | 1008 |
    /// | [`Error::MessageBufferFull`] under [`OverflowPolicy::CloseSession`](crate::OverflowPolicy) | 1008 |
    /// | [`Error::AbnormalClosure`] | 1006 (reported only: the connection is already gone) |
    /// | the rest | none (the session goes on, or the connection is already gone) |
    ///
    /// ```
    /// use melody::{CloseCode, Error};
    ///
    /// assert_eq!(Error::InvalidUtf8.close_code(), Some(CloseCode::INVALID_FRAME_PAYLOAD_DATA));
    /// assert_eq!(Error::PongTimeout(std::time::Duration::ZERO).close_code(), None);
    /// ```
    #[must_use]
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            Self::MessageTooBig { .. } => Some(CloseCode::MESSAGE_TOO_BIG),
            Self::InvalidUtf8 => Some(CloseCode::INVALID_FRAME_PAYLOAD_DATA),
            Self::Protocol(_) => Some(CloseCode::PROTOCOL_ERROR),
            Self::HandlerPanicked(_) => Some(CloseCode::INTERNAL_SERVER_ERR),
            Self::MessageBufferFull | Self::RateLimited | Self::FrameRateLimited => {
                Some(CloseCode::POLICY_VIOLATION)
            }
            Self::AbnormalClosure => Some(CloseCode::ABNORMAL_CLOSURE),
            _ => None,
        }
    }

    /// A handler error from any error value.
    pub fn handler(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Handler(Arc::new(error))
    }
}

impl From<Violation> for Error {
    fn from(violation: Violation) -> Self {
        match violation {
            Violation::TooBig { len, max } => Self::MessageTooBig { len, max },
            Violation::InvalidUtf8 => Self::InvalidUtf8,
            Violation::Protocol(error) => Self::Protocol(error),
            Violation::FrameRate => Self::FrameRateLimited,
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Self {
        Self::Io(Arc::new(error))
    }
}

/// The hub is closed: nothing is sent, no session is added (Go melody's `ErrClosed`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, thiserror::Error)]
#[error("melody instance is closed")]
pub struct Closed;

/// Why [`Session::send`](crate::Session::send) did not queue a message; the message is handed
/// back, as by tokio's `try_send`.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrySendError<T = Message> {
    /// The session's outbound queue is full (Go melody's `ErrMessageBufferFull`). The overflow
    /// policy has been applied and the error handler told.
    #[error("session message buffer is full")]
    Full(T),
    /// The session is closed or closing (Go melody's `ErrWriteClosed`).
    #[error("tried to write to a closed session")]
    Closed(T),
}

impl<T> TrySendError<T> {
    /// The message that was not queued.
    pub fn into_inner(self) -> T {
        match self {
            Self::Full(value) | Self::Closed(value) => value,
        }
    }

    /// Whether the queue was full.
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full(_))
    }

    /// Whether the session was closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed(_))
    }
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("Full(..)"),
            Self::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

/// [`Session::send_async`](crate::Session::send_async) found the session closed; the message
/// is handed back.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("tried to write to a closed session")]
pub struct SendError<T = Message>(pub T);

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError(..)")
    }
}

/// Why a message for one session by id ([`Melody::session`](crate::Melody::session)) was not
/// queued; the message is handed back.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendToError<T = Message> {
    /// No session with this id is connected here, and no plug-in (a cluster) took it.
    #[error("session is not connected")]
    NotConnected(T),
    /// The session's queue is full; the overflow policy has been applied.
    #[error("session message buffer is full")]
    Full(T),
    /// The session, or the hub, is closed.
    #[error("tried to write to a closed session")]
    Closed(T),
}

impl<T> SendToError<T> {
    /// The message that was not queued.
    pub fn into_inner(self) -> T {
        match self {
            Self::NotConnected(value) | Self::Full(value) | Self::Closed(value) => value,
        }
    }
}

impl<T> fmt::Debug for SendToError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotConnected(_) => f.write_str("NotConnected(..)"),
            Self::Full(_) => f.write_str("Full(..)"),
            Self::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

/// Why a close call did not close.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseError {
    /// The session was already closed (Go melody's `ErrSessionClosed`).
    #[error("session is closed")]
    SessionClosed,
    /// The hub was already closed (Go melody's `ErrClosed`).
    #[error("melody instance is closed")]
    HubClosed,
    /// The code may not be sent in a close frame: 1004, 1005 (with a reason), 1006 and 1015 are
    /// only reported locally, 1016–2999 are kept for future standards
    /// ([`CloseCode::may_be_sent`]).
    #[error("close code {0} cannot be sent in a close frame")]
    ReservedCode(CloseCode),
    /// A raw close payload that is not a code followed by UTF-8 text.
    #[error("invalid close payload")]
    InvalidPayload,
}

/// Why [`Session::join`](crate::Session::join) did not join.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The session is closed or closing.
    #[error("session is closed")]
    Closed,
    /// The session is already in [`Config::max_topics_per_session`](crate::Config) topics.
    #[error("session is already in {max} topics, the most allowed")]
    TooManyTopics {
        /// The configured limit.
        max: usize,
    },
}

/// Why a value could not be read from a session ([`Session::try_get`](crate::Session::try_get)).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// Nothing is stored under the key.
    #[error("session key {key:?} does not exist")]
    Missing {
        /// The key.
        key: String,
    },
    /// A value of another type is stored under the key.
    #[error("session key {key:?} holds a {stored}, not a {requested}")]
    WrongType {
        /// The key.
        key: String,
        /// The type of the stored value.
        stored: &'static str,
        /// The type that was asked for.
        requested: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_code_table() {
        let rows = [
            (Error::MessageTooBig { len: 2, max: 1 }, Some(1009)),
            (Error::InvalidUtf8, Some(1007)),
            (Error::Protocol(ProtocolError::Unmasked), Some(1002)),
            (Error::HandlerPanicked("x".into()), Some(1011)),
            (Error::MessageBufferFull, Some(1008)),
            (Error::RateLimited, Some(1008)),
            (Error::FrameRateLimited, Some(1008)),
            (Error::AbnormalClosure, Some(1006)),
            (Error::PongTimeout(Duration::ZERO), None),
            (Error::WriteTimeout(Duration::ZERO), None),
            (Error::handler(std::fmt::Error), None),
            (Error::from(std::io::Error::other("x")), None),
        ];
        for (error, code) in rows {
            assert_eq!(error.close_code().map(u16::from), code, "{error}");
        }
    }

    #[test]
    fn errors_are_cheap_to_clone_and_hand_messages_back() {
        let error = Error::from(std::io::Error::other("gone"));
        let copy = error.clone();
        assert_eq!(copy.to_string(), error.to_string());
        let full = TrySendError::Full(Message::text("kept"));
        assert!(full.is_full());
        assert_eq!(full.into_inner().as_str(), Some("kept"));
    }
}
