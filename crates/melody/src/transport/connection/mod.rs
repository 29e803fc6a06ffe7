//! The per-connection task: one task owns the socket and waits on three sources, inbound
//! frames, the outbox (queued messages, close requests, shutdown aborts) and one liveness timer
//! (pings and the pong deadline). Each event is handled by a plain function; only what has to
//! wait (a write the socket did not take, an async handler that has to wait, the closing
//! handshake) becomes a boxed future, so that an idle session's task stays small (its size is
//! most of a session's memory: docs/PERFORMANCE_NOTES.md, "Idle memory").
//!
//! What an inbound frame does (handler dispatch, async handlers, the rate limit) is in
//! `inbound.rs`; writing a batch is `write.rs`. The socket itself is `../io.rs`; frames are
//! parsed by `protocol::frames`.

mod alarm;
mod deflate;
mod inbound;
mod park;
mod reaper;
mod write;

use deflate::Outbound;

use std::{
    any::Any,
    collections::VecDeque,
    future::poll_fn,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use governor::{DefaultDirectRateLimiter, RateLimiter};
use hyper::upgrade::OnUpgrade;
use tokio::{
    sync::Semaphore,
    time::{Instant, Sleep, sleep_until, timeout},
};
use tracing::Instrument;

use bytes::Bytes;

use super::io::{Io, Socket};
use crate::{
    core::{
        data::Keys,
        dispatch::{BoxFuture, Handlers, guarded, panic_error},
        error::Error,
        hub::Hub,
        lifecycle::{Slot, TaskGuard},
        outbox::Wake,
        request_head::RequestHead,
        session::Session,
        stats::Reason,
    },
    protocol::{
        close::{CloseCode, CloseFrame},
        deflate::Agreed,
        frames::{Control, Inbound, close_payload},
        message::Message,
    },
};

/// Most handler calls of one session running at once under
/// [`Config::concurrent_message_handling`](crate::Config::concurrent_message_handling).
pub(crate) const MAX_CONCURRENT_HANDLERS: usize = 64;

/// Most inbound frames handled before their replies are written.
const READ_AHEAD: usize = 64;

/// Park checks without traffic in between before a session parks: the first check after the
/// last traffic starts a quiet interval, the second ends it.
const QUIET_TO_PARK: u8 = 2;

/// How long a closed connection keeps reading what the peer still sends before it is dropped.
const LINGER: std::time::Duration = std::time::Duration::from_millis(250);

/// Starts the session task for a request that is being upgraded (`agreed`: permessage-deflate,
/// when the handshake agreed to it).
pub(crate) fn spawn(
    hub: Arc<Hub>,
    on_upgrade: OnUpgrade,
    request: RequestHead,
    keys: Keys,
    addrs: (Option<SocketAddr>, Option<SocketAddr>),
    slot: Slot,
    agreed: Option<Agreed>,
) {
    let task_guard = TaskGuard::new(hub.clone());
    // Built before the task so that the task does not carry the request parts: what an async
    // block captures keeps its room in the task for the task's whole life.
    let Keys { values, topics } = keys;
    let session = Session::new(hub.clone(), hub.next_id(), request, values, addrs);
    // The topics it starts in are joined now, so the task does not carry their names.
    for topic in topics {
        if let Err(error) = session.join(&topic) {
            tracing::debug!(session = %session.id(), %error, topic, "could not join a topic at upgrade");
        }
    }
    let span = tracing::debug_span!("melody_session", id = session.id().as_u64());
    // A parked session has no task to carry its span: with a subscriber that wants the span,
    // sessions do not park.
    let traced = !span.is_disabled();
    let task = async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(error) => {
                tracing::debug!(%error, "websocket upgrade did not complete");
                session.mark_closed();
                session.leave_all();
                // The slot and the task count go with this task.
                drop((slot, task_guard));
                return;
            }
        };
        let config = &session.hub().config;
        let (outbound, inflater) = match agreed {
            Some(agreed) => {
                let (outbound, inflater) = Outbound::new(agreed, &config.compression);
                (Some(Box::new(outbound)), Some(inflater))
            }
            None => (None, None),
        };
        let socket = Socket::new(
            Io::new(upgraded),
            config.max_message_size,
            config.frame_budget(),
            inflater,
        );
        // Only a plain TCP stream can wait for readiness without a task (not an HTTP/2
        // stream, nor a stream some layer wraps).
        let parking = if socket.is_tcp() && !traced {
            Parking::of(config)
        } else {
            Parking::Never
        };
        // The slot, the task count and the registration go with the connection, wherever it
        // goes (a parked session keeps them), and are released when it ends, however it ends.
        let guards = Guards {
            _registered: Registered::new(session.clone(), task_guard),
            _slot: slot,
        };
        let mut connection = Connection::new(socket, session, outbound, guards, parking);
        let end = connection.start();
        serve(connection, Begin::Connected(end)).await;
    };
    // Entering a span on every poll shows in profiles even when nothing listens; the session
    // gets its span only when a subscriber wants it.
    if span.is_disabled() {
        tokio::spawn(task);
    } else {
        tokio::spawn(task.instrument(span));
    }
}

