//! [`Session`]: one WebSocket connection as the application sees it.
//!
//! A session is a cheap handle (`Clone` is a reference-count increment) that any task may hold.
//! Writes go into the session's bounded outbound queue; the connection task drains it.

use std::{
    any::Any,
    collections::HashMap,
    fmt,
    net::SocketAddr,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
};

use bytes::Bytes;
use http::{Extensions, HeaderMap, Method, Uri, request::Parts};

use crate::{
    CloseCode, CloseFrame, Error, Melody, Message, OverflowPolicy,
    melody::Hub,
    queue::{Outbox, PushError},
};

/// A session's identifier: random (64 bits from the operating system's generator), so a
/// client cannot guess another session's id from its own, and unique among the connected
/// sessions of a hub.
///
/// On the wire (JSON, [`Display`](fmt::Display)) it is a decimal string, never a number:
/// JavaScript numbers hold integers only up to 2^53, and an id above that would silently
/// change in a browser.
///
/// ```
/// use melody::SessionId;
///
/// let id: SessionId = "18446744073709551615".parse()?;
/// assert_eq!(serde_json::to_string(&id)?, r#""18446744073709551615""#);
/// assert!("007".parse::<SessionId>().is_err()); // only the exact decimal form names an id
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct SessionId(u64);

impl SessionId {
    pub(crate) fn new(id: u64) -> Self {
        Self(id)
    }

    /// A fresh random id.
    pub(crate) fn random() -> Self {
        Self(crate::random::u64())
    }

