//! [`Melody`]'s API: creating a hub, its handlers, the selections to send to, upgrading
//! requests, closing, counting, and attaching plug-ins. Everything here is a thin layer over the
//! core; Go melody's names are one `use` away in [`compat`](crate::compat).

use std::{future::Future, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Request, request::Parts};

use crate::{
    core::{
        admission::{AuthRejection, UpgradeResponse},
        config::Config,
        data::Keys,
        dispatch::{AuthFn, OnMessage},
        error::{CloseError, Closed, Error},
        fanout::{Broadcast, Each, Filtered, Target, ToSession},
        hub::{Hub, Melody},
        plugin::{Plugin, Plugins},
        session::{Session, SessionId},
    },
    protocol::{
        close::{CloseCode, CloseFrame},
        message::{Message, Text},
    },
    transport::handshake,
};

impl Melody {
    /// A hub with the default [`Config`] (Go melody's `New`).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A hub with the given configuration.
    #[must_use]
    pub fn with_config(config: Config) -> Self {
        Self::from_hub(Arc::new(Hub::new(config)))
    }

    /// The hub's configuration.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.hub.config
    }

    /// Runs `f` when a session has connected, before any of its messages is handled.
    pub fn on_connect(&self, f: impl Fn(&Session) + Send + Sync + 'static) -> &Self {
        let f = Arc::new(f);
        self.set_handler(|h| h.connect = Some(f.clone()))
    }

    /// Runs `f` exactly once when a session has ended, for whatever reason. The session no
    /// longer receives anything and is no longer counted, but [`Session::topics`] still lists
    /// the topics it was in.
    pub fn on_disconnect(&self, f: impl Fn(&Session) + Send + Sync + 'static) -> &Self {
        let f = Arc::new(f);
        self.set_handler(|h| h.disconnect = Some(f.clone()))
    }

    /// Runs `f` on every text message.
    ///
    /// Handlers run on the session's task, one message at a time, in arrival order (unless
    /// [`Config::concurrent_message_handling`] is set). A handler must not block its thread: a
    /// blocking call holds up the runtime worker it runs on, and so other sessions too. Await
    /// instead (see [`Melody::on_text_async`]), or hand blocking work to
    /// `tokio::task::spawn_blocking`.
    pub fn on_text(&self, f: impl Fn(&Session, Text) + Send + Sync + 'static) -> &Self {
        let f = OnMessage::from_sync(f);
        self.set_handler(|h| h.text = Some(f.clone()))
    }

    /// Runs the async `f` on every text message, awaiting it before the next message is read.
    /// While it awaits, the session keeps writing its queued messages and answering pings.
    ///
    /// # Cancel safety
    ///
    /// When the session is closed (by a close call, the hub, or a missed pong) while `f` is
    /// still running, `f`'s future is dropped at its current await point.
    ///
    /// ```
    /// # let melody = melody::Melody::new();
    /// melody.on_text_async(|session, text| async move {
    ///     let reply = format!("you said {}", &*text);
    ///     let _ = session.send_async(reply).await;
    /// });
    /// ```
    pub fn on_text_async<F, Fut>(&self, f: F) -> &Self
    where
        F: Fn(Session, Text) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let f = OnMessage::from_async(f);
        self.set_handler(|h| h.text = Some(f.clone()))
    }

    /// Runs `f` on every binary message.
    pub fn on_binary(&self, f: impl Fn(&Session, Bytes) + Send + Sync + 'static) -> &Self {
        let f = OnMessage::from_sync(f);
        self.set_handler(|h| h.binary = Some(f.clone()))
    }

    /// Runs the async `f` on every binary message, awaiting it before the next message is read.
    pub fn on_binary_async<F, Fut>(&self, f: F) -> &Self
    where
        F: Fn(Session, Bytes) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let f = OnMessage::from_async(f);
        self.set_handler(|h| h.binary = Some(f.clone()))
    }

    /// Runs `f` after each message (text or binary) has been written to the socket and
    /// flushed.
    pub fn on_sent(&self, f: impl Fn(&Session, &Message) + Send + Sync + 'static) -> &Self {
        let f: crate::core::dispatch::SentFn = Arc::new(f);
        self.set_handler(|h| {
            h.sent_text = Some(f.clone());
            h.sent_binary = Some(f.clone());
        })
    }

    /// Runs `f` when something goes wrong for a session: a dropped message on a full queue, a
    /// protocol violation, a timeout, a panicking handler, a handler's error. See [`Error`].
    pub fn on_error(&self, f: impl Fn(&Session, &Error) + Send + Sync + 'static) -> &Self {
        let f = Arc::new(f);
        self.set_handler(|h| h.error = Some(f.clone()))
    }

    /// Runs `f` when the peer sends a close frame, with its code
    /// ([`CloseCode::NO_STATUS_RECEIVED`] when it had none) and reason. The close is always
    /// echoed, as the protocol requires; the disconnect handler runs afterwards.
    pub fn on_close(&self, f: impl Fn(&Session, &CloseFrame) + Send + Sync + 'static) -> &Self {
        let f = Arc::new(f);
        self.set_handler(|h| h.close = Some(f.clone()))
    }

    /// Runs `f` when a pong arrives (an answer to the automatic pings).
    pub fn on_pong(&self, f: impl Fn(&Session) + Send + Sync + 'static) -> &Self {
        let f = Arc::new(f);
        self.set_handler(|h| h.pong = Some(f.clone()))
    }

    /// Sets the auth hook: it sees each upgrade request (and each SSE request) after the
    /// handshake and origin checks and before a connection slot is taken. It refuses with an
    /// [`AuthRejection`] (no session, no slot used), or accepts with [`Keys`]: values to store
    /// on the new session and topics for it to join. It has [`Config::auth_timeout`] to answer
    /// (503 after that).
    ///
    /// The hook is a plain function returning a future, so it can read the request head
    /// synchronously and then await whatever it needs (a database, a token service):
    ///
    /// ```
    /// use melody::{AuthRejection, Keys, Melody};
    ///
    /// let melody = Melody::new();
    /// melody.on_auth(|req| {
    ///     let token = req
    ///         .uri
    ///         .query()
    ///         .and_then(|q| q.strip_prefix("token="))
    ///         .map(str::to_owned);
    ///     async move {
    ///         match token.as_deref() {
    ///             Some("secret") => Ok(Keys::new().with("user", "alice").join("room:lobby")),
    ///             _ => Err(AuthRejection::unauthorized("missing or bad token")),
    ///         }
    ///     }
    /// });
    /// melody.on_connect(|session| {
    ///     // "alice" was given as a &str and is read back as a String.
    ///     assert_eq!(session.get::<String>("user").as_deref(), Some("alice"));
    /// });
    /// ```
    pub fn on_auth<F, Fut>(&self, auth: F) -> &Self
    where
        F: Fn(&Parts) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Keys, AuthRejection>> + Send + 'static,
    {
        let auth: AuthFn = Arc::new(move |req| Box::pin(auth(req)));
        self.set_handler(|h| h.auth = Some(auth.clone()))
    }

    /// Upgrades an HTTP request to a WebSocket session of this hub (Go melody's
    /// `HandleRequest`). Resolves to `101 Switching Protocols` for an HTTP/1.1 upgrade, `200 OK`
    /// for an HTTP/2 extended `CONNECT` (RFC 8441), or the refusal's status (see
    /// [`UpgradeRejection`](crate::UpgradeRejection)); the session starts once the response
    /// has been sent.
    ///
    /// Call it on a request served by hyper with upgrades on (`melody::serve` and axum's
    /// `serve` do that; for hyper use `serve_connection(..).with_upgrades()`, and for HTTP/2
    /// `enable_connect_protocol()`: see the crate guide's HTTP/2 section). The request body
    /// is dropped at once, so the returned future is `Send` whatever the body type.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use hyper::{Request, body::Incoming};
    /// use melody::Melody;
    ///
    /// let melody = Melody::new();
    /// let service = tower::service_fn(move |req: Request<Incoming>| {
    ///     let upgrade = melody.upgrade(req);
    ///     async move { Ok::<_, Infallible>(upgrade.await) }
    /// });
    /// # let _ = service;
    /// ```
    ///
    /// # Panics
    ///
    /// When polled outside a Tokio runtime, as the session task is spawned on the current one.
    #[must_use = "the response must be sent for the upgrade to happen"]
    pub fn upgrade<B>(
        &self,
        req: Request<B>,
    ) -> impl Future<Output = UpgradeResponse> + Send + use<B> {
        self.upgrade_with(req, Keys::new())
    }

    /// As [`Melody::upgrade`], with values for the new session and topics for it to join
    /// before its connect handler runs (Go melody's `HandleRequestWithKeys`). The auth hook's
    /// keys are added to these.
    #[must_use = "the response must be sent for the upgrade to happen"]
    pub fn upgrade_with<B>(
        &self,
        req: Request<B>,
        keys: Keys,
    ) -> impl Future<Output = UpgradeResponse> + Send + use<B> {
        let (parts, _body) = req.into_parts();
        let hub = self.hub.clone();
        async move {
            match handshake::upgrade(&hub, parts, keys).await {
                Ok(response) => response,
                Err(rejection) => {
                    tracing::debug!(%rejection, status = %rejection.status(), "websocket upgrade refused");
                    rejection.into_response()
                }
            }
        }
    }

    /// Every session, on this node and (with a cluster) every node.
    ///
    /// ```no_run
    /// # fn demo(melody: &melody::Melody, me: &melody::Session) -> Result<(), melody::Closed> {
    /// melody.all().send("to everyone")?;
    /// melody.all().except(me).send("to everyone but me")?;
    /// let here = melody.all().len(); // sessions connected to this node
    /// # Ok(()) }
    /// ```
    pub fn all(&self) -> Broadcast<'_> {
        Broadcast::new(self, Target::All)
    }

    /// The members of a topic, on this node and (with a cluster) every node.
    ///
    /// ```no_run
    /// # fn demo(melody: &melody::Melody, me: &melody::Session) -> Result<(), melody::Closed> {
    /// melody.topic("room:lobby").except(me).send("someone spoke")?;
    /// let members = melody.topic("room:lobby").ids();
    /// # Ok(()) }
    /// ```
    pub fn topic(&self, topic: impl Into<String>) -> Broadcast<'_> {
        Broadcast::new(self, Target::Topic(topic.into()))
    }

    /// One session by id, on this node or (with a cluster) another.
    ///
    /// ```no_run
    /// # fn demo(melody: &melody::Melody, id: melody::SessionId) {
    /// match melody.session(id).send("psst") {
    ///     Ok(_reached) => {}
    ///     Err(error) => eprintln!("not sent: {error}"),
    /// }
    /// let here: Option<melody::Session> = melody.session(id).get();
    /// # }
    /// ```
    pub fn session(&self, id: SessionId) -> ToSession<'_> {
        ToSession::new(self, id)
    }

    /// The sessions of this node a closure accepts. This node only: closures do not travel.
    ///
    /// ```no_run
    /// # fn demo(melody: &melody::Melody) -> Result<(), melody::Closed> {
    /// melody.filter(|s| s.get::<bool>("admin") == Some(true)).send("to admins")?;
    /// # Ok(()) }
    /// ```
    pub fn filter<F: Fn(&Session) -> bool>(&self, filter: F) -> Filtered<'_, F> {
        Filtered::new(self, filter)
    }

    /// Each session of a list of handles. This node only: handles do not travel.
    pub fn each<'s, I: IntoIterator<Item = &'s Session>>(&self, sessions: I) -> Each<'_, I> {
        Each::new(self, sessions)
    }

    /// The topics that have at least one session on this node.
    #[must_use]
    pub fn topics(&self) -> Vec<String> {
        self.hub.topics.names()
    }

    /// Closes the hub: every session gets 1001 Going Away, new upgrades get 503, sends fail
    /// with [`Closed`], SSE streams end. Returns at once; each session's disconnect handler runs
    /// when its connection has ended.
    ///
    /// # Errors
    ///
    /// [`Closed`] when the hub was already closed.
    pub fn close(&self) -> Result<(), Closed> {
        self.close_frame(CloseFrame::new(CloseCode::GOING_AWAY, ""))
            .map_err(|_| Closed)
    }

    /// Closes the hub, sending every session this code and reason.
    ///
    /// # Errors
    ///
    /// [`CloseError::HubClosed`] when the hub was already closed; [`CloseError::ReservedCode`]
    /// for a code that may not be sent ([`CloseCode::may_be_sent`]).
    pub fn close_with(&self, code: CloseCode, reason: &str) -> Result<(), CloseError> {
        self.close_frame(CloseFrame::new(code, reason))
    }

    /// Closes the hub with a prepared frame.
    pub(crate) fn close_frame(&self, frame: CloseFrame) -> Result<(), CloseError> {
        let frame = frame.sendable().map_err(CloseError::ReservedCode)?;
        if !self.hub.lifecycle.close(frame.clone()) {
            return Err(CloseError::HubClosed);
        }
        tracing::debug!(sessions = self.hub.registry.len(), "closing melody hub");
        for session in self.hub.registry.snapshot() {
            session.request_close(frame.clone());
        }
        self.hub.plugins.closed();
        Ok(())
    }

    /// Whether the hub has been closed.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.hub.is_closed()
    }

    /// Shuts the hub down gracefully and returns once every session has ended.
    ///
    /// New upgrades get 503 from the first moment. Every session is sent 1001 Going Away (or
    /// the frame of an earlier [`Melody::close_with`]) after the messages already queued for it;
    /// the call then waits up to `drain` for those writes and the closing handshakes. Sessions
    /// still open after `drain` are dropped. Either way every disconnect handler has run exactly
    /// once when this returns. Returns how many sessions had to be dropped (0 when all drained).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use axum::{Router, routing::get};
    /// use melody::Melody;
    ///
    /// # async fn run() -> std::io::Result<()> {
    /// let melody = Melody::new();
    /// let app = Router::new().route("/ws", get(melody.handler()));
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:5000").await?;
    /// melody::serve(listener, app)
    ///     .with_graceful_shutdown(async move {
    ///         let _ = tokio::signal::ctrl_c().await;
    ///         melody.shutdown(Duration::from_secs(5)).await;
    ///     })
    ///     .await
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves the hub closed; sessions still close on their own within the
    /// write wait.
    pub async fn shutdown(&self, drain: Duration) -> usize {
        // Already closed is fine: shutdown then only waits.
        let _ = self.close();
        let lifecycle = &self.hub.lifecycle;
        if lifecycle.drain(drain).await {
            return 0;
        }
        let remaining = lifecycle.tasks();
        tracing::debug!(remaining, "drain timeout: dropping the sessions left");
        // Sessions that register from now on abort themselves.
        lifecycle.abort();
        self.hub
            .registry
            .for_each(|session| session.outbox().abort());
        lifecycle.wait_idle().await;
        remaining
    }

    /// Attaches a plug-in (the typed router, SSE, a cluster, your own): calls its
    /// [`Plugin::install`].
    pub fn plug(&self, plugin: impl Plugin) -> &Self {
        plugin.install(self);
        self
    }

    /// The seam plug-ins attach through: delivery sinks, plug-in state, deliveries from other
    /// nodes. See the [`plugin`](crate::plugin) module.
    pub fn plugins(&self) -> Plugins<'_> {
        Plugins::new(self)
    }
}
