//! One alarm clock for the parked sessions of a hub. A parked session gives up its own timer
//! (a boxed tokio `Sleep`, 112 bytes with its allocation) and is listed here under the tick of
//! its next deadline, a ping due or a pong overdue; one task sleeps until the earliest listed
//! tick and wakes the sessions listed under it. A listing is a weak pointer in the tick's list,
//! 8 bytes; sessions that connected together share ticks.
//!
//! Ticks are [`TICK`] long and a deadline is rounded up to the end of its tick: a parked
//! session's ping is sent, and its pong deadline enforced, up to one tick late, never early.
//!
//! The clock's task runs only while something is listed: it ends when its list is empty, and
//! the next park starts another on the runtime of the session that parks. A hub may serve
//! sessions of several runtimes: when the clock's runtime drops its task (shutting down), the
//! clock moves to the runtime of a session still listed, and any later park starts it again
//! if that failed too. A session listed under a tick
//! that passed while it was awake, or that listed itself again under another tick, is skipped:
//! each cell remembers the one tick it is listed under. A session that ends takes itself out of
//! the list at once.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex, MutexGuard, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    runtime::{self, Handle},
    sync::Notify,
    time::{Instant, sleep_until},
};

use super::park::Cell;
use crate::core::hub::Hub;

/// How finely the clock tells deadlines apart.
pub(super) const TICK: Duration = Duration::from_millis(50);

/// A cell's tick when it is not listed.
const UNLISTED: u64 = u64::MAX;

/// A hub's clock for parked sessions (see the module doc).
pub(super) struct Alarms {
    /// Tick 0 starts here.
    epoch: Instant,
    state: Mutex<State>,
    /// Tells the running task that an earlier tick was listed.
    earlier: Notify,
}

#[derive(Default)]
struct State {
    ticks: BTreeMap<u64, Vec<Weak<Cell>>>,
    /// Whether a task runs the clock.
    running: bool,
}

/// Where a cell is listed: the tick, or [`UNLISTED`]. Kept by the cell.
pub(super) struct Listing(AtomicU64);

impl Listing {
    pub(super) const fn new() -> Self {
        Self(AtomicU64::new(UNLISTED))
    }
}

impl Alarms {
    /// The hub's clock, made by the first session that parks.
    pub(super) fn of(hub: &Hub) -> Arc<Self> {
        hub.plugins.state_or_insert_with(|| {
            Arc::new(Self {
                epoch: Instant::now(),
                state: Mutex::default(),
                earlier: Notify::new(),
            })
        })
    }

    /// Lists `cell` to be woken at `deadline` (at the end of its tick), unless it is listed
    /// under that tick already, and starts the clock if it is not running. Runs in a task of
    /// the session's runtime.
    pub(super) fn list(self: &Arc<Self>, cell: &Arc<Cell>, deadline: Instant) {
        let tick = self.tick_of(deadline);
        let listed_already = cell.listing().0.swap(tick, Ordering::SeqCst) == tick;
        let mut state = self.lock();
        let earlier = !listed_already
            && state
                .ticks
                .first_key_value()
                .is_none_or(|(&first, _)| tick < first);
        if !listed_already {
            state
                .ticks
                .entry(tick)
                .or_default()
                .push(Arc::downgrade(cell));
        }
        if !state.running {
            state.running = true;
            drop(state);
            self.spawn_on(&Handle::current());
        } else if earlier {
            drop(state);
            self.earlier.notify_one();
        }
    }

    /// Starts the clock on `runtime` unless it runs.
    fn start(self: &Arc<Self>, runtime: &Handle) {
        let mut state = self.lock();
        if !state.running {
            state.running = true;
            drop(state);
            self.spawn_on(runtime);
        }
    }

    /// Spawns the clock's task (`running` is set). Its guard is made first and moved into the
    /// task, so that a task the runtime drops before it ever runs (a runtime shutting down
    /// refuses new tasks) still says the clock stopped.
    fn spawn_on(self: &Arc<Self>, runtime: &Handle) {
        let running = Running {
            alarms: self.clone(),
            runtime: runtime.id(),
            ended: false,
        };
        runtime.spawn(run(running));
    }