/// Serves a connection until it ends, or until it parks (then this task ends, and the waker
/// of its cell spawns this again when the session has something to do).
async fn serve(mut connection: Connection, begin: Begin) {
    let end = match begin {
        Begin::Connected(Some(end)) => end,
        begin => {
            if matches!(begin, Begin::Woken) {
                // Still quiet: woken by a ping due or a pong, it parks again once that is
                // handled; traffic (a message either way) keeps it awake.
                connection.rearm_park_check();
            }
            loop {
                match connection.active().await {
                    Some(end) => break end,
                    None => match park::park(connection) {
                        Ok(()) => return,
                        // Not parked after all (a frame half read, or something came in as it
                        // parked): stay for a whole park interval.
                        Err(back) => {
                            connection = back;
                            connection.park_refused = true;
                            connection.quiet_checks = 0;
                            connection.rearm_park_check();
                        }
                    },
                }
            }
        }
    };
    connection.session.mark_closed();
    if let Some(cell) = connection.cell.take() {
        park::unlist(&cell, connection.session.hub());
    }
    // Boxed: the closing phase runs once, and kept inline it would add its size to every
    // active session's task.
    Box::pin(connection.close(end)).await;
}

/// Polls the liveness timer (a connection without one has nothing to wait for on it).
fn poll_timer(timer: &mut Option<Pin<Box<Sleep>>>, cx: &mut Context<'_>) -> Poll<()> {
    match timer {
        Some(timer) => timer.as_mut().poll(cx),
        None => Poll::Pending,
    }
}

/// How a session's task starts.
enum Begin {
    /// Just connected (the connect handler has run); `Some` ends the session before it starts.
    Connected(Option<End>),
    /// A parked session, woken.
    Woken,
}

/// When a session parks (see `park.rs` and [`Config::park_idle_after`](crate::Config)).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Parking {
    Never,
    /// After a park check without traffic.
    WhenIdle,
    /// At every wait.
    Always,
}

impl Parking {
    /// What the hub's configuration asks for, on a stream that can park.
    fn of(config: &crate::Config) -> Self {
        match config.park_idle_after {
            None => Self::Never,
            Some(idle) if idle.is_zero() => Self::Always,
            Some(_) => Self::WhenIdle,
        }
    }
}

/// What a session holds until it ends, parked or not (dropped after its socket).
struct Guards {
    /// Dropped first: the disconnect handler runs before the slot is released.
    _registered: Registered,
    _slot: Slot,
}

/// How far an inbound frame was handled without waiting.
enum Step {
    /// Handled; `Some` ends the session.
    Done(Option<End>),
    /// An async handler's future, to be awaited by the session.
    Await(Arc<Handlers>, BoxFuture),
}

/// What woke an active session.
enum Event {
    /// Queued messages, a close request, or a shutdown's abort.
    Outbox(Wake),
    /// A frame from the client; `None`: the stream ended.
    Read(Option<io::Result<Inbound>>),
    /// The liveness timer (ping due, pong overdue, or the park check).
    Timer,
    /// Nothing is ready, and a whole park interval went by without traffic: the session parks.
    Park,
}

/// How far handling an event got without waiting: done (`Some` ends the session), or a wait.
/// Almost every event is handled at once (a write the socket takes, a synchronous handler);
/// the rare wait is boxed, so that an idle session's task does not carry room for it.
enum Flow<'a> {
    Done(Option<End>),
    Wait(Pin<Box<dyn Future<Output = Option<End>> + Send + 'a>>),
}

