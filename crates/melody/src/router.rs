//! Typed JSON envelope routing: `{"type", "data", "target", "from"}` messages dispatched by
//! type, with middleware, on the same hub.
//!
//! Once a route ([`Melody::on`], [`Melody::on_data`]) or a middleware ([`Melody::middleware`]) is
//! registered, every text message a session sends is read as an [`Envelope`] and routed; the
//! [`handle_message`](Melody::handle_message) handler no longer runs. Binary messages are not
//! touched.
//!
//! ```
//! use melody::{Melody, router::BoxError};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct Join { room: String }
//!
//! let melody = Melody::new();
//! melody
//!     .middleware(|session, envelope, next| async move {
//!         // Runs around every routed message and every direct send.
//!         tracing::info!(session = %session.id(), kind = %envelope.kind, "received");
//!         next.run(session, envelope).await
//!     })
//!     .on_data("join", |session, join: Join| async move {
//!         session.join(&join.room)?;
//!         session.send_envelope("joined", &join.room)?;
//!         Ok(())
//!     })
//!     .on("chat", |session, envelope| async move {
//!         // `envelope.from` is always the sender's id, filled in by the server.
//!         let room = envelope.data["room"].as_str().unwrap_or("lobby").to_owned();
//!         session.melody().publish(&room, envelope.to_message())?;
//!         Ok::<_, BoxError>(())
//!     });
//! ```
//!
//! # Routing
//!
//! For each inbound text message, in this order:
//!
//! 1. Text that is not a JSON object with a string `type` (and, when present, string `target`
//!    and `from`) is **malformed**: the error handler gets [`Error::MalformedEnvelope`], and the
//!    sender gets `{"type":"error","data":{"reason":"malformed envelope","detail":"…"}}` or, with
//!    [`Malformed::Close`], is closed with 1003 Unsupported Data "malformed envelope".
//! 2. The server sets `from` to the sender's id ([`SessionId`]'s decimal form); a `from` sent by
//!    the client is always overwritten, never trusted.
//! 3. An envelope with a `target` is a **direct send**, allowed only for the types declared
//!    with [`Melody::allow_direct`] (none by default: a client must not be able to make any
//!    envelope appear in another client's stream). Any other type with a `target` gets
//!    `{"type":"error","data":{"reason":"direct send not allowed","type":"…"}}`. An allowed one
//!    goes through the middleware, then is forwarded (with `from` set) to the session whose id
//!    is `target` (the id's exact decimal form); the type's handler does not run. When no such
//!    session is connected, the sender gets
//!    `{"type":"error","data":{"reason":"target not connected","target":"…"}}`.
//!
//!    A forwarded envelope is unmistakably a peer's: it always carries `target` (the
//!    recipient's id) and `from` (the sender's, set by the server), while the server's own
//!    envelopes ([`Session::send_envelope`], [`Melody::broadcast_envelope`], …) never carry a
//!    `target`. Session ids are random, so a client cannot find another's id by counting.
//! 4. Otherwise the handler registered for `type` runs, inside the middleware.
//! 5. A type with no handler is **unknown**: dropped by default (no middleware runs), or answered
//!    with `{"type":"error","data":{"reason":"unknown type","type":"…"}}` under
//!    [`UnknownType::Reply`].
//!
//! An error returned by a handler or a middleware goes to the error handler as
//! [`Error::HandlerFailed`]; the session stays open. A panic closes the session with 1011, as
//! for every handler.
//!
//! # Ordering
//!
//! A session's messages are routed one at a time, in arrival order, on the session's task (unless
//! [`Config::concurrent_message_handling`](crate::Config) is set). A handler that must do long
//! work should hand it to another task.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{
    CloseCode, Error, Melody, Message, Session, Text, handlers::Handlers, session::SessionId,
};

/// The error a route handler or a middleware returns. Any `std::error::Error + Send + Sync`
/// converts into it with `?`, and so does a `&str` or a `String` with `.into()`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

type RouteFuture = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send + 'static>>;
type RouteFn = Arc<dyn Fn(Session, Envelope) -> RouteFuture + Send + Sync>;
type MiddlewareFn = Arc<dyn Fn(Session, Envelope, Next) -> RouteFuture + Send + Sync>;

