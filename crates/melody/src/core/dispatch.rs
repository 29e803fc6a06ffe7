//! The handler table of a hub, and how handlers are called: plain or async, with panics caught
//! and turned into errors of the one session they happened in.
//!
//! The table is replaced as a whole when a handler is set (copy on write), so the per-message
//! path reads it with one atomic load and no lock.

use std::{any::Any, fmt, future::Future, panic::AssertUnwindSafe, pin::Pin, sync::Arc};

use bytes::Bytes;
use futures_util::FutureExt;
use http::request::Parts;

use super::{admission::AuthRejection, data::Keys, error::Error, session::Session};
use crate::protocol::{
    close::CloseFrame,
    message::{Message, Text},
};

pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
pub(crate) type SessionFn = Arc<dyn Fn(&Session) + Send + Sync>;
pub(crate) type ErrorFn = Arc<dyn Fn(&Session, &Error) + Send + Sync>;
pub(crate) type CloseFn = Arc<dyn Fn(&Session, &CloseFrame) + Send + Sync>;
pub(crate) type SentFn = Arc<dyn Fn(&Session, &Message) + Send + Sync>;
pub(crate) type AuthFuture = Pin<Box<dyn Future<Output = Result<Keys, AuthRejection>> + Send>>;
pub(crate) type AuthFn = Arc<dyn Fn(&Parts) -> AuthFuture + Send + Sync>;

pub(crate) type SyncMessageFn<T> = Arc<dyn Fn(&Session, T) + Send + Sync>;
pub(crate) type AsyncMessageFn<T> = Arc<dyn Fn(Session, T) -> BoxFuture + Send + Sync>;

/// A message handler, either plain or async.
pub(crate) enum OnMessage<T> {
    Sync(SyncMessageFn<T>),
    Async(AsyncMessageFn<T>),
}

impl<T> Clone for OnMessage<T> {
    fn clone(&self) -> Self {
        match self {
            Self::Sync(f) => Self::Sync(f.clone()),
            Self::Async(f) => Self::Async(f.clone()),
        }
    }
}

impl<T: Send + 'static> OnMessage<T> {
    pub(crate) fn from_sync(f: impl Fn(&Session, T) + Send + Sync + 'static) -> Self {
        Self::Sync(Arc::new(f))
    }

    pub(crate) fn from_async<F, Fut>(f: F) -> Self
    where
        F: Fn(Session, T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self::Async(Arc::new(move |session, value| Box::pin(f(session, value))))
    }
}

/// Every handler a hub can have; unset ones cost nothing.
#[derive(Clone, Default)]
pub(crate) struct Handlers {
    pub(crate) connect: Option<SessionFn>,
    pub(crate) disconnect: Option<SessionFn>,
    pub(crate) text: Option<OnMessage<Text>>,
    pub(crate) binary: Option<OnMessage<Bytes>>,
    pub(crate) sent_text: Option<SentFn>,
    pub(crate) sent_binary: Option<SentFn>,
    pub(crate) error: Option<ErrorFn>,
    pub(crate) close: Option<CloseFn>,
    pub(crate) pong: Option<SessionFn>,
    pub(crate) auth: Option<AuthFn>,
}

impl Handlers {
    /// Whether any "sent" handler wants to see written messages.
    pub(crate) fn wants_sent(&self) -> bool {
        self.sent_text.is_some() || self.sent_binary.is_some()
    }

    /// Tells the error handler (and the log) about an error of `session`. A panic of the error
    /// handler itself is caught and only logged.
    pub(crate) fn report(&self, session: &Session, error: &Error) {
        tracing::debug!(session = %session.id(), %error, "session error");
        if let Some(handler) = &self.error {
            if guarded(|| handler(session, error)).is_err() {
                tracing::warn!(session = %session.id(), "the error handler panicked");
            }
        }
    }
}

impl fmt::Debug for Handlers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handlers")
            .field("connect", &self.connect.is_some())
            .field("disconnect", &self.disconnect.is_some())
            .field("text", &self.text.is_some())
            .field("binary", &self.binary.is_some())
            .field("sent", &self.wants_sent())
            .field("error", &self.error.is_some())
            .field("close", &self.close.is_some())
            .field("pong", &self.pong.is_some())
            .field("auth", &self.auth.is_some())
            .finish()
    }
}

/// Runs user code, turning a panic into a value.
pub(crate) fn guarded<R>(f: impl FnOnce() -> R) -> Result<R, Box<dyn Any + Send>> {
    std::panic::catch_unwind(AssertUnwindSafe(f))
}

/// Spawns a handler's future as a task of its own; a panic is reported to the error handler of
/// its session.
pub(crate) fn spawn_guarded(
    handlers: Arc<Handlers>,
    session: Session,
    future: impl Future<Output = ()> + Send + 'static,
) {
    tokio::spawn(async move {
        if let Err(panic) = AssertUnwindSafe(future).catch_unwind().await {
            handlers.report(&session, &panic_error(panic));
        }
    });
}

/// The error a caught panic becomes.
pub(crate) fn panic_error(panic: Box<dyn Any + Send>) -> Error {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned());
    Error::HandlerPanicked(text.into())
}
