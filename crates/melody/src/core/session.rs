//! [`Session`]: one WebSocket connection as the application sees it.
//!
//! A session is a cheap handle (`Clone` is a reference-count increment) that any task may hold.
//! Sends go into the session's bounded outbound queue; the connection task drains it.

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

use http::{Extensions, HeaderMap, Method, Uri, request::Parts};

pub use super::id::SessionId;
use super::{
    addrs::Endpoints,
    config::OverflowPolicy,
    data::{AsKey, Stored, Value},
    error::{CloseError, DataError, Error, JoinError, SendError, TrySendError},
    hub::{Hub, Melody},
    outbox::{Outbox, PushError},
    request_head::RequestHead,
};
use crate::protocol::{
    close::{CloseCode, CloseFrame},
    message::Message,
};

/// One connected WebSocket client.
///
/// Handlers receive it; keep clones anywhere (a map of users, another task) and send to it from
/// any thread. The session reaches its hub with [`Session::melody`], so handlers never need to
/// capture the [`Melody`].
///
/// # Ordering
///
/// Messages sent to one session are delivered in the order they were queued. There is no order
/// between different sessions.
///
/// # Backpressure
///
/// [`Session::send`] never waits: when the queue ([`Config::message_buffer_size`]) is full the
/// message is handed back and the [`OverflowPolicy`] applies. [`Session::send_async`] waits for
/// room instead.
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
    request: RequestHead,
    endpoints: Endpoints,
    /// Boxed, and only once something is stored: many sessions never store anything, and an
    /// empty map inline would cost each of them 48 bytes.
    stores: Mutex<Option<Box<Stores>>>,
    topics: Mutex<Vec<Arc<str>>>,
}

/// What handlers store on a session: the key-value data and the typed extensions.
#[derive(Default)]
struct Stores {
    data: HashMap<String, Stored>,
    extensions: Extensions,
}

impl Session {
    pub(crate) fn new(
        hub: Arc<Hub>,
        id: SessionId,
        request: RequestHead,
        data: HashMap<String, Stored>,
        addrs: (Option<SocketAddr>, Option<SocketAddr>),
    ) -> Self {
        let inner = Inner {
            id,
            outbox: Outbox::new(hub.config.queue_capacity()),
            hub,
            closed: AtomicBool::new(false),
            request,
            endpoints: Endpoints::new(addrs.0, addrs.1),
            stores: Mutex::new((!data.is_empty()).then(|| {
                Box::new(Stores {
                    data,
                    extensions: Extensions::new(),
                })
            })),
            topics: Mutex::new(Vec::new()),
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    pub(crate) fn outbox(&self) -> &Outbox {
        &self.inner.outbox
    }

    pub(crate) fn hub(&self) -> &Arc<Hub> {
        &self.inner.hub
    }

    /// The session's id: random, unique among the hub's sessions.
    #[must_use]
    pub fn id(&self) -> SessionId {
        self.inner.id
    }

    /// The hub this session belongs to.
    #[must_use]
    pub fn melody(&self) -> Melody {
        Melody::from_hub(self.inner.hub.clone())
    }

    /// Queues a message (text for `&str`/`String`, binary for `Vec<u8>`/`Bytes`) without
    /// waiting.
    ///
    /// ```no_run
    /// # fn demo(session: &melody::Session) {
    /// if let Err(error) = session.send("hello") {
    ///     let unsent = error.into_inner(); // the message comes back
    ///     # let _ = unsent;
    /// }
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// - [`TrySendError::Closed`] when the session is closed or closing.
    /// - [`TrySendError::Full`] when the queue is full: the error handler is told and the
    ///   [`OverflowPolicy`] applies.
    ///
    /// Either way the message is handed back.
    pub fn send(&self, message: impl Into<Message>) -> Result<(), TrySendError> {
        match self.enqueue(message.into()) {
            Ok(()) => Ok(()),
            Err((PushError::Closed, message)) => Err(TrySendError::Closed(message)),
            Err((PushError::Full, message)) => {
                self.overflowed();
                Err(TrySendError::Full(message))
            }
        }
    }

    /// Queues a message, waiting for room in the queue if it is full.
    ///
    /// # Errors
    ///
    /// [`SendError`], with the message, when the session is closed or closes while waiting.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes leaves the message unqueued; nothing is half sent.
    pub async fn send_async(&self, message: impl Into<Message>) -> Result<(), SendError> {
        let message = message.into();
        if self.is_closed() {
            return Err(SendError(message));
        }
        self.inner
            .outbox
            .push_wait(message)
            .await
            .map_err(SendError)
    }

    /// Closes the session with 1000 Normal Closure. Messages queued before the call are written
    /// first.
    ///
    /// # Errors
    ///
    /// [`CloseError::SessionClosed`] when the session was already closed.
    pub fn close(&self) -> Result<(), CloseError> {
        self.close_frame(CloseFrame::normal())
    }

    /// Closes the session with a code and a reason (cut to 123 bytes).
    ///
    /// # Errors
    ///
    /// [`CloseError::ReservedCode`] for a code that may not be sent
    /// ([`CloseCode::may_be_sent`]: 1004, 1005 with a reason, 1006, 1015, 1016–2999);
    /// [`CloseError::SessionClosed`] when the session was already closed.
    pub fn close_with(&self, code: CloseCode, reason: &str) -> Result<(), CloseError> {
        self.close_frame(CloseFrame::new(code, reason))
    }

    /// Closes the session with a prepared frame.
    pub(crate) fn close_frame(&self, frame: CloseFrame) -> Result<(), CloseError> {
        let frame = frame.sendable().map_err(CloseError::ReservedCode)?;
        if self.request_close(frame) {
            Ok(())
        } else {
            Err(CloseError::SessionClosed)
        }
    }

    /// Asks the connection task to close; `false` when the session was already closed.
    pub(crate) fn request_close(&self, frame: CloseFrame) -> bool {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.inner.outbox.close(frame)
    }

    /// Whether the session is closed or closing: sends fail from then on.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// The peer's address, when the server made it known (`melody::serve` always does; axum's
    /// `ConnectInfo`; a [`RemoteAddr`](crate::RemoteAddr) request extension).
    #[must_use]
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.inner.endpoints.remote()
    }

    /// The local address the peer connected to, when the server made it known
    /// (`melody::serve` always does; a [`LocalAddr`](crate::LocalAddr) request extension).
    #[must_use]
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.endpoints.local()
    }