    /// Takes an ending session's cell out of the list.
    pub(super) fn unlist(&self, cell: &Arc<Cell>) {
        let tick = cell.listing().0.swap(UNLISTED, Ordering::SeqCst);
        if tick == UNLISTED {
            return;
        }
        let mut state = self.lock();
        let Some(listed) = state.ticks.get_mut(&tick) else {
            return;
        };
        let weak = Arc::downgrade(cell);
        listed.retain(|other| !other.ptr_eq(&weak));
        if listed.is_empty() {
            state.ticks.remove(&tick);
            // The task sleeps until this tick: with nothing listed it ends now, not then.
            if state.ticks.is_empty() {
                drop(state);
                self.earlier.notify_one();
            }
        }
    }

    /// The tick whose end is the first at or after `at`.
    fn tick_of(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.epoch).as_nanos();
        let tick = since.div_ceil(TICK.as_nanos());
        u64::try_from(tick).unwrap_or(UNLISTED - 1)
    }

    /// How many ticks have ended at `at`.
    fn ticks_ended(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(since / TICK.as_nanos()).unwrap_or(UNLISTED - 1)
    }

    /// When `tick` ends.
    fn end_of(&self, tick: u64) -> Instant {
        let nanos = u128::from(tick) * TICK.as_nanos();
        let nanos = u64::try_from(nanos).unwrap_or(u64::MAX);
        self.epoch
            .checked_add(Duration::from_nanos(nanos))
            .unwrap_or_else(|| self.epoch + Duration::from_secs(86_400 * 365 * 30))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Never held across user code: a poisoned lock holds consistent data.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The clock's task: sleeps until the earliest listed tick ends and wakes what is listed under
/// the ticks that ended; ends when nothing is listed.
async fn run(mut running: Running) {
    let alarms = running.alarms.clone();
    loop {
        let next = {
            let mut state = alarms.lock();
            let Some((&next, _)) = state.ticks.first_key_value() else {
                // Under the lock, as `list` reads it: a listing after this starts a task.
                state.running = false;
                running.ended = true;
                return;
            };
            next
        };
        tokio::select! {
            () = sleep_until(alarms.end_of(next)) => {}
            () = alarms.earlier.notified() => continue,
        }
        let first_to_come = alarms.ticks_ended(Instant::now()).saturating_add(1);
        let due: Vec<(u64, Vec<Weak<Cell>>)> = {
            let mut state = alarms.lock();
            let later = state.ticks.split_off(&first_to_come);
            std::mem::replace(&mut state.ticks, later)
                .into_iter()
                .collect()
        };
        for (tick, cells) in due {
            for cell in cells.iter().filter_map(Weak::upgrade) {
                // Listed since under another tick, or taken out: not this tick's to wake.
                let listing = &cell.listing().0;
                let this_tick =
                    listing.compare_exchange(tick, UNLISTED, Ordering::SeqCst, Ordering::SeqCst);
                if this_tick.is_ok() {
                    cell.alarm();
                }
            }
        }
    }
}

/// The running clock's guard, owned by its task.
struct Running {
    alarms: Arc<Alarms>,
    /// The runtime the task runs on.
    runtime: runtime::Id,
    /// The task ended by itself (nothing listed), having said so under the lock.
    ended: bool,
}

thread_local! {
    /// Set while a dropped clock starts again elsewhere: a task refused there too is dropped
    /// inside that call, and must not try again (two runtimes shutting down would hand the
    /// clock back and forth).
    static MOVING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl Drop for Running {
    /// Dropped by its runtime (shutting down): the clock stops, and moves to the runtime of a
    /// session still listed, if there is one on another runtime.
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let listed: Vec<Weak<Cell>> = {
            let mut state = self.alarms.lock();
            state.running = false;
            state.ticks.values().flatten().cloned().collect()
        };
        if MOVING.get() {
            return;
        }
        // Upgraded outside the lock: dropping the last handle of a cell ends its session.
        let elsewhere = listed
            .iter()
            .filter_map(Weak::upgrade)
            .map(|cell| cell.runtime().clone())
            .find(|runtime| runtime.id() != self.runtime);
        if let Some(runtime) = elsewhere {
            MOVING.set(true);
            self.alarms.start(&runtime);
            MOVING.set(false);
        }
    }
}
