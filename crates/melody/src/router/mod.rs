//! Typed JSON envelope routing: `{"type", "data", "target", "from"}` messages dispatched by
//! type, with middleware, on the same hub.
//!
//! A [`Router`] is a plug-in (feature `router`): built with its routes and middleware, then
//! plugged into a hub with [`Melody::plug`], it becomes the hub's text handler. Every text message
//! a session sends is read as an [`Envelope`] and routed; binary messages are not touched.
//!
//! ```
//! use melody::{Melody, router::{BoxError, Envelope, Router}};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct Join { room: String }
//!
//! let router = Router::new()
//!     .middleware(|session, envelope, next| async move {
//!         // Runs around every routed message and every direct send.
//!         tracing::info!(session = %session.id(), kind = %envelope.kind, "received");
//!         next.run(session, envelope).await
//!     })
//!     .on_data("join", |session, join: Join| async move {
//!         session.join(&join.room)?;
//!         session.send(Envelope::encode("joined", &join.room)?)?;
//!         Ok(())
//!     })
//!     .on("chat", |session, envelope| async move {
//!         // `envelope.from` is always the sender's id, filled in by the server.
//!         let room = envelope.data["room"].as_str().unwrap_or("lobby").to_owned();
//!         session.melody().topic(room).send(envelope)?;
//!         Ok::<_, BoxError>(())
//!     })
//!     .allow_direct("dm");
//! let melody = Melody::new();
//! melody.plug(router);
//! ```
//!
//! # Routing
//!
//! For each inbound text message, in this order:
//!
//! 1. Text that is not a JSON object with a string `type` (and, when present, string `target`
//!    and `from`) is **malformed**: the error handler gets [`RouterError::Malformed`], and the
//!    sender gets `{"type":"error","data":{"reason":"malformed envelope","detail":"…"}}` or, with
//!    [`Malformed::Close`], is closed with 1003 Unsupported Data "malformed envelope".
//! 2. The server sets `from` to the sender's id ([`SessionId`](crate::SessionId)'s decimal form); a `from` sent by
//!    the client is always overwritten, never trusted.
//! 3. An envelope with a `target` is a **direct send**, allowed only for the types declared
//!    with [`Router::allow_direct`] (none by default: a client must not be able to make any
//!    envelope appear in another client's stream). Any other type with a `target` gets
//!    `{"type":"error","data":{"reason":"direct send not allowed","type":"…"}}`. An allowed one
//!    goes through the middleware, then is forwarded (with `from` set) to the session whose id
//!    is `target` (the id's exact decimal form); the type's handler does not run. When no such
//!    session is connected, the sender gets
//!    `{"type":"error","data":{"reason":"target not connected","target":"…"}}`.
//!
//!    A forwarded envelope is unmistakably a peer's: it always carries `target` (the
//!    recipient's id) and `from` (the sender's, set by the server), while the server's own
//!    envelopes (sent with [`Envelope::encode`] or [`Envelope::new`]) never carry a
//!    `target`. Session ids are random, so a client cannot find another's id by counting.
//! 4. Otherwise the handler registered for `type` runs, inside the middleware.
//! 5. A type with no handler is **unknown**: dropped by default (no middleware runs), or answered
//!    with `{"type":"error","data":{"reason":"unknown type","type":"…"}}` under
//!    [`UnknownType::Reply`].
//!
//! An error returned by a handler or a middleware goes to the error handler as
//! [`RouterError::Failed`] (inside [`Error::Handler`]); the session stays
//! open. A panic closes the session with 1011, as
//! for every handler.
//!
//! # Ordering
//!
//! A session's messages are routed one at a time, in arrival order, on the session's task (unless
//! [`Config::concurrent_message_handling`](crate::Config) is set). A handler that must do long
//! work should hand it to another task.

mod chain;
mod envelope;
mod error;
mod policy;

use std::{
    collections::{HashMap, HashSet},
    fmt,
    future::Future,
    sync::Arc,
};

use serde::de::DeserializeOwned;