    /// The head of the upgrade request: method, URI, headers and extensions.
    ///
    /// The headers that only served the handshake (`Connection`, `Upgrade` and
    /// `Sec-WebSocket-Key`, `-Version`, `-Extensions`) are not kept, nor those left out by
    /// [`Config::keep_headers`](crate::Config::keep_headers). Nor are the extensions that
    /// carried the connection's addresses ([`RemoteAddr`](crate::RemoteAddr),
    /// [`LocalAddr`](crate::LocalAddr), axum's `ConnectInfo<SocketAddr>`): they are
    /// [`remote_addr`](Self::remote_addr) and [`local_addr`](Self::local_addr). (`ConnectInfo`
    /// stays when a `RemoteAddr` said something else, as middleware behind a proxy may.)
    ///
    /// # Cost
    ///
    /// Every session holds its request head for its whole life, packed in one allocation (its
    /// bytes and a byte or two per field). It builds these `Parts` at the first call to this
    /// method, [`method`](Self::method), [`uri`](Self::uri) or [`headers`](Self::headers) and
    /// keeps them beside the packed head from then on: about 350 bytes more, and ~100 per
    /// header; the extensions are cloned into them (an `Arc` in an extension is shared, not
    /// copied). Later calls borrow them. A session whose request is never read pays for the
    /// packed head only.
    #[must_use]
    pub fn request(&self) -> &Parts {
        self.inner.request.parts()
    }

    /// The upgrade request's method: `GET`, or `CONNECT` for a WebSocket over HTTP/2.
    #[must_use]
    pub fn method(&self) -> &Method {
        &self.request().method
    }

    /// The upgrade request's URI (path and query).
    #[must_use]
    pub fn uri(&self) -> &Uri {
        &self.request().uri
    }

    /// The upgrade request's headers.
    #[must_use]
    pub fn headers(&self) -> &HeaderMap {
        &self.request().headers
    }

    /// The subprotocol selected at the upgrade (`Sec-WebSocket-Protocol`), from
    /// [`Config::subprotocols`](crate::Config::subprotocols); `None` when the client offered
    /// none the server speaks (or the server lists none).
    #[must_use]
    pub fn subprotocol(&self) -> Option<&str> {
        self.inner.request.subprotocol()
    }

    /// Stores a value under a key: a string (Go melody's `Set`) or a typed [`Key`](crate::Key).
    /// Text given as `&str` is stored as a `String`.
    ///
    /// ```no_run
    /// # fn demo(session: &melody::Session) {
    /// session.set("name", "gopher");
    /// assert_eq!(session.get::<String>("name").as_deref(), Some("gopher"));
    /// # }
    /// ```
    pub fn set<T: Any + Send + Sync>(&self, key: impl AsKey<T>, value: T) {
        lock(&self.inner.stores)
            .get_or_insert_default()
            .data
            .insert(key.key_name().to_owned(), Stored::new(value));
    }

    /// The value under `key` if there is one and it is a `T` (Go melody's `Get`, typed). Use
    /// [`Session::try_get`] to know which of the two it is not.
    #[must_use]
    pub fn get<T: Any + Clone>(&self, key: impl AsKey<T>) -> Option<T> {
        self.try_get(key).ok()
    }