/// One JSON message of the routing protocol:
/// `{"type": string, "data": any, "target": optional string, "from": optional string}`.
///
/// `data` is `null` when absent; `target` and `from` are left out of the JSON when `None`.
///
/// ```
/// use melody::Envelope;
///
/// let envelope = Envelope::new("chat", serde_json::json!({ "text": "hi" }))?;
/// let json = serde_json::to_string(&envelope)?;
/// assert_eq!(json, r#"{"type":"chat","data":{"text":"hi"}}"#);
///
/// let back: Envelope = serde_json::from_str(r#"{"type":"chat","data":{"text":"hi"},"from":"7"}"#)?;
/// assert_eq!(back.from.as_deref(), Some("7"));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The routing key, `"type"` on the wire.
    #[serde(rename = "type")]
    pub kind: String,
    /// The payload; `null` when absent.
    #[serde(default)]
    pub data: serde_json::Value,
    /// For a direct send: the id of the session to deliver to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The sender's session id. On inbound envelopes the server always sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

impl Envelope {
    /// An envelope of type `kind` carrying `data`, with no target and no sender.
    ///
    /// # Errors
    ///
    /// When `data` cannot be represented as JSON (a map with non-string keys, or a `Serialize`
    /// implementation that fails).
    pub fn new(kind: impl Into<String>, data: impl Serialize) -> Result<Self, serde_json::Error> {
        Ok(Self {
            kind: kind.into(),
            data: serde_json::to_value(data)?,
            target: None,
            from: None,
        })
    }

    /// The data decoded as a `T`.
    ///
    /// ```
    /// #[derive(serde::Deserialize)]
    /// struct Join { room: String }
    ///
    /// let envelope = melody::Envelope::new("join", serde_json::json!({ "room": "lobby" }))?;
    /// assert_eq!(envelope.data_as::<Join>()?.room, "lobby");
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// When the data does not have the shape of a `T`.
    pub fn data_as<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.data)
    }

    /// The envelope as a text message, ready for any write, broadcast or publish. Encode once,
    /// then send the message to as many sessions as needed: the bytes are shared.
    ///
    /// ```
    /// let mut envelope = melody::Envelope::new("note", "hello")?;
    /// envelope.from = Some("3".into());
    /// let message = envelope.to_message();
    /// assert_eq!(message.as_str(), Some(r#"{"type":"note","data":"hello","from":"3"}"#));
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    #[must_use]
    pub fn to_message(&self) -> Message {
        // `data` is already a JSON value (string keys only), so this cannot fail.
        Message::text(serde_json::to_string(self).expect("an envelope of JSON values encodes"))
    }
}

/// Encodes an outgoing envelope in one pass, straight from the caller's data.
fn encode(kind: &str, data: impl Serialize) -> Result<Message, Error> {
    #[derive(Serialize)]
    struct Outgoing<'a, T> {
        #[serde(rename = "type")]
        kind: &'a str,
        data: T,
    }
    serde_json::to_string(&Outgoing { kind, data })
        .map(Message::text)
        .map_err(Error::Encode)
}

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
/// [`Error::MalformedEnvelope`] and other sessions are unaffected.
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

/// How the router treats unknown types and malformed envelopes.
///
/// Defaults: [`UnknownType::Drop`] and [`Malformed::Reply`].
///
/// ```
/// use melody::{Melody, router::{Malformed, RouterOptions, UnknownType}};
///
/// let melody = Melody::new();
/// melody.router_options(
///     RouterOptions::default()
///         .unknown(UnknownType::Reply)
///         .malformed(Malformed::Close),
/// );
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouterOptions {
    /// What an envelope whose type has no handler gets. Default [`UnknownType::Drop`].
    pub unknown: UnknownType,
    /// What text that is not an envelope gets. Default [`Malformed::Reply`].
    pub malformed: Malformed,
}

impl RouterOptions {
    /// Sets [`RouterOptions::unknown`].
    #[must_use]
    pub fn unknown(mut self, unknown: UnknownType) -> Self {
        self.unknown = unknown;
        self
    }

    /// Sets [`RouterOptions::malformed`].
    #[must_use]
    pub fn malformed(mut self, malformed: Malformed) -> Self {
        self.malformed = malformed;
        self
    }
}