    /// The id as a number.
    #[must_use]
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl From<u64> for SessionId {
    /// An id as it travels (in an envelope's `target`, between nodes).
    fn from(id: u64) -> Self {
        Self(id)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A string that is not the exact decimal form of a [`SessionId`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a session id")]
pub struct ParseSessionIdError;

impl std::str::FromStr for SessionId {
    type Err = ParseSessionIdError;

    /// Parses the exact decimal form: no sign, no leading zeros, no spaces.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let exact = text.bytes().all(|b| b.is_ascii_digit())
            && !text.is_empty()
            && (text == "0" || !text.starts_with('0'));
        if !exact {
            return Err(ParseSessionIdError);
        }
        text.parse().map(Self).map_err(|_| ParseSessionIdError)
    }
}

impl serde::Serialize for SessionId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for SessionId {
    /// From the decimal string (as serialized); a JSON number is accepted too.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = SessionId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a session id as a decimal string")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<SessionId, E> {
                text.parse().map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, id: u64) -> Result<SessionId, E> {
                Ok(SessionId(id))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Why [`Session::join`] did not join.
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

/// A value stored under a string key on a session (Go melody's `Keys`).
pub type Value = Arc<dyn Any + Send + Sync>;

/// String-keyed values to attach to a session when it is created
/// ([`Melody::handle_request_with_keys`], Go melody's `HandleRequestWithKeys`).
///
/// ```
/// use melody::Keys;
///
/// let keys = Keys::new().with("user", String::from("alice")).with("plan", 3u32);
/// assert_eq!(keys.len(), 2);
/// ```
#[derive(Clone, Default)]
pub struct Keys(HashMap<String, Value>);

impl Keys {
    /// No keys.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key (replacing an earlier value under the same key).
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl Any + Send + Sync) -> Self {
        self.insert(key, value);
        self
    }

    /// Adds a key (replacing an earlier value under the same key).
    pub fn insert(&mut self, key: impl Into<String>, value: impl Any + Send + Sync) {
        self.0.insert(key.into(), Arc::new(value));
    }

    /// Adds every key of `other`, replacing values under the same keys.
    pub fn extend(&mut self, other: Keys) {
        self.0.extend(other.0);
    }

    /// Number of keys.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no keys.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// One connected WebSocket client.
///
/// Handlers receive it; keep clones anywhere (a map of users, another task) and write to it from
/// any thread. The session reaches its hub with [`Session::melody`], so handlers never need to
/// capture the [`Melody`].
///
/// # Ordering
///
/// Messages written to one session are delivered in the order they were queued. There is no
/// order between different sessions.
///
/// # Backpressure
///
/// [`Session::write`] never waits: when the queue ([`Config::message_buffer_size`]) is full the
/// message is dropped and the [`OverflowPolicy`] applies. [`Session::write_async`] waits for room
/// instead.
///
/// [`Config::message_buffer_size`]: crate::Config::message_buffer_size
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    id: SessionId,
    hub: Arc<Hub>,
    outbox: Outbox,
    closed: AtomicBool,
    request: Parts,
    remote_addr: Option<SocketAddr>,
    local_addr: Option<SocketAddr>,
    keys: Mutex<HashMap<String, Value>>,
    extensions: Mutex<Extensions>,
    topics: Mutex<Vec<Arc<str>>>,
}

impl Session {
    pub(crate) fn new(
        hub: Arc<Hub>,
        id: SessionId,
        request: Parts,
        keys: Keys,
        addrs: (Option<SocketAddr>, Option<SocketAddr>),
    ) -> Self {
        let inner = Inner {
            id,
            outbox: Outbox::new(hub.config.queue_capacity()),
            hub,
            closed: AtomicBool::new(false),
            request,
            remote_addr: addrs.0,
            local_addr: addrs.1,
            keys: Mutex::new(keys.0),
            extensions: Mutex::new(Extensions::new()),
            topics: Mutex::new(Vec::new()),
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    pub(crate) fn outbox(&self) -> &Outbox {
        &self.inner.outbox
    }

    /// The session's id, unique in this process.
    #[must_use]
    pub fn id(&self) -> SessionId {
        self.inner.id
    }

    /// The hub this session belongs to.
    #[must_use]
    pub fn melody(&self) -> Melody {
        Melody::from_hub(self.inner.hub.clone())
    }

    pub(crate) fn hub(&self) -> &Arc<Hub> {
        &self.inner.hub
    }

    /// Queues a message (text for `&str`/`String`, binary for `Vec<u8>`/`Bytes`) without waiting.
    ///
    /// # Errors
    ///
    /// - [`Error::WriteClosed`] when the session is closed or closing.
    /// - [`Error::MessageBufferFull`] when the queue is full: the message is dropped, the error
    ///   handler is told, and the [`OverflowPolicy`] applies.
    pub fn write(&self, message: impl Into<Message>) -> Result<(), Error> {
        match self.enqueue(message.into()) {
            Ok(()) => Ok(()),
            Err(PushError::Closed) => Err(Error::WriteClosed),
            Err(PushError::Full) => {
                self.overflowed();
                Err(Error::MessageBufferFull)
            }
        }
    }

    /// Queues a binary message without waiting (Go melody's `WriteBinary`).
    ///
    /// # Errors
    ///
    /// As [`Session::write`].
    pub fn write_binary(&self, bytes: impl Into<Bytes>) -> Result<(), Error> {
        self.write(Message::binary(bytes))
    }

    /// Queues a message, waiting for room in the queue if it is full.
    ///
    /// # Errors
    ///
    /// [`Error::WriteClosed`] when the session is closed, or closes while waiting.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes leaves the message unqueued; nothing is half sent.
    pub async fn write_async(&self, message: impl Into<Message>) -> Result<(), Error> {
        if self.is_closed() {
            return Err(Error::WriteClosed);
        }
        self.inner
            .outbox
            .push_wait(message.into())
            .await
            .map_err(|_| Error::WriteClosed)
    }

    /// Closes the session with 1000 Normal Closure. Messages queued before the call are written
    /// first.
    ///
    /// # Errors
    ///
    /// [`Error::SessionClosed`] when the session was already closed.
    pub fn close(&self) -> Result<(), Error> {
        self.close_frame(CloseFrame::normal())
    }

    /// Closes the session with a code and a reason (cut to 123 bytes).
    ///
    /// # Errors
    ///
    /// [`Error::ReservedCloseCode`] for 1004, 1005, 1006 or 1015; [`Error::SessionClosed`] when the
    /// session was already closed.
    pub fn close_with(&self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.close_frame(CloseFrame::new(code, reason))
    }

    /// Closes the session with a raw close payload, as built by
    /// [`format_close_message`](crate::format_close_message) (Go melody's `CloseWithMsg`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidClosePayload`] when the payload does not parse; otherwise as
    /// [`Session::close_with`].
    pub fn close_with_msg(&self, payload: &[u8]) -> Result<(), Error> {
        self.close_frame(CloseFrame::from_close_payload(payload)?)
    }

    /// Closes the session with a prepared [`CloseFrame`].
    ///
    /// # Errors
    ///
    /// As [`Session::close_with`].
    pub fn close_frame(&self, frame: CloseFrame) -> Result<(), Error> {
        let frame = frame.sendable()?;
        if self.request_close(frame) {
            Ok(())
        } else {
            Err(Error::SessionClosed)
        }
    }

    /// Asks the connection task to close; `false` when the session was already closed.
    pub(crate) fn request_close(&self, frame: CloseFrame) -> bool {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.inner.outbox.close(frame)
    }

    /// Whether the session is closed or closing: writes fail from then on.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// The peer's address, when the server made it known (axum's `ConnectInfo`, or a
    /// [`RemoteAddr`](crate::RemoteAddr) request extension).
    #[must_use]
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.inner.remote_addr
    }

    /// The local address the peer connected to, when the server made it known (a
    /// [`LocalAddr`](crate::LocalAddr) request extension).
    #[must_use]
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.local_addr
    }

    /// The head of the upgrade request: method, URI, headers and extensions.
    ///
    /// The headers that only served the handshake (`Connection`, `Upgrade` and
    /// `Sec-WebSocket-Key`, `-Version`, `-Extensions`) are not kept; `Sec-WebSocket-Protocol`,
    /// `Origin`, cookies and the rest are.
    #[must_use]
    pub fn request(&self) -> &Parts {
        &self.inner.request
    }

    /// The upgrade request's method (always `GET`).
    #[must_use]
    pub fn method(&self) -> &Method {
        &self.inner.request.method
    }

    /// The upgrade request's URI (path and query).
    #[must_use]
    pub fn uri(&self) -> &Uri {
        &self.inner.request.uri
    }

    /// The upgrade request's headers.
    #[must_use]
    pub fn headers(&self) -> &HeaderMap {
        &self.inner.request.headers
    }

    /// Stores a value under a string key (Go melody's `Set`).
    ///
    /// ```no_run
    /// # fn demo(session: &melody::Session) {
    /// session.set("name", String::from("gopher"));
    /// assert_eq!(session.get::<String>("name").as_deref(), Some("gopher"));
    /// # }
    /// ```
    pub fn set(&self, key: impl Into<String>, value: impl Any + Send + Sync) {
        lock(&self.inner.keys).insert(key.into(), Arc::new(value));
    }

    /// The value under `key` if it exists and is a `T` (Go melody's `Get`, typed).
    #[must_use]
    pub fn get<T: Any + Clone>(&self, key: &str) -> Option<T> {
        lock(&self.inner.keys)
            .get(key)
            .and_then(|value| value.downcast_ref::<T>())
            .cloned()
    }

    /// The value under `key` as stored, whatever its type.
    #[must_use]
    pub fn get_value(&self, key: &str) -> Option<Value> {
        lock(&self.inner.keys).get(key).cloned()
    }

    /// The value under `key` (Go melody's `MustGet`).
    ///
    /// # Panics
    ///
    /// When there is no value under `key` or it is not a `T`.
    #[must_use]
    #[track_caller]
    pub fn must_get<T: Any + Clone>(&self, key: &str) -> T {
        match self.get(key) {
            Some(value) => value,
            None => panic!(
                "session key {key:?} does not exist or is not a {}",
                std::any::type_name::<T>()
            ),
        }
    }

    /// Removes the value under `key`; returns whether there was one (Go melody's `UnSet`).
    pub fn unset(&self, key: &str) -> bool {
        lock(&self.inner.keys).remove(key).is_some()
    }

    /// Stores a typed value, one per type (like [`http::Extensions`]); returns the previous one.
    ///
    /// ```no_run
    /// #[derive(Clone)]
    /// struct User { name: String }
    /// # fn demo(session: &melody::Session) {
    /// session.insert_ext(User { name: "ada".into() });
    /// assert_eq!(session.get_ext::<User>().map(|u| u.name).as_deref(), Some("ada"));
    /// # }
    /// ```
    pub fn insert_ext<T: Clone + Send + Sync + 'static>(&self, value: T) -> Option<T> {
        lock(&self.inner.extensions).insert(value)
    }

    /// A clone of the typed value of type `T`, if any.
    #[must_use]
    pub fn get_ext<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        lock(&self.inner.extensions).get::<T>().cloned()
    }

    /// Removes and returns the typed value of type `T`, if any.
    pub fn remove_ext<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        lock(&self.inner.extensions).remove::<T>()
    }