use self::chain::{Endpoint, MiddlewareFn, RouteFn, reply_error};
pub use self::{
    chain::Next,
    envelope::{EncodeError, Envelope},
    error::RouterError,
    policy::{Malformed, UnknownType},
};
use crate::{CloseCode, Error, Melody, Session, Text, plugin::Plugin};

/// The error a route handler or a middleware returns. Any `std::error::Error + Send + Sync`
/// converts into it with `?`, and so does a `&str` or a `String` with `.into()`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Typed envelope routing, as a plug-in: routes by type, middleware, the types clients may send
/// each other, and what to do with input that cannot be routed. Build it, then
/// [`Melody::plug`] it; see the [module docs](self).
#[derive(Clone, Default)]
#[must_use = "a router does nothing until plugged into a hub"]
pub struct Router {
    routes: HashMap<String, RouteFn>,
    /// The types a client may send to another client by `target`.
    direct: HashSet<String>,
    middleware: Arc<[MiddlewareFn]>,
    unknown: UnknownType,
    malformed: Malformed,
}

/// `on_data`'s decode failure, told apart from handler errors so it counts as malformed input.
#[derive(Debug)]
struct DataError(serde_json::Error);

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "data does not decode: {}", self.0)
    }
}

impl std::error::Error for DataError {}