/// The rest of the middleware chain, handed to each middleware. Call [`Next::run`] to go on, or
/// drop it to stop the message here.
pub struct Next {
    chain: Arc<[MiddlewareFn]>,
    index: usize,
    endpoint: Endpoint,
}

/// What the chain ends in.
#[derive(Clone)]
enum Endpoint {
    /// The handler of the envelope's type.
    Route(RouteFn),
    /// A direct send to the envelope's `target` (this one if a middleware removed it).
    Forward(String),
}

impl Next {
    /// Runs the next middleware, or at the end of the chain the handler (or the direct send).
    ///
    /// # Errors
    ///
    /// Whatever the rest of the chain returns.
    pub fn run(
        mut self,
        session: Session,
        envelope: Envelope,
    ) -> impl Future<Output = Result<(), BoxError>> + Send + 'static {
        match self.chain.get(self.index).cloned() {
            Some(middleware) => {
                self.index += 1;
                middleware(session, envelope, self)
            }
            None => match self.endpoint {
                Endpoint::Route(handler) => handler(session, envelope),
                Endpoint::Forward(target) => Box::pin(async move {
                    forward(&session, envelope, target);
                    Ok(())
                }),
            },
        }
    }
}

impl fmt::Debug for Next {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Next")
            .field("remaining", &(self.chain.len() - self.index))
            .finish_non_exhaustive()
    }
}

/// Delivers a direct send, or tells the sender its target is not connected.
fn forward(sender: &Session, mut envelope: Envelope, fallback: String) {
    let target = envelope.target.clone().unwrap_or(fallback);
    envelope.from = Some(sender.id().to_string());
    envelope.target = Some(target.clone());
    // Only the id's exact decimal form names it: no sign, no leading zeros.
    let id = target.parse::<SessionId>().ok();
    let melody = sender.melody();
    let delivered = match id.map(|id| (id, melody.session(id))) {
        // A full queue is reported by the write itself; only a closed target counts as gone.
        Some((_, Some(recipient))) => !matches!(
            recipient.write(envelope.to_message()),
            Err(Error::WriteClosed)
        ),
        // Not on this node: with a backplane, the node that has it delivers it.
        Some((id, None)) => {
            melody.has_backplane() && melody.send_to(id, envelope.to_message()).is_ok()
        }
        None => false,
    };
    if !delivered {
        tracing::debug!(session = %sender.id(), %target, "direct send to a session not connected");
        reply_error(
            sender,
            serde_json::json!({ "reason": "target not connected", "target": target }),
        );
    }
}

/// Sends the sender an `error` envelope; a failure to queue it is only logged.
fn reply_error(session: &Session, data: serde_json::Value) {
    if let Err(error) = session.send_envelope("error", data) {
        tracing::debug!(session = %session.id(), %error, "could not send an error envelope");
    }
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

/// The routes and middleware of a hub. Replaced as a whole on each registration (copy on
/// write); the routes and middleware themselves are shared.
#[derive(Clone, Default)]
pub(crate) struct Router {
    routes: HashMap<String, RouteFn>,
    /// The types a client may send to another client by `target`.
    direct: HashSet<String>,
    middleware: Arc<[MiddlewareFn]>,
    options: RouterOptions,
}

impl Router {
    /// Whether any route or middleware is registered; only then does the router take text
    /// messages.
    pub(crate) fn is_active(&self) -> bool {
        !self.routes.is_empty() || !self.middleware.is_empty() || !self.direct.is_empty()
    }

    /// Routes one inbound text message. Errors are reported (error handler, error envelope, or
    /// a close, as configured); nothing here panics on bad input.
    pub(crate) async fn dispatch(&self, session: &Session, text: Text) {
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
            Err(detail) => return self.malformed(session, detail),
        };
        envelope.from = Some(session.id().to_string());
        let endpoint = if let Some(target) = &envelope.target {
            if !self.direct.contains(&envelope.kind) {
                tracing::debug!(session = %session.id(), kind = %envelope.kind, "direct send of a type not allowed");
                return reply_error(
                    session,
                    serde_json::json!({ "reason": "direct send not allowed", "type": envelope.kind }),
                );
            }
            Endpoint::Forward(target.clone())
        } else if let Some(handler) = self.routes.get(&envelope.kind) {
            Endpoint::Route(handler.clone())
        } else {
            return self.unknown(session, &envelope.kind);
        };
        let next = Next {
            chain: self.middleware.clone(),
            index: 0,
            endpoint,
        };
        if let Err(error) = next.run(session.clone(), envelope).await {
            match error.downcast_ref::<DataError>() {
                Some(DataError(decode)) => self.malformed(session, decode.to_string()),
                None => {
                    let error = Error::HandlerFailed(error.to_string());
                    session.hub().handlers().report(session, &error);
                }
            }
        }
    }

    fn malformed(&self, session: &Session, detail: String) {
        let error = Error::MalformedEnvelope(detail.clone());
        session.hub().handlers().report(session, &error);
        match self.options.malformed {
            Malformed::Reply => reply_error(
                session,
                serde_json::json!({ "reason": "malformed envelope", "detail": detail }),
            ),
            Malformed::Close => {
                let _ = session.close_with(CloseCode::UNSUPPORTED_DATA, "malformed envelope");
            }
        }
    }

    fn unknown(&self, session: &Session, kind: &str) {
        tracing::debug!(session = %session.id(), kind, "no route for envelope type");
        if self.options.unknown == UnknownType::Reply {
            reply_error(
                session,
                serde_json::json!({ "reason": "unknown type", "type": kind }),
            );
        }
    }
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("routes", &self.routes.keys().collect::<Vec<_>>())
            .field("middleware", &self.middleware.len())
            .field("options", &self.options)
            .finish()
    }
}