/// Awaited, a flow resolves to how the session goes on once the event is handled: `Some` ends
/// it. A future by hand rather than an async fn: an async fn would keep its argument and its
/// locals apart, and this sits in every idle session's task.
impl Future for Flow<'_> {
    type Output = Option<End>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<End>> {
        match self.get_mut() {
            Flow::Done(end) => Poll::Ready(end.take()),
            Flow::Wait(wait) => wait.as_mut().poll(cx),
        }
    }
}

/// How the active phase of a connection ended, and so what the closing phase does.
enum End {
    /// We close: write what is queued, send this frame, wait for the peer's answer.
    Close(CloseFrame),
    /// The peer closed (with this code, if any): echo its close frame.
    Answer(Option<CloseCode>),
    /// The connection is unusable: drop it.
    Drop,
}

struct Connection {
    socket: Socket,
    session: Session,
    /// Messages taken from the outbox, being written.
    batch: VecDeque<Message>,
    /// One timer for both liveness duties: it fires at the next ping or at the pong deadline,
    /// whichever comes first (one timer polled per wake-up instead of two). `None` only
    /// between a wake and the woken task's first step: a parked session has no timer.
    timer: Option<Pin<Box<Sleep>>>,
    next_ping: Instant,
    pong_deadline: Instant,
    /// Boxed: most hubs set no limit, and a session should not carry its room.
    rate_limit: Option<Box<DefaultDirectRateLimiter>>,
    /// Handler calls in flight under concurrent message handling; created on the first.
    in_flight: Option<Arc<Semaphore>>,
    /// permessage-deflate's writer, when agreed (boxed: most sessions have none).
    deflate: Option<Box<Outbound>>,
    /// Which event source is polled first next time (see `poll_event`).
    turn: u8,
    /// Where the session waits when it is parked (`park.rs`); made at its first park.
    cell: Option<Arc<park::Cell>>,
    /// Whether (and when) the session parks.
    parking: Parking,
    /// Park checks passed since the last traffic: a data message read, or messages queued for
    /// the session (pings and pongs are not traffic). At [`QUIET_TO_PARK`] a whole interval
    /// went by without any, and the session parks at its next wait.
    quiet_checks: u8,
    /// When the timer next checks for idleness (only when the session may park).
    next_check: Instant,
    /// A park was just refused (a frame half read, a handler call in flight, or a source
    /// fired as it parked): no new attempt before the next wait, or a session that parks at
    /// every wait would try again and again without yielding.
    park_refused: bool,
    /// Last: dropped after the socket is closed, so that a shutdown waiting for the sessions'
    /// ends does not return before their sockets are closed.
    guards: Guards,
}

impl Connection {
    fn new(
        socket: Socket,
        session: Session,
        deflate: Option<Box<Outbound>>,
        guards: Guards,
        parking: Parking,
    ) -> Self {
        let config = &session.hub().config;
        let now = Instant::now();
        let next_ping = now + config.effective_ping_period();
        let pong_deadline = now + config.pong_wait;
        let rate_limit = config
            .rate_limit_quota()
            .map(|quota| Box::new(RateLimiter::direct(quota)));
        let mut connection = Self {
            socket,
            session,
            batch: VecDeque::new(),
            // Made by `rearm_park_check` below.
            timer: None,
            next_ping,
            pong_deadline,
            rate_limit,
            in_flight: None,
            deflate,
            turn: 0,
            cell: None,
            parking,
            // A session that has had no traffic yet parks at its first wait.
            quiet_checks: QUIET_TO_PARK,
            next_check: now,
            park_refused: false,
            guards,
        };
        connection.rearm_park_check();
        connection
    }

    /// Sets the next park check a whole interval from now (a parked session has none).
    fn rearm_park_check(&mut self) {
        self.next_check = Instant::now() + self.park_after();
        self.arm_timer();
    }

    /// How long without traffic between park checks.
    fn park_after(&self) -> std::time::Duration {
        self.session
            .hub()
            .config
            .park_idle_after
            .unwrap_or_default()
    }

    /// Sets the timer for the next ping, the pong deadline or the park check, whichever
    /// comes first.
    fn arm_timer(&mut self) {
        let mut next = self.next_ping.min(self.pong_deadline);
        if self.parking == Parking::WhenIdle {
            next = next.min(self.next_check);
        }
        match &mut self.timer {
            Some(timer) => timer.as_mut().reset(next),
            None => self.timer = Some(Box::pin(sleep_until(next))),
        }
    }

