//! Parking: an idle session gives up its task. What it keeps is moved into a small cell (the
//! TCP stream, its deadlines, the limits and the guards; no buffers, no timer), and the cell is
//! the waker of the three things that can wake it: the socket becoming readable, the outbox,
//! and the hub's alarm clock for parked sessions (`alarm.rs`), under whose tick the cell is
//! listed for its next ping or pong deadline. The first of them to fire spawns a new task that
//! takes the connection back.
//!
//! Why: a session's task is most of an idle session's memory (the task is ~0.75 KiB; the cell
//! ~0.2 KiB, docs/PERFORMANCE_NOTES.md "Idle memory"), and most sessions of a real-time server
//! are idle most of the time. A session parks only after a whole
//! [`Config::park_idle_after`](crate::Config) without traffic (checked by its liveness timer;
//! or at once, when it has had none since it connected), so a busy session does not pay for a
//! spawn per message.
//!
//! Waking is race-free without holding a lock while waking: the parker registers the cell's
//! waker and checks every source while it holds the cell's lock, and a waker that finds the
//! lock held leaves a `woken` mark that the parker reads once it lets the lock go. Every source
//! is checked for readiness (not for an edge) when polled, so a wake that came before the
//! registration is seen by the check.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex, MutexGuard, TryLockError,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Wake, Waker},
};

use governor::DefaultDirectRateLimiter;
use tokio::{runtime::Handle, time::Instant};

use super::{
    Begin, Connection, Guards, MAX_CONCURRENT_HANDLERS, Parking, QUIET_TO_PARK,
    alarm::{Alarms, Listing},
    deflate::Outbound,
    reaper, serve,
};
use crate::{
    core::session::Session,
    transport::io::{ParkedSocket, Socket},
};

/// What a parked session keeps: the connection without its buffers.
pub(super) struct Parked {
    socket: ParkedSocket,
    session: Session,
    next_ping: Instant,
    pong_deadline: Instant,
    rate_limit: Option<Box<DefaultDirectRateLimiter>>,
    deflate: Option<Box<Outbound>>,
    guards: Guards,
}

impl Parked {
    /// When the session must wake even without traffic: for its next ping or its pong
    /// deadline.
    fn deadline(&self) -> Instant {
        self.next_ping.min(self.pong_deadline)
    }

    /// Registers `cx` with the outbox and the socket (the alarm clock is told apart); whether
    /// a source is ready already, the deadline included.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> bool {
        self.session.outbox().poll_ready(cx).is_ready()
            || self.socket.poll_readable(cx).is_ready()
            || Instant::now() >= self.deadline()
    }
}

/// A parked session, and the waker of what it waits for. Made at a session's first park and
/// kept by its connection, so parking again allocates nothing.
pub(super) struct Cell {
    parked: Mutex<Option<Parked>>,
    /// Set by every wake; read by the parker after it lets the lock go (see the module doc).
    woken: AtomicBool,
    /// The alarm clock's tick the cell is listed under, if any.
    listing: Listing,
    /// Where the woken session's task is spawned: a waker may run on any thread.
    runtime: Handle,
}

impl Cell {
    /// Takes the parked session out, counting it (under the cell's lock, so that each park is
    /// counted out once).
    fn take(slot: &mut Option<Parked>) -> Option<Parked> {
        let parked = slot.take();
        if let Some(parked) = &parked {
            parked.session.hub().counters.unparked();
        }
        parked
    }

    pub(super) fn listing(&self) -> &Listing {
        &self.listing
    }

    /// The runtime the session's task runs on.
    pub(super) fn runtime(&self) -> &Handle {
        &self.runtime
    }

    /// The alarm clock's wake: the session's deadline came.
    pub(super) fn alarm(self: &Arc<Self>) {
        self.wake_by_ref();
    }

    fn lock(&self) -> MutexGuard<'_, Option<Parked>> {
        // Never held across user code: a poisoned lock holds consistent data.
        self.parked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Wake for Cell {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        let parked = match self.parked.try_lock() {
            Ok(mut parked) => Cell::take(&mut parked),
            Err(TryLockError::Poisoned(poisoned)) => Cell::take(&mut poisoned.into_inner()),
            // The holder sees `woken` when it lets go, or is a waker that takes the session.
            Err(TryLockError::WouldBlock) => return,
        };
        if let Some(parked) = parked {
            let connection = Connection::unpark(parked, self.clone());
            // A runtime that is shutting down drops the task at once, here: the session is
            // then ended by the reaper, not under whatever locks this thread holds.
            reaper::waking(&self.runtime, || {
                self.runtime.spawn(serve(connection, Begin::Woken));
            });
        }
    }
}