    /// Joins a topic (any string: `room:lobby`, `tenant:42`): `Ok(true)` when it joined,
    /// `Ok(false)` when it was already in it. A session leaves all its topics when it
    /// disconnects.
    ///
    /// ```no_run
    /// # fn demo(session: &melody::Session) -> Result<(), Box<dyn std::error::Error>> {
    /// session.join("room:lobby")?;
    /// session.melody().publish("room:lobby", "someone joined")?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`JoinError::Closed`] when the session is closed; [`JoinError::TooManyTopics`] when it
    /// is already in [`Config::max_topics_per_session`](crate::Config) topics (topics are
    /// often named by clients: the limit bounds what one client can cost).
    pub fn join(&self, topic: impl AsRef<str>) -> Result<bool, JoinError> {
        let hub = self.hub();
        let mut topics = lock(&self.inner.topics);
        let topic = topic.as_ref();
        if self.is_closed() {
            return Err(JoinError::Closed);
        }
        if topics.iter().any(|t| &**t == topic) {
            return Ok(false);
        }
        let max = hub.config.max_topics_per_session;
        if topics.len() >= max {
            return Err(JoinError::TooManyTopics { max });
        }
        let name = hub.topics.intern(topic);
        hub.topics.join(&name, self);
        topics.push(name);
        Ok(true)
    }