/// Replaces the hub's router with an updated copy.
fn update_router(melody: &Melody, update: impl Fn(&mut Router)) -> &Melody {
    melody.set_handler(|handlers: &mut Handlers| {
        let mut router = handlers.router.as_deref().cloned().unwrap_or_default();
        update(&mut router);
        handlers.router = Some(Arc::new(router));
    })
}

impl Melody {
    /// Runs the async `handler` on every envelope of type `kind`, replacing an earlier handler
    /// for that type. See the [`router`](crate::router) module for the routing rules.
    ///
    /// The handler gets the session and the envelope, whose `from` is the sender's id. An `Err`
    /// goes to the error handler as [`Error::HandlerFailed`]; the session stays open.
    ///
    /// ```
    /// let melody = melody::Melody::new();
    /// melody.on("echo", |session, envelope| async move {
    ///     session.write(envelope.to_message())?;
    ///     Ok(())
    /// });
    /// ```
    pub fn on<F, Fut>(&self, kind: impl Into<String>, handler: F) -> &Self
    where
        F: Fn(Session, Envelope) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        let kind = kind.into();
        let route: RouteFn =
            Arc::new(move |session, envelope| Box::pin(handler(session, envelope)));
        update_router(self, |router| {
            router.routes.insert(kind.clone(), route.clone());
        })
    }

    /// Runs the async `handler` on every envelope of type `kind` with its `data` decoded as a
    /// `T`. Data that does not decode is malformed input: the error handler gets
    /// [`Error::MalformedEnvelope`] and the sender an error envelope (or a close, see
    /// [`Malformed`]); the handler does not run.
    ///
    /// ```
    /// #[derive(serde::Deserialize)]
    /// struct Join { room: String }
    ///
    /// let melody = melody::Melody::new();
    /// melody.on_data::<Join, _, _>("join", |session, join| async move {
    ///     session.join(&join.room)?;
    ///     Ok(())
    /// });
    /// ```
    pub fn on_data<T, F, Fut>(&self, kind: impl Into<String>, handler: F) -> &Self
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
    /// registration order: the first registered is the outermost. It may change the envelope,
    /// stop the message by not calling [`Next::run`], or fail (the error goes to the error
    /// handler as [`Error::HandlerFailed`]).
    ///
    /// ```
    /// use melody::router::BoxError;
    ///
    /// let melody = melody::Melody::new();
    /// melody.middleware(|session, envelope, next| async move {
    ///     if session.get::<String>("user").is_none() && envelope.kind != "login" {
    ///         return Err(BoxError::from("not logged in"));
    ///     }
    ///     next.run(session, envelope).await
    /// });
    /// ```
    pub fn middleware<F, Fut>(&self, middleware: F) -> &Self
    where
        F: Fn(Session, Envelope, Next) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        let middleware: MiddlewareFn =
            Arc::new(move |session, envelope, next| Box::pin(middleware(session, envelope, next)));
        update_router(self, |router| {
            let mut chain = router.middleware.to_vec();
            chain.push(middleware.clone());
            router.middleware = chain.into();
        })
    }

    /// Lets clients send envelopes of type `kind` to each other by `target` (a direct send; see
    /// the [`router`](crate::router) module). Off for every type by default.
    ///
    /// ```
    /// let melody = melody::Melody::new();
    /// // `{"type":"dm","data":"hi","target":"<id>"}` reaches session <id> with `from` set.
    /// melody.allow_direct("dm");
    /// ```
    pub fn allow_direct(&self, kind: impl Into<String>) -> &Self {
        let kind = kind.into();
        update_router(self, |router| {
            router.direct.insert(kind.clone());
        })
    }

    /// Sets how the router treats unknown types and malformed envelopes. Setting options alone
    /// does not turn routing on.
    pub fn router_options(&self, options: RouterOptions) -> &Self {
        update_router(self, |router| router.options = options)
    }

    /// Sends `{"type": kind, "data": data}` to every session. The JSON is encoded once.
    ///
    /// ```no_run
    /// # fn demo(melody: &melody::Melody) -> Result<(), melody::Error> {
    /// melody.broadcast_envelope("announce", "server restart in 5 minutes")?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] when `data` does not encode; otherwise as [`Melody::broadcast`].
    pub fn broadcast_envelope(&self, kind: &str, data: impl Serialize) -> Result<usize, Error> {
        self.broadcast(encode(kind, data)?)
    }

    /// Sends `{"type": kind, "data": data}` to every session in `topic`. The JSON is encoded
    /// once.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] when `data` does not encode; otherwise as [`Melody::publish`].
    pub fn publish_envelope(
        &self,
        topic: &str,
        kind: &str,
        data: impl Serialize,
    ) -> Result<usize, Error> {
        self.publish(topic, encode(kind, data)?)
    }

    /// Sends `{"type": kind, "data": data}` to every session in `topic` but `except`. The JSON is
    /// encoded once. To say who sent it, build an [`Envelope`] with `from` set and publish
    /// [`Envelope::to_message`] with [`Melody::publish_others`].
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] when `data` does not encode; otherwise as [`Melody::publish_others`].
    pub fn publish_envelope_others(
        &self,
        topic: &str,
        kind: &str,
        data: impl Serialize,
        except: &Session,
    ) -> Result<usize, Error> {
        self.publish_others(topic, encode(kind, data)?, except)
    }
}