/// Parks an idle connection; `Err` gives it back when it cannot be parked (a frame is half
/// read) or something is already waiting for it.
#[allow(
    clippy::result_large_err,
    reason = "handed back by value: parking moves it whole, once per idle period"
)]
pub(super) fn park(mut connection: Connection) -> Result<(), Connection> {
    let cell = connection.cell.take().unwrap_or_else(|| {
        Arc::new(Cell {
            parked: Mutex::new(None),
            woken: AtomicBool::new(false),
            listing: Listing::new(),
            runtime: Handle::current(),
        })
    });
    let hub = connection.session.hub().clone();
    let parked = match connection.into_parked() {
        Ok(parked) => parked,
        Err(mut connection) => {
            connection.cell = Some(cell);
            return Err(connection);
        }
    };
    let waker = Waker::from(cell.clone());
    let mut cx = Context::from_waker(&waker);
    let mut slot = cell.lock();
    cell.woken.store(false, Ordering::SeqCst);
    let parked = slot.insert(parked);
    // Counted in under the lock, so that a waker that takes it out counts it out after.
    parked.session.hub().counters.parked();
    Alarms::of(&hub).list(&cell, parked.deadline());
    let ready = parked.poll_ready(&mut cx);
    let back = if ready { Cell::take(&mut slot) } else { None };
    drop(slot);
    let back = match back {
        Some(parked) => Some(parked),
        // A source fired while its waker was being registered, and found the lock held.
        None if cell.woken.load(Ordering::SeqCst) => Cell::take(&mut cell.lock()),
        None => None,
    };
    match back {
        Some(parked) => Err(Connection::unpark(parked, cell)),
        None => {
            hub.counters.park_held();
            Ok(())
        }
    }
}

/// Takes an ending session out of the alarm clock's list, so that its cell goes at once.
pub(super) fn unlist(cell: &Arc<Cell>, hub: &crate::core::hub::Hub) {
    Alarms::of(hub).unlist(cell);
}

impl Connection {
    /// The connection without its buffers, if it is between frames with nothing to write.
    #[allow(
        clippy::result_large_err,
        reason = "handed back by value: parking moves it whole, once per idle period"
    )]
    fn into_parked(mut self) -> Result<Parked, Self> {
        // Handler calls in flight under concurrent message handling hold permits of the
        // session's semaphore: the session parks once they are back (and the semaphore is
        // made again at the next call), so the bound holds across a park.
        let handlers_in_flight = self
            .in_flight
            .as_ref()
            .is_some_and(|permits| permits.available_permits() < MAX_CONCURRENT_HANDLERS);
        if !self.batch.is_empty() || handlers_in_flight {
            return Err(self);
        }
        // Let go of what the last burst grew. The timer goes too: the hub's alarm clock wakes
        // the session for its next ping or pong deadline (a parked session has no park check
        // to make).
        self.session.outbox().shrink();
        if let Some(deflate) = &mut self.deflate {
            deflate.shrink();
        }
        let Self {
            socket,
            session,
            batch,
            timer,
            next_ping,
            pong_deadline,
            rate_limit,
            in_flight,
            deflate,
            turn,
            cell,
            parking,
            quiet_checks,
            next_check,
            park_refused,
            guards,
        } = self;
        match socket.park() {
            Ok(socket) => Ok(Parked {
                socket,
                session,
                next_ping,
                pong_deadline,
                rate_limit,
                deflate,
                guards,
            }),
            Err(socket) => Err(Self {
                socket,
                session,
                batch,
                timer,
                next_ping,
                pong_deadline,
                rate_limit,
                in_flight,
                deflate,
                turn,
                cell,
                parking,
                quiet_checks,
                next_check,
                park_refused,
                guards,
            }),
        }
    }

    /// The connection of a parked session, woken (its park check is set when its task runs:
    /// the clock may not be at hand on the waking thread).
    fn unpark(parked: Parked, cell: Arc<Cell>) -> Self {
        let config = &parked.session.hub().config;
        let max_message = config.max_message_size;
        // It parked, so the configuration lets it.
        let parking = Parking::of(config);
        Self {
            socket: Socket::unpark(parked.socket, max_message),
            session: parked.session,
            batch: VecDeque::new(),
            // Made when its task runs (`serve`): a waker's thread may have no clock.
            timer: None,
            next_ping: parked.next_ping,
            pong_deadline: parked.pong_deadline,
            rate_limit: parked.rate_limit,
            in_flight: None,
            deflate: parked.deflate,
            turn: 0,
            cell: Some(cell),
            parking,
            // It parked quiet, and is quiet until traffic says otherwise.
            quiet_checks: QUIET_TO_PARK,
            next_check: parked.next_ping,
            park_refused: false,
            guards: parked.guards,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cell is what an idle session costs instead of its task: it must stay small.
    #[test]
    fn a_parked_session_is_small() {
        let cell = std::mem::size_of::<Cell>();
        // With its `Arc` header, 192 bytes: one of mimalloc's size classes.
        assert!(cell <= 176, "the parked cell grew to {cell} bytes");
    }
}
