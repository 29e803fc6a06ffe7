//! [`Melody`]: the hub. Handler registration, broadcasting, counting and closing.

use std::{
    fmt,
    future::Future,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use arc_swap::ArcSwap;
use bytes::Bytes;

use crate::{
    CloseCode, CloseFrame, Config, Error, Message, Session, Text,
    backplane::{Backplane, NodeId, Target},
    handlers::{Handlers, OnMessage},
    queue::PushError,
    registry::Registry,
    session::SessionId,
    stats::Counters,
    topics::Topics,
};

/// A hub of WebSocket sessions.
///
/// Create one, set its handlers, mount it on a route (see [`Melody::handler`] for axum and
/// [`Melody::handle_request`] for plain hyper), and write to sessions from anywhere. `Melody` is
/// a cheap handle: clone it freely; all clones are the same hub.
///
/// ```
/// use axum::{Router, routing::get};
/// use melody::Melody;
///
/// let melody = Melody::new();
/// melody.handle_message(|session, text| {
///     // Every text message goes to every session; the bytes are shared, not copied.
///     let _ = session.melody().broadcast(text);
/// });
/// let app: Router = Router::new().route("/ws", get(melody.handler()));
/// ```
#[derive(Clone)]
pub struct Melody {
    hub: Arc<Hub>,
}

/// The shared state behind every `Melody` handle and every session.
pub(crate) struct Hub {
    pub(crate) config: Config,
    handlers: ArcSwap<Handlers>,
    pub(crate) registry: Registry,
    pub(crate) topics: Topics<Session>,
    #[cfg(feature = "sse")]
    pub(crate) sse: Topics<crate::sse::Subscriber>,
    pub(crate) counters: Counters,
    closed: AtomicBool,
    close_frame: OnceLock<CloseFrame>,
    /// This node's id in a cluster.
    pub(crate) node: NodeId,
    /// The transport to the other nodes, once set.
    pub(crate) backplane: OnceLock<Arc<dyn Backplane>>,
    /// Connections counted against `Config::max_connections` (upgrading or live).
    pub(crate) slots: AtomicUsize,
    /// Session tasks alive (upgrading, serving or closing), for `shutdown`.
    pub(crate) tasks: AtomicUsize,
    /// Woken when `tasks` drops to 0.
    pub(crate) idle: tokio::sync::Notify,
    /// Set when a shutdown's drain timeout expires: every session task stops at once.
    pub(crate) aborting: AtomicBool,
}

impl Hub {
    pub(crate) fn handlers(&self) -> arc_swap::Guard<Arc<Handlers>> {
        self.handlers.load()
    }

    /// The handler table as an owned handle, for holding across an await.
    pub(crate) fn handlers_full(&self) -> Arc<Handlers> {
        self.handlers.load_full()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The frame sessions get when the hub closes (1001 unless the closer chose another).
    pub(crate) fn close_frame(&self) -> CloseFrame {
        self.close_frame
            .get()
            .cloned()
            .unwrap_or_else(|| CloseFrame::new(CloseCode::GOING_AWAY, ""))
    }

    /// A random id that no connected session of this hub has.
    pub(crate) fn next_id(&self) -> SessionId {
        loop {
            let id = SessionId::random();
            if self.registry.get(id).is_none() {
                return id;
            }
        }
    }
}

impl Default for Melody {
    fn default() -> Self {
        Self::new()
    }
}

impl Melody {
    /// A hub with the default [`Config`] (Go melody's `New`).
    #[must_use]
    pub fn new() -> Self {
        Self::with_config(Config::default())
    }

    /// A hub with the given configuration.
    #[must_use]
    pub fn with_config(config: Config) -> Self {
        Self::from_hub(Arc::new(Hub {
            config,
            handlers: ArcSwap::from_pointee(Handlers::default()),
            registry: Registry::new(),
            topics: Topics::default(),
            #[cfg(feature = "sse")]
            sse: Topics::default(),
            counters: Counters::default(),
            closed: AtomicBool::new(false),
            close_frame: OnceLock::new(),
            node: NodeId(crate::random::u64()),
            backplane: OnceLock::new(),
            slots: AtomicUsize::new(0),
            tasks: AtomicUsize::new(0),
            idle: tokio::sync::Notify::new(),
            aborting: AtomicBool::new(false),
        }))
    }

    pub(crate) fn from_hub(hub: Arc<Hub>) -> Self {
        Self { hub }
    }

    pub(crate) fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// The hub's configuration.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.hub.config
    }

    pub(crate) fn set_handler(&self, set: impl Fn(&mut Handlers)) -> &Self {
        self.hub.handlers.rcu(|current| {
            let mut next = Handlers::clone(current);
            set(&mut next);
            next
        });
        self
    }

    /// Runs `f` when a session has connected, before any of its messages is handled.
    pub fn handle_connect(&self, f: impl Fn(&Session) + Send + Sync + 'static) -> &Self {
        let f = Arc::new(f);
        self.set_handler(|h| h.connect = Some(f.clone()))
    }

    /// Runs `f` exactly once when a session has ended, for whatever reason. The session is no
    /// longer counted by [`Melody::len`] and no longer receives broadcasts.
    pub fn handle_disconnect(&self, f: impl Fn(&Session) + Send + Sync + 'static) -> &Self {
        let f = Arc::new(f);
        self.set_handler(|h| h.disconnect = Some(f.clone()))
    }

    /// Runs `f` on every text message.
    ///
    /// Handlers run on the session's task, one message at a time, in arrival order (unless
    /// [`Config::concurrent_message_handling`] is set). A handler must not block its thread: a
    /// blocking call holds up the runtime worker it runs on, and so other sessions too. Await
    /// instead (see [`Melody::handle_message_async`]), or hand blocking work to
    /// `tokio::task::spawn_blocking`. While an async handler awaits, the session keeps writing
    /// its queued messages.
    pub fn handle_message(&self, f: impl Fn(&Session, Text) + Send + Sync + 'static) -> &Self {
        let f = OnMessage::from_sync(f);
        self.set_handler(|h| h.message = Some(f.clone()))
    }

    /// Runs the async `f` on every text message, awaiting it before the next message is read.
    ///
    /// # Cancel safety
    ///
    /// When the session is closed (by a close call, the hub, or a missed pong) while `f` is
    /// still running, `f`'s future is dropped at its current await point.
    ///
    /// ```
    /// # let melody = melody::Melody::new();
    /// melody.handle_message_async(|session, text| async move {
    ///     let reply = format!("you said {}", &*text);
    ///     let _ = session.write_async(reply).await;
    /// });
    /// ```
    pub fn handle_message_async<F, Fut>(&self, f: F) -> &Self
    where
        F: Fn(Session, Text) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let f = OnMessage::from_async(f);
        self.set_handler(|h| h.message = Some(f.clone()))
    }

    /// Runs `f` on every binary message.
    pub fn handle_message_binary(
        &self,
        f: impl Fn(&Session, Bytes) + Send + Sync + 'static,
    ) -> &Self {
        let f = OnMessage::from_sync(f);
        self.set_handler(|h| h.message_binary = Some(f.clone()))
    }

    /// Runs the async `f` on every binary message, awaiting it before the next message is read.
    pub fn handle_message_binary_async<F, Fut>(&self, f: F) -> &Self
    where
        F: Fn(Session, Bytes) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let f = OnMessage::from_async(f);
        self.set_handler(|h| h.message_binary = Some(f.clone()))
    }

    /// Runs `f` after a text message has been written to the socket and flushed.
    pub fn handle_sent_message(
        &self,
        f: impl Fn(&Session, &Message) + Send + Sync + 'static,
    ) -> &Self {
        let f = Arc::new(f);
        self.set_handler(|h| h.sent_message = Some(f.clone()))
    }

    /// Runs `f` after a binary message has been written to the socket and flushed.
    pub fn handle_sent_message_binary(
        &self,
        f: impl Fn(&Session, &Message) + Send + Sync + 'static,
    ) -> &Self {
        let f = Arc::new(f);
        self.set_handler(|h| h.sent_message_binary = Some(f.clone()))
    }

    /// Runs `f` when something goes wrong for a session: a dropped message on a full queue, a
    /// protocol violation, a timeout, a panicking handler. See [`Error`].
    pub fn handle_error(&self, f: impl Fn(&Session, &Error) + Send + Sync + 'static) -> &Self {
        let f = Arc::new(f);
        self.set_handler(|h| h.error = Some(f.clone()))
    }

    /// Runs `f` when the peer sends a close frame, with its code ([`CloseCode::NO_STATUS_RECEIVED`]
    /// when it had none) and reason. The close is always echoed, as the protocol requires; the
    /// disconnect handler runs afterwards.
    pub fn handle_close(&self, f: impl Fn(&Session, &CloseFrame) + Send + Sync + 'static) -> &Self {
        let f = Arc::new(f);
        self.set_handler(|h| h.close = Some(f.clone()))
    }

    /// Runs `f` when a pong arrives (an answer to the automatic pings).
    pub fn handle_pong(&self, f: impl Fn(&Session) + Send + Sync + 'static) -> &Self {
        let f = Arc::new(f);
        self.set_handler(|h| h.pong = Some(f.clone()))
    }

    /// Sends a text or binary message to every session. Returns how many sessions it was queued
    /// for. The message's bytes are shared by all recipients, never copied.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the hub is closed. A recipient whose queue is full does not fail
    /// the broadcast: it is reported to the error handler and the overflow policy applies.
    pub fn broadcast(&self, message: impl Into<Message>) -> Result<usize, Error> {
        let message = message.into();
        let queued = self.fan_out(&message, |queue| self.hub.registry.for_each(queue))?;
        self.publish_remote(Target::All, &message);
        Ok(queued)
    }

    /// Sends a binary message to every session (Go melody's `BroadcastBinary`).
    ///
    /// # Errors
    ///
    /// As [`Melody::broadcast`].
    pub fn broadcast_binary(&self, bytes: impl Into<Bytes>) -> Result<usize, Error> {
        self.broadcast(Message::binary(bytes))
    }

    /// Sends a message to every session for which `filter` returns `true`.
    ///
    /// The filter runs outside every lock, so it may call anything on the hub or the session.
    ///
    /// # Errors
    ///
    /// As [`Melody::broadcast`].
    pub fn broadcast_filter(
        &self,
        message: impl Into<Message>,
        filter: impl Fn(&Session) -> bool,
    ) -> Result<usize, Error> {
        let message = message.into();
        let sessions = self.hub.registry.snapshot();
        self.fan_out(&message, |queue| {
            sessions.iter().filter(|s| filter(s)).for_each(queue)
        })
    }

    /// Sends a binary message to every session for which `filter` returns `true`.
    ///
    /// # Errors
    ///
    /// As [`Melody::broadcast`].
    pub fn broadcast_binary_filter(
        &self,
        bytes: impl Into<Bytes>,
        filter: impl Fn(&Session) -> bool,
    ) -> Result<usize, Error> {
        self.broadcast_filter(Message::binary(bytes), filter)
    }

    /// Sends a message to every session but `except`.
    ///
    /// # Errors
    ///
    /// As [`Melody::broadcast`].
    pub fn broadcast_others(
        &self,
        message: impl Into<Message>,
        except: &Session,
    ) -> Result<usize, Error> {
        let message = message.into();
        let except = except.id();
        let queued = self.fan_out(&message, |queue| {
            self.hub.registry.for_each(|s| {
                if s.id() != except {
                    queue(s);
                }
            })
        })?;
        self.publish_remote(Target::AllExcept(except), &message);
        Ok(queued)
    }

    /// Sends a binary message to every session but `except`.
    ///
    /// # Errors
    ///
    /// As [`Melody::broadcast`].
    pub fn broadcast_binary_others(
        &self,
        bytes: impl Into<Bytes>,
        except: &Session,
    ) -> Result<usize, Error> {
        self.broadcast_others(Message::binary(bytes), except)
    }

    /// Sends a message to each of the given sessions. Unlike Go melody, one closed or full
    /// session does not stop the others from receiving it.
    ///
    /// # Errors
    ///
    /// As [`Melody::broadcast`].
    pub fn broadcast_multiple<'a>(
        &self,
        message: impl Into<Message>,
        sessions: impl IntoIterator<Item = &'a Session>,
    ) -> Result<usize, Error> {
        let message = message.into();
        self.fan_out(&message, |queue| sessions.into_iter().for_each(queue))
    }

    /// Sends a binary message to each of the given sessions.
    ///
    /// # Errors
    ///
    /// As [`Melody::broadcast`].
    pub fn broadcast_binary_multiple<'a>(
        &self,
        bytes: impl Into<Bytes>,
        sessions: impl IntoIterator<Item = &'a Session>,
    ) -> Result<usize, Error> {
        self.broadcast_multiple(Message::binary(bytes), sessions)
    }

    /// Queues `message` on every session `select` hands to its callback; full queues are dealt
    /// with after the selection is done, outside any lock.
    pub(crate) fn fan_out(
        &self,
        message: &Message,
        select: impl FnOnce(&mut dyn FnMut(&Session)),
    ) -> Result<usize, Error> {
        if self.hub.is_closed() {
            return Err(Error::Closed);
        }
        let mut queued = 0;
        let mut full = Vec::new();
        select(
            &mut |session: &Session| match session.enqueue(message.clone()) {
                Ok(()) => queued += 1,
                Err(PushError::Full) => full.push(session.clone()),
                Err(PushError::Closed) => {}
            },
        );
        for session in full {
            session.overflowed();
        }
        Ok(queued)
    }

    /// Number of connected sessions; 0 from the moment the hub is closed (sessions still in
    /// their closing handshake are no longer counted).
    #[must_use]
    pub fn len(&self) -> usize {
        if self.is_closed() {
            return 0;
        }
        self.hub.registry.len()
    }

    /// Whether no session is connected.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A snapshot of the connected sessions (Go melody's `Sessions`).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once the hub is closed.
    pub fn sessions(&self) -> Result<Vec<Session>, Error> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        Ok(self.hub.registry.snapshot())
    }

    /// The connected session with this id, if any.
    #[must_use]
    pub fn session(&self, id: SessionId) -> Option<Session> {
        self.hub.registry.get(id)
    }

    /// Sends a message to the session with this id (a direct message), on this node or, with a
    /// backplane, on whichever node it is connected to.
    ///
    /// # Errors
    ///
    /// [`Error::SessionNotFound`] when no such session is connected here and there is no
    /// backplane (with one, a session on another node is reached best-effort and an unknown id
    /// is not reported); otherwise as [`Session::write`].
    pub fn send_to(&self, id: SessionId, message: impl Into<Message>) -> Result<(), Error> {
        if let Some(session) = self.session(id) {
            return session.write(message);
        }
        if self.hub.backplane.get().is_none() {
            return Err(Error::SessionNotFound(id));
        }
        if self.is_closed() {
            return Err(Error::Closed);
        }
        // Not here: the node that has it delivers it; a session connected nowhere is not
        // reported back.
        self.publish_remote(Target::Session(id), &message.into());
        Ok(())
    }

    /// Closes the hub: every session gets 1001 Going Away, new upgrades get 503, broadcasts fail
    /// with [`Error::Closed`]. Returns at once; each session's disconnect handler runs when its
    /// connection has ended.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the hub was already closed.
    pub fn close(&self) -> Result<(), Error> {
        self.close_frame(CloseFrame::new(CloseCode::GOING_AWAY, ""))
    }

    /// Closes the hub, sending every session this code and reason.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the hub was already closed; [`Error::ReservedCloseCode`] for a code
    /// that cannot be sent.
    pub fn close_with(&self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.close_frame(CloseFrame::new(code, reason))
    }

    /// Closes the hub with a raw close payload (Go melody's `CloseWithMsg`), as built by
    /// [`format_close_message`](crate::format_close_message).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidClosePayload`] when the payload does not parse; otherwise as
    /// [`Melody::close_with`].
    pub fn close_with_msg(&self, payload: &[u8]) -> Result<(), Error> {
        self.close_frame(CloseFrame::from_close_payload(payload)?)
    }

    /// Closes the hub with a prepared [`CloseFrame`].
    ///
    /// # Errors
    ///
    /// As [`Melody::close_with`].
    pub fn close_frame(&self, frame: CloseFrame) -> Result<(), Error> {
        let frame = frame.sendable()?;
        if self.hub.close_frame.set(frame.clone()).is_err() {
            return Err(Error::Closed);
        }
        self.hub.closed.store(true, Ordering::Release);
        tracing::debug!(sessions = self.len(), "closing melody hub");
        for session in self.hub.registry.snapshot() {
            session.request_close(frame.clone());
        }
        #[cfg(feature = "sse")]
        crate::sse::close_all(&self.hub);
        Ok(())
    }

    /// Whether the hub has been closed.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.hub.is_closed()
    }
}

impl fmt::Debug for Melody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Melody")
            .field("sessions", &self.len())
            .field("closed", &self.is_closed())
            .field("config", &self.hub.config)
            .finish_non_exhaustive()
    }
}
