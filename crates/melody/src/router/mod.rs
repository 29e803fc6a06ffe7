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
//! open. A [`Reject`] is the exception: a refusal meant for the client, sent to it as an
//! `error` envelope and not reported. A panic closes the session with 1011, as
//! for every handler.
//!
//! # Requests
//!
//! An envelope with an `id` (an integer from 1 to 2⁵³−1) is a request, and gets exactly one
//! reply with the same `id` (docs/PROTOCOL.md): `{"type":"reply","id":…,"data":…}` with what an
//! [`on_request`](Router::on_request) handler returns (`null` for an [`on`](Router::on)
//! handler, or as soon as a direct send is delivered), or `{"type":"error","id":…,"data":
//! {"reason":…}}`: the handler's [`Reject`], `"internal error"` for any other handler error (its
//! details go to the error handler only), `"unknown type"` (whatever the [`UnknownType`]
//! policy), `"malformed envelope"`, `"direct send not allowed"`, `"target not connected"`.
//! A handler can answer early with [`Envelope::reply`], so that the reply is queued before
//! anything it sends next.
//!
//! The router takes the `id` off the envelopes it hands to middleware and handlers (and
//! re-attaches the request at the end of the chain, to whatever envelope arrives there), so an
//! envelope a handler forwards or broadcasts never reads as a request to its recipients.
//!
//! The server asks a client with [`Ask::ask`]: the client answers with `reply` or `error` and
//! the same `id`; envelopes of these two types that carry an `id` are answers and never reach a
//! handler. A session's socket is read again only when its handler returns (unless
//! [`Config::concurrent_message_handling`](crate::Config) is on), so a handler that asks its
//! own client does so from another task: asked from the handler itself, `ask` fails at once
//! with [`AskError::InOwnHandler`].
//!
//! ```
//! use std::time::Duration;
//! use melody::router::{Ask, Reject, Router};
//!
//! let router = Router::new().on_request("rename", |session, name: String| async move {
//!     if name.is_empty() {
//!         return Err(Reject::new("invalid").message("a name is needed").into());
//!     }
//!     // Asks the client back from a task of its own, and waits at most 5 s for the answer.
//!     tokio::spawn(async move {
//!         let sure: Result<bool, _> = session.ask("confirm", &name, Duration::from_secs(5)).await;
//!         if let Ok(true) = sure {
//!             session.set("name", name);
//!         }
//!     });
//!     Ok("asked")
//! });
//! ```
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
mod request;

use std::{
    collections::{HashMap, HashSet},
    fmt,
    future::Future,
    sync::Arc,
};

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;

