//! The handler table of a hub: what runs on connect, on each message, on errors and so on.
//!
//! The table is replaced as a whole when a handler is set (copy on write), so the per-message
//! path reads it with one atomic load and no lock.

use std::{fmt, future::Future, pin::Pin, sync::Arc};

use bytes::Bytes;

use http::request::Parts;

use crate::{AuthRejection, CloseFrame, Error, Keys, Message, Session, Text, router::Router};

pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
pub(crate) type SessionFn = Arc<dyn Fn(&Session) + Send + Sync>;
pub(crate) type ErrorFn = Arc<dyn Fn(&Session, &Error) + Send + Sync>;
pub(crate) type CloseFn = Arc<dyn Fn(&Session, &CloseFrame) + Send + Sync>;
pub(crate) type SentFn = Arc<dyn Fn(&Session, &Message) + Send + Sync>;
pub(crate) type AuthFuture = Pin<Box<dyn Future<Output = Result<Keys, AuthRejection>> + Send>>;
pub(crate) type BackplaneErrorFn = Arc<dyn Fn(&(dyn std::error::Error + 'static)) + Send + Sync>;
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
    pub(crate) message: Option<OnMessage<Text>>,
    pub(crate) message_binary: Option<OnMessage<Bytes>>,
    pub(crate) sent_message: Option<SentFn>,
    pub(crate) sent_message_binary: Option<SentFn>,
    pub(crate) error: Option<ErrorFn>,
    pub(crate) close: Option<CloseFn>,
    pub(crate) pong: Option<SessionFn>,
    pub(crate) auth: Option<AuthFn>,
    pub(crate) router: Option<Arc<Router>>,
    pub(crate) backplane_error: Option<BackplaneErrorFn>,
}

impl Handlers {
    /// Whether any "sent" handler wants to see written messages.
    pub(crate) fn wants_sent(&self) -> bool {
        self.sent_message.is_some() || self.sent_message_binary.is_some()
    }

    pub(crate) fn report(&self, session: &Session, error: &Error) {
        tracing::debug!(session = %session.id(), %error, "session error");
        if let Some(handler) = &self.error {
            handler(session, error);
        }
    }
}

impl fmt::Debug for Handlers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handlers")
            .field("connect", &self.connect.is_some())
            .field("disconnect", &self.disconnect.is_some())
            .field("message", &self.message.is_some())
            .field("message_binary", &self.message_binary.is_some())
            .field("sent_message", &self.sent_message.is_some())
            .field("sent_message_binary", &self.sent_message_binary.is_some())
            .field("error", &self.error.is_some())
            .field("close", &self.close.is_some())
            .field("pong", &self.pong.is_some())
            .field("auth", &self.auth.is_some())
            .field("router", &self.router.is_some())
            .field("backplane_error", &self.backplane_error.is_some())
            .finish()
    }
}