impl Session {
    /// Sends `{"type": kind, "data": data}` to this session without waiting.
    ///
    /// ```no_run
    /// # fn demo(session: &melody::Session) -> Result<(), melody::Error> {
    /// session.send_envelope("welcome", serde_json::json!({ "id": session.id().to_string() }))?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] when `data` does not encode; otherwise as [`Session::write`].
    pub fn send_envelope(&self, kind: &str, data: impl Serialize) -> Result<(), Error> {
        self.write(encode(kind, data)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_wire_shape() {
        let envelope: Envelope = serde_json::from_str(r#"{"type":"x"}"#).unwrap();
        assert_eq!(envelope.data, serde_json::Value::Null);
        assert_eq!(envelope.target, None);
        assert_eq!(
            envelope.to_message().as_str(),
            Some(r#"{"type":"x","data":null}"#)
        );
        assert!(serde_json::from_str::<Envelope>(r#"{"type":1}"#).is_err());
        assert!(serde_json::from_str::<Envelope>(r#"{"data":1}"#).is_err());
    }

    #[test]
    fn encode_matches_envelope() {
        let direct = encode("k", [1, 2]).unwrap();
        let built = Envelope::new("k", [1, 2]).unwrap().to_message();
        assert_eq!(direct.as_str(), built.as_str());
    }

    #[test]
    fn encode_error_is_reported() {
        let mut bad = std::collections::HashMap::new();
        bad.insert(vec![1u8], 1);
        assert!(matches!(encode("k", &bad), Err(Error::Encode(_))));
    }

    #[test]
    fn options_default() {
        let options = RouterOptions::default();
        assert_eq!(options.unknown, UnknownType::Drop);
        assert_eq!(options.malformed, Malformed::Reply);
        assert!(!Router::default().is_active());
    }
}