    /// Runs the connect handler; `Some` ends the session before it starts (a panic, or a hub
    /// closed while it was being upgraded).
    fn start(&mut self) -> Option<End> {
        let hub = self.session.hub().clone();
        tracing::debug!(session = %self.session.id(), remote = ?self.session.remote_addr(), "session connected");
        if hub.is_closed() {
            // The hub closed while this session was being upgraded.
            self.session.request_close(hub.lifecycle.close_frame());
        }
        let handlers = hub.handlers();
        match &handlers.connect {
            Some(connect) => match guarded(|| connect(&self.session)) {
                Ok(()) => None,
                Err(end) => Some(self.panicked(&handlers, end)),
            },
            None => None,
        }
    }

    /// Serves the session until it ends: waits for the next event, handles it at once, and
    /// awaits only what has to wait (boxed). A loop of plain functions rather than a
    /// `select!` of async branches: the task keeps room only for the event and one boxed
    /// wait. `None`: the session is idle and may park.
    async fn active(&mut self) -> Option<End> {
        loop {
            let event = poll_fn(|cx| self.poll_event(cx)).await;
            let flow = match event {
                Event::Outbox(wake) => {
                    self.quiet_checks = 0;
                    self.woken(wake)
                }
                Event::Read(next) => self.read(next, 0),
                Event::Timer => self.on_timer(),
                Event::Park => return None,
            };
            if let Some(end) = flow.await {
                return Some(end);
            }
        }
    }

    /// The next event: the outbox, the socket and the timer are polled in turn, each time
    /// starting with the next one, so that a steady stream of outbound messages cannot starve
    /// reading (and so pongs), nor the reverse. Each source not ready keeps the waker.
    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        self.turn = (self.turn + 1) % 3;
        for source in (0..3).map(|i| (self.turn + i) % 3) {
            let ready = match source {
                0 => match self.session.outbox().poll_wait(cx, &mut self.batch) {
                    Poll::Ready(wake) => Some(Event::Outbox(wake)),
                    Poll::Pending => None,
                },
                1 => match self.socket.poll_next(cx) {
                    Poll::Ready(next) => Some(Event::Read(next)),
                    Poll::Pending => None,
                },
                _ => match poll_timer(&mut self.timer, cx) {
                    Poll::Ready(()) => Some(Event::Timer),
                    Poll::Pending => None,
                },
            };
            if let Some(event) = ready {
                return Poll::Ready(event);
            }
        }
        if std::mem::take(&mut self.park_refused) {
            return Poll::Pending;
        }
        let park = match self.parking {
            Parking::Never => false,
            Parking::WhenIdle => self.quiet_checks >= QUIET_TO_PARK,
            Parking::Always => true,
        };
        if park {
            return Poll::Ready(Event::Park);
        }
        Poll::Pending
    }

    /// Acts on what the outbox woke the task for.
    fn woken(&mut self, wake: Wake) -> Flow<'_> {
        match wake {
            Wake::Messages => self.write_batch(),
            Wake::Close(frame) => Flow::Done(Some(End::Close(frame))),
            Wake::Abort => Flow::Done(Some(End::Drop)),
        }
    }

    /// The liveness timer fired: end a session whose pong is overdue, send a ping when one is
    /// due, and re-arm for whichever comes next.
    fn on_timer(&mut self) -> Flow<'_> {
        let config = &self.session.hub().config;
        let (period, pong_wait) = (config.effective_ping_period(), config.pong_wait);
        let now = Instant::now();
        if now >= self.pong_deadline {
            return Flow::Done(Some(self.failed(Error::PongTimeout(pong_wait))));
        }
        if self.parking == Parking::WhenIdle && now >= self.next_check {
            self.quiet_checks = self.quiet_checks.saturating_add(1);
            self.next_check = now + self.park_after();
        }
        let ping = now >= self.next_ping;
        if ping {
            // A ping period without a burst: let go of what the last one grew.
            self.socket.shrink();
            self.session.outbox().shrink();
            if self.batch.is_empty() {
                self.batch = VecDeque::new();
            }
            if let Some(deflate) = &mut self.deflate {
                deflate.shrink();
            }
            self.next_ping = now + period;
        }
        self.arm_timer();
        if ping {
            self.socket.queue_control(Control::Ping, &[]);
            return self.write_batch();
        }
        Flow::Done(None)
    }

    /// Reports an error and decides how the session ends because of it.
    fn failed(&self, error: Error) -> End {
        let reason = match &error {
            Error::MessageTooBig { .. } => Some(Reason::TooBig),
            Error::InvalidUtf8 => Some(Reason::BadUtf8),
            Error::Protocol(_) => Some(Reason::Protocol),
            Error::RateLimited => Some(Reason::RateLimit),
            Error::FrameRateLimited => Some(Reason::FrameRate),
            _ => None,
        };
        if let Some(reason) = reason {
            self.session.hub().counters.rejected(reason);
        }
        self.session.hub().handlers().report(&self.session, &error);
        match error.close_code() {
            // The connection is gone: there is nobody to send a close frame to.
            Some(CloseCode::ABNORMAL_CLOSURE) | None => End::Drop,
            // After a violation nothing more is read, so the close does not wait for the peer's.
            Some(code) => End::Close(CloseFrame::new(code, error.to_string())),
        }
    }

    /// Reports a panicking handler and closes the session with 1011.
    fn panicked(&self, handlers: &Handlers, panic: Box<dyn Any + Send>) -> End {
        let error = panic_error(panic);
        handlers.report(&self.session, &error);
        End::Close(CloseFrame::new(
            CloseCode::INTERNAL_SERVER_ERR,
            "internal error",
        ))
    }

    /// The closing handshake, bounded by the write wait (or cut short by a shutdown's abort).
    async fn close(&mut self, end: End) {
        let write_wait = self.session.hub().config.write_wait;
        let outbox_session = self.session.clone();
        let (socket, batch, deflate) = (&mut self.socket, &mut self.batch, &mut self.deflate);
        let closing = async move {
            if matches!(end, End::Drop) {
                return Ok(());
            }
            // Messages queued before the close go out first, then the close frame.
            batch.extend(outbox_session.outbox().drain());
            let wire = match deflate {
                Some(deflate) => {
                    deflate.prepare(batch, &outbox_session.hub().counters);
                    &deflate.wire[..]
                }
                None => &[],
            };
            socket.write(batch, wire).await?;
            batch.clear();
            let payload = match &end {
                End::Close(frame) => close_payload(frame.code(), frame.reason()),
                End::Answer(Some(code)) => close_payload(*code, ""),
                _ => Bytes::new(),
            };
            socket.queue_control(Control::Close, &payload);
            socket.write(batch, &[]).await?;
            if matches!(end, End::Close(_)) {
                // Wait for the peer's close (or the end of the stream), dropping what comes first.
                while let Some(Ok(item)) = socket.next().await {
                    if matches!(item, Inbound::Close(_)) {
                        break;
                    }
                }
            }
            socket.finish(LINGER).await
        };
        let session = self.session.clone();
        tokio::select! {
            result = timeout(write_wait, closing) => {
                if let Ok(Err(error)) = result {
                    tracing::trace!(session = %session.id(), %error, "closing handshake failed");
                }
            }
            () = aborted(&session) => {}
        }
    }
}