impl Router {
    /// A router with no routes: every envelope is of an unknown type.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs the async `handler` on every envelope of type `kind`, replacing an earlier handler
    /// for that type.
    ///
    /// The handler gets the session and the envelope, whose `from` is the sender's id. An `Err`
    /// goes to the error handler as [`RouterError::Failed`]; the session stays open.
    ///
    /// ```
    /// use melody::router::Router;
    ///
    /// let router = Router::new().on("echo", |session, envelope| async move {
    ///     session.send(envelope)?;
    ///     Ok(())
    /// });
    /// ```
    pub fn on<F, Fut>(mut self, kind: impl Into<String>, handler: F) -> Self
    where
        F: Fn(Session, Envelope) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        let route: RouteFn =
            Arc::new(move |session, envelope| Box::pin(handler(session, envelope)));
        self.routes.insert(kind.into(), route);
        self
    }

    /// Runs the async `handler` on every envelope of type `kind` with its `data` decoded as a
    /// `T`. Data that does not decode is malformed input: the error handler gets
    /// [`RouterError::Malformed`] and the sender an error envelope (or a close, see
    /// [`Malformed`]); the handler does not run.
    ///
    /// ```
    /// #[derive(serde::Deserialize)]
    /// struct Join { room: String }
    ///
    /// let router = melody::router::Router::new().on_data("join", |session, join: Join| async move {
    ///     session.join(&join.room)?;
    ///     Ok(())
    /// });
    /// ```
    pub fn on_data<T, F, Fut>(self, kind: impl Into<String>, handler: F) -> Self
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(Session, T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        self.on(kind, move |session, envelope| {
            let handler = handler.clone();
            async move {
                let data = serde_json::from_value::<T>(envelope.data)
                    .map_err(|e| Box::new(DataError(e)) as BoxError)?;
                handler(session, data).await
            }
        })
    }

    /// Adds a middleware around every routed envelope and every direct send. Middleware runs in
    /// the order it is added: the first is the outermost. It may change the envelope, stop the
    /// message by not calling [`Next::run`], or fail (the error goes to the error handler as
    /// [`RouterError::Failed`]).
    ///
    /// ```
    /// use melody::router::{BoxError, Router};
    ///
    /// let router = Router::new().middleware(|session, envelope, next| async move {
    ///     if session.get::<String>("user").is_none() && envelope.kind != "login" {
    ///         return Err(BoxError::from("not logged in"));
    ///     }
    ///     next.run(session, envelope).await
    /// });
    /// ```
    pub fn middleware<F, Fut>(mut self, middleware: F) -> Self
    where
        F: Fn(Session, Envelope, Next) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        let middleware: MiddlewareFn =
            Arc::new(move |session, envelope, next| Box::pin(middleware(session, envelope, next)));
        let mut chain = self.middleware.to_vec();
        chain.push(middleware);
        self.middleware = chain.into();
        self
    }

    /// Lets clients send envelopes of type `kind` to each other by `target` (a direct send; see
    /// the [module docs](self)). Off for every type by default.
    ///
    /// ```
    /// // `{"type":"dm","data":"hi","target":"<id>"}` reaches session <id> with `from` set.
    /// let router = melody::router::Router::new().allow_direct("dm");
    /// ```
    pub fn allow_direct(mut self, kind: impl Into<String>) -> Self {
        self.direct.insert(kind.into());
        self
    }

    /// What an envelope whose type has no handler gets. Default [`UnknownType::Drop`].
    pub fn unknown(mut self, unknown: UnknownType) -> Self {
        self.unknown = unknown;
        self
    }

    /// What text that is not an envelope gets. Default [`Malformed::Reply`].
    pub fn malformed(mut self, malformed: Malformed) -> Self {
        self.malformed = malformed;
        self
    }

    /// Routes one inbound text message. Errors are reported (error handler, error envelope, or
    /// a close, as configured); nothing here panics on bad input.
    async fn dispatch(&self, session: Session, text: Text) {
        // Only an object is an envelope (serde would also accept a JSON array for a struct).
        let object = text
            .as_str()
            .trim_start_matches([' ', '\t', '\n', '\r'])
            .starts_with('{');
        let parsed = if object {
            serde_json::from_str::<Envelope>(text.as_str()).map_err(|e| e.to_string())
        } else {
            Err("not a JSON object".to_owned())
        };
        let mut envelope = match parsed {
            Ok(envelope) => envelope,
            Err(detail) => return self.reject_malformed(&session, detail),
        };
        envelope.from = Some(session.id().to_string());
        let endpoint = if let Some(target) = &envelope.target {
            if !self.direct.contains(&envelope.kind) {
                tracing::debug!(session = %session.id(), kind = %envelope.kind, "direct send of a type not allowed");
                return reply_error(
                    &session,
                    serde_json::json!({ "reason": "direct send not allowed", "type": envelope.kind }),
                );
            }
            Endpoint::Forward(target.clone())
        } else if let Some(handler) = self.routes.get(&envelope.kind) {
            Endpoint::Route(handler.clone())
        } else {
            return self.reject_unknown(&session, &envelope.kind);
        };
        let next = Next {
            chain: self.middleware.clone(),
            index: 0,
            endpoint,
        };
        if let Err(error) = next.run(session.clone(), envelope).await {
            match error.downcast_ref::<DataError>() {
                Some(DataError(decode)) => self.reject_malformed(&session, decode.to_string()),
                None => report(&session, RouterError::failed(error)),
            }
        }
    }

    fn reject_malformed(&self, session: &Session, detail: String) {
        report(session, RouterError::Malformed(detail.clone()));
        match self.malformed {
            Malformed::Reply => reply_error(
                session,
                serde_json::json!({ "reason": "malformed envelope", "detail": detail }),
            ),
            Malformed::Close => {
                let _ = session.close_with(CloseCode::UNSUPPORTED_DATA, "malformed envelope");
            }
        }
    }

    fn reject_unknown(&self, session: &Session, kind: &str) {
        tracing::debug!(session = %session.id(), kind, "no route for envelope type");
        if self.unknown == UnknownType::Reply {
            reply_error(
                session,
                serde_json::json!({ "reason": "unknown type", "type": kind }),
            );
        }
    }
}

/// Tells the hub's error handler.
fn report(session: &Session, error: RouterError) {
    session
        .melody()
        .plugins()
        .report(session, &Error::Handler(Arc::new(error)));
}

impl Plugin for Router {
    /// Becomes the hub's async text handler (replacing any other).
    fn install(self, melody: &Melody) {
        let router = Arc::new(self);
        melody.on_text_async(move |session, text| {
            let router = router.clone();
            async move { router.dispatch(session, text).await }
        });
    }
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("routes", &self.routes.keys().collect::<Vec<_>>())
            .field("direct", &self.direct)
            .field("middleware", &self.middleware.len())
            .field("unknown", &self.unknown)
            .field("malformed", &self.malformed)
            .finish()
    }
}