pub use self::{
    chain::Next,
    envelope::{EncodeError, Envelope},
    error::RouterError,
    policy::{Malformed, UnknownType},
    request::{Ask, AskError, MAX_REQUEST_ID, Reject, ReplyError},
};
use self::{
    chain::{Endpoint, MiddlewareFn, RouteFn, refuse},
    request::{HANDLING, Pending, ReplySlot, answer},
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
    /// The hub's requests to clients waiting for their reply.
    pending: Arc<Pending>,
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

    /// Answers every request of type `kind` with what `handler` returns: its `data` decoded as
    /// a `T`, the handler's `Ok(value)` sent back as `{"type":"reply","id":…,"data":value}`,
    /// an `Err` as an `error` reply ([`Reject`] to say why; any other error is
    /// `{"reason":"internal error"}` for the client and [`RouterError::Failed`] for the error
    /// handler). Sent without an `id`, the message is handled the same and the value dropped.
    ///
    /// ```
    /// use melody::router::Router;
    ///
    /// // {"type":"who","id":1} → {"type":"reply","id":1,"data":["lobby"]}
    /// let router = Router::new().on_request("who", |session, _: ()| async move {
    ///     Ok(session.topics())
    /// });
    /// ```
    pub fn on_request<T, R, F, Fut>(self, kind: impl Into<String>, handler: F) -> Self
    where
        T: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(Session, T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, BoxError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        self.on(kind, move |session, envelope| {
            let handler = handler.clone();
            async move {
                let data = T::deserialize(&envelope.data)
                    .map_err(|e| Box::new(DataError(e)) as BoxError)?;
                let value = handler(session.clone(), data).await?;
                match envelope.reply(&session, value) {
                    Ok(()) | Err(ReplyError::NotARequest | ReplyError::AlreadyReplied) => Ok(()),
                    Err(error) => Err(error.into()),
                }
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
    /// a close, as configured); nothing here panics on bad input. A request (an envelope with
    /// an `id`) gets exactly one reply.
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
            Err(detail) => {
                return self.reject_malformed(&session, detail, readable_request_id(text.as_str()));
            }
        };
        envelope.from = Some(session.id().to_string());
        let kind_is_answer = matches!(envelope.kind.as_str(), "reply" | "error");
        if let (Some(id), true) = (envelope.id, kind_is_answer) {
            if envelope.target.is_none() {
                return self.answered(&session, id, envelope);
            }
        }
        // The router keeps the request's id: an envelope a handler forwards or broadcasts
        // never reads as a request to its recipients. An answer is never answered.
        let id = envelope.id.take().filter(|_| !kind_is_answer);
        let request = ReplySlot::new(id);
        envelope.replied = request.clone();
        let endpoint = if let Some(target) = &envelope.target {
            if !self.direct.contains(&envelope.kind) {
                tracing::debug!(session = %session.id(), kind = %envelope.kind, "direct send of a type not allowed");
                return refuse(
                    &session,
                    id,
                    serde_json::json!({ "reason": "direct send not allowed", "type": envelope.kind }),
                );
            }
            Endpoint::Forward(target.clone())
        } else if let Some(handler) = self.routes.get(&envelope.kind) {
            Endpoint::Route(handler.clone())
        } else {
            return self.reject_unknown(&session, &envelope.kind, id);
        };
        let next = Next {
            chain: self.middleware.clone(),
            index: 0,
            endpoint,
            request: request.clone(),
        };
        let result = next.run(session.clone(), envelope).await;
        // The request's one reply, unless the handler (or a direct send) gave it already.
        let open = request.take();
        match result {
            Ok(()) => {
                if let Some(id) = open {
                    send_answer(&session, answer("reply", id, Value::Null));
                }
            }
            Err(error) => match error.downcast_ref::<DataError>() {
                Some(DataError(decode)) => {
                    self.reject_malformed(&session, decode.to_string(), open);
                }
                None => match error.downcast_ref::<Reject>() {
                    // A refusal the handler meant the client to see: the request's answer,
                    // or a message of its own when there was no request.
                    Some(reject) if open.is_some() || id.is_none() => {
                        refuse(
                            &session,
                            open,
                            serde_json::to_value(reject).unwrap_or_default(),
                        );
                    }
                    // Answered already: the refusal has nowhere to go but the error handler.
                    Some(_) => report(&session, RouterError::failed(error)),
                    None => {
                        if let Some(id) = open {
                            refuse(
                                &session,
                                Some(id),
                                serde_json::json!({ "reason": "internal error" }),
                            );
                        }
                        report(&session, RouterError::failed(error));
                    }
                },
            },
        }
    }

    /// A client's `reply` or `error` to one of the server's requests.
    fn answered(&self, session: &Session, id: u64, envelope: Envelope) {
        let answer = if envelope.kind == "reply" {
            Ok(envelope.data)
        } else {
            Err(Reject::deserialize(&envelope.data).unwrap_or_else(|_| Reject::new("error")))
        };
        if !self.pending.resolve(session.id(), id, answer) {
            tracing::debug!(session = %session.id(), id, "a reply nobody waits for (late, or never asked)");
        }
    }

    fn reject_malformed(&self, session: &Session, detail: String, id: Option<u64>) {
        report(session, RouterError::Malformed(detail.clone()));
        match self.malformed {
            Malformed::Reply => refuse(
                session,
                id,
                serde_json::json!({ "reason": "malformed envelope", "detail": detail }),
            ),
            Malformed::Close => {
                let _ = session.close_with(CloseCode::UNSUPPORTED_DATA, "malformed envelope");
            }
        }
    }

    fn reject_unknown(&self, session: &Session, kind: &str, id: Option<u64>) {
        tracing::debug!(session = %session.id(), kind, "no route for envelope type");
        // A request is always answered, whatever the policy for messages.
        if self.unknown == UnknownType::Reply || id.is_some() {
            refuse(
                session,
                id,
                serde_json::json!({ "reason": "unknown type", "type": kind }),
            );
        }
    }
}

/// The `id` of text that is not a valid envelope, when one can be read and the text is not an
/// answer (`reply`/`error`): to answer the request it meant to be.
fn readable_request_id(text: &str) -> Option<u64> {
    let value: Value = serde_json::from_str(text).ok()?;
    if matches!(
        value.get("type").and_then(Value::as_str),
        Some("reply" | "error")
    ) {
        return None;
    }
    value
        .get("id")?
        .as_u64()
        .filter(|id| (1..=MAX_REQUEST_ID).contains(id))
}

/// Queues an answer; a full queue is only logged (the client's own timeout covers it).
fn send_answer(session: &Session, message: crate::Message) {
    if let Err(error) = session.send(message) {
        tracing::debug!(session = %session.id(), %error, "could not send a reply");
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
        melody.plugins().insert(self.pending.clone());
        let pending = self.pending.clone();
        melody
            .plugins()
            .on_disconnect(move |session| pending.disconnected(session.id()));
        let router = Arc::new(self);
        // In sequential mode the session's socket is not read while a handler runs: `ask`
        // from that handler is refused at once instead of waiting for an answer that cannot
        // be read.
        let sequential = !melody.config().concurrent_message_handling;
        melody.on_text_async(move |session, text| {
            let router = router.clone();
            async move {
                if sequential {
                    let id = session.id();
                    HANDLING.scope(id, router.dispatch(session, text)).await;
                } else {
                    router.dispatch(session, text).await;
                }
            }
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