/// Resolves when a shutdown's drain timeout has expired. It must not take from the outbox:
/// the closing handshake it races still has to write what is queued.
async fn aborted(session: &Session) {
    session.outbox().aborted().await;
}

/// Keeps the session in the registry while it lives; removing it and running the disconnect
/// handler happen exactly once, even if the task unwinds. It also ends the task count of the
/// session (taken over from the task's guard, so that a parked session keeps one pointer to the
/// hub fewer).
struct Registered(Session);

impl Registered {
    fn new(session: Session, task: TaskGuard) -> Self {
        task.hand_over();
        session.hub().registry.insert(session.clone());
        session.hub().counters.connected();
        if session.hub().lifecycle.is_aborting() {
            // A shutdown's drain has already expired.
            session.outbox().abort();
        }
        Self(session)
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        reaper::end(&self.0);
    }
}

/// What ending a session does, once: out of the registry and the topics, the counts, the
/// plug-ins and the disconnect handler.
fn ended(session: &Session) {
    session.mark_closed();
    // Out of every topic's members, so nothing reaches it any more; its own list of
    // topics stays readable in the disconnect handler (presence on leave needs it).
    session.withdraw();
    session.hub().registry.remove(session.id());
    session.hub().counters.disconnected();
    tracing::debug!(session = %session.id(), "session disconnected");
    session.hub().plugins.disconnected(session);
    let handlers = session.hub().handlers();
    if let Some(disconnect) = &handlers.disconnect {
        if let Err(panic) = guarded(|| disconnect(session)) {
            handlers.report(session, &panic_error(panic));
        }
    }
    session.forget_topics();
    session.hub().lifecycle.task_ended();
}