    /// The value under `key`.
    ///
    /// # Errors
    ///
    /// [`DataError::Missing`] when there is none; [`DataError::WrongType`], naming the stored
    /// type, when it is not a `T`.
    pub fn try_get<T: Any + Clone>(&self, key: impl AsKey<T>) -> Result<T, DataError> {
        let name = key.key_name();
        match lock(&self.inner.stores)
            .as_ref()
            .and_then(|stores| stores.data.get(name))
        {
            Some(stored) => stored.read(name),
            None => Err(DataError::Missing {
                key: name.to_owned(),
            }),
        }
    }

    /// The value under `key` as stored, whatever its type.
    #[must_use]
    pub fn get_value(&self, key: &str) -> Option<Value> {
        lock(&self.inner.stores)
            .as_ref()
            .and_then(|stores| stores.data.get(key))
            .map(|stored| stored.value().clone())
    }

    /// The value under `key` (Go melody's `MustGet`).
    ///
    /// # Panics
    ///
    /// When there is no value under `key` or it is not a `T`; the message says which. Inside a
    /// handler the panic closes only this session, with 1011.
    #[must_use]
    #[track_caller]
    pub fn must_get<T: Any + Clone>(&self, key: impl AsKey<T>) -> T {
        match self.try_get(key) {
            Ok(value) => value,
            Err(error) => panic!("{error}"),
        }
    }

    /// Removes the value under `key`; returns whether there was one (Go melody's `UnSet`).
    pub fn unset(&self, key: &str) -> bool {
        lock(&self.inner.stores)
            .as_mut()
            .is_some_and(|stores| stores.data.remove(key).is_some())
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
        lock(&self.inner.stores)
            .get_or_insert_default()
            .extensions
            .insert(value)
    }

    /// A clone of the typed value of type `T`, if any.
    #[must_use]
    pub fn get_ext<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        lock(&self.inner.stores)
            .as_ref()
            .and_then(|stores| stores.extensions.get::<T>().cloned())
    }

    /// Removes and returns the typed value of type `T`, if any.
    pub fn remove_ext<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        lock(&self.inner.stores)
            .as_mut()
            .and_then(|stores| stores.extensions.remove::<T>())
    }

    /// Joins a topic (any string: `room:lobby`, `tenant:42`): `Ok(true)` when it joined,
    /// `Ok(false)` when it was already in it. A session leaves all its topics when it
    /// disconnects.
    ///
    /// ```no_run
    /// # fn demo(session: &melody::Session) -> Result<(), Box<dyn std::error::Error>> {
    /// session.join("room:lobby")?;
    /// session.melody().topic("room:lobby").send("someone joined")?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`JoinError::Closed`] when the session is closed; [`JoinError::TooManyTopics`] when it
    /// is already in [`Config::max_topics_per_session`](crate::Config) topics (topic names often
    /// come from clients: the limit bounds what one client can cost).
    pub fn join(&self, topic: impl AsRef<str>) -> Result<bool, JoinError> {
        let hub = self.hub();
        let topic = topic.as_ref();
        let mut topics = lock(&self.inner.topics);
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
        let (name, _) = hub.topics.join(topic, self);
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
        self.hub().topics.leave(topic, self.id());
        true
    }

    /// Leaves every topic; returns how many it left.
    pub fn leave_all(&self) -> usize {
        let left = std::mem::take(&mut *lock(&self.inner.topics));
        for topic in &left {
            self.hub().topics.leave(topic, self.id());
        }
        left.len()
    }

    /// Takes the session out of every topic's member list but keeps its own list, so that the
    /// disconnect handler can still read [`Session::topics`]: nothing reaches it any more.
    pub(crate) fn withdraw(&self) {
        for topic in lock(&self.inner.topics).iter() {
            self.hub().topics.leave(topic, self.id());
        }
    }

    /// Forgets the session's own list of topics (after its disconnect handler has run).
    pub(crate) fn forget_topics(&self) {
        lock(&self.inner.topics).clear();
    }

    /// The topics this session is in. In the disconnect handler: the topics it was in.
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
    pub(crate) fn enqueue(&self, message: Message) -> Result<(), (PushError, Message)> {
        if self.is_closed() {
            return Err((PushError::Closed, message));
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

    /// Marks the session closed once its connection is ending: sends fail from now on.
    pub(crate) fn mark_closed(&self) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.outbox.seal();
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.inner.id)
            .field("remote_addr", &self.remote_addr())
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

#[cfg(test)]
mod size_tests {
    /// With its `Arc` header, a session's state fills mimalloc's 256-byte class: a byte more
    /// and every session costs 64 more (docs/PERFORMANCE_NOTES.md "Idle memory").
    #[test]
    fn a_session_fits_its_size_class() {
        let inner = std::mem::size_of::<super::Inner>();
        assert!(inner <= 240, "a session's state grew to {inner} bytes");
    }
}