    /// Leaves a topic; `false` when the session was not in it.
    pub fn leave(&self, topic: &str) -> bool {
        let mut topics = lock(&self.inner.topics);
        let Some(position) = topics.iter().position(|t| &**t == topic) else {
            return false;
        };
        topics.swap_remove(position);
        self.hub().topics.leave(topic, self.id().as_u64());
        true
    }

    /// Leaves every topic; returns how many it left.
    pub fn leave_all(&self) -> usize {
        let left = std::mem::take(&mut *lock(&self.inner.topics));
        for topic in &left {
            self.hub().topics.leave(topic, self.id().as_u64());
        }
        left.len()
    }

    /// The topics this session is in.
    #[must_use]
    pub fn topics(&self) -> Vec<String> {
        lock(&self.inner.topics)
            .iter()
            .map(|t| t.to_string())
            .collect()
    }

    /// Whether this session is in `topic`.
    #[must_use]
    pub fn is_in(&self, topic: &str) -> bool {
        lock(&self.inner.topics).iter().any(|t| &**t == topic)
    }

    /// Queues without waiting and without side effects.
    pub(crate) fn enqueue(&self, message: Message) -> Result<(), PushError> {
        if self.is_closed() {
            return Err(PushError::Closed);
        }
        self.inner.outbox.push(message)
    }

    /// Applies the overflow policy after a message was dropped on a full queue.
    pub(crate) fn overflowed(&self) {
        let hub = self.hub();
        hub.counters.dropped();
        hub.handlers().report(self, &Error::MessageBufferFull);
        if hub.config.overflow == OverflowPolicy::CloseSession {
            self.request_close(CloseFrame::new(
                CloseCode::POLICY_VIOLATION,
                "message buffer full",
            ));
        }
    }

    /// Marks the session closed once its connection is ending: writes fail from now on.
    pub(crate) fn mark_closed(&self) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.outbox.seal();
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.inner.id)
            .field("remote_addr", &self.inner.remote_addr)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl PartialEq for Session {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for Session {}

impl std::hash::Hash for Session {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.inner.id.hash(state);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // User values cannot leave the maps half-updated, so a poisoned lock is still usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
