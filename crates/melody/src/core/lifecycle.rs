//! A hub's life: open, closed (no new sessions, no sends, every session told to close), and the
//! drain of a graceful shutdown. Also the connection slots of `Config::max_connections` and the
//! count of live session tasks that shutdown waits on.

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::sync::Notify;

use super::hub::Hub;
use crate::protocol::close::{CloseCode, CloseFrame};

#[derive(Default)]
pub(crate) struct Lifecycle {
    closed: AtomicBool,
    close_frame: OnceLock<CloseFrame>,
    /// Connections counted against `Config::max_connections` (upgrading, live, SSE streams).
    slots: AtomicUsize,
    /// Session tasks alive (upgrading, serving or closing), for `shutdown`.
    tasks: AtomicUsize,
    /// Woken when `tasks` drops to 0.
    idle: Notify,
    /// Set when a shutdown's drain timeout expires: every session task stops at once.
    aborting: AtomicBool,
}

impl Lifecycle {
    /// A counted session task has ended (see [`TaskGuard`]).
    pub(crate) fn task_ended(&self) {
        if self.tasks.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Marks the hub closed with this frame; `false` when it already was.
    pub(crate) fn close(&self, frame: CloseFrame) -> bool {
        if self.close_frame.set(frame).is_err() {
            return false;
        }
        self.closed.store(true, Ordering::Release);
        true
    }

    /// The frame sessions get when the hub closes (1001 unless the closer chose another).
    pub(crate) fn close_frame(&self) -> CloseFrame {
        self.close_frame
            .get()
            .cloned()
            .unwrap_or_else(|| CloseFrame::new(CloseCode::GOING_AWAY, ""))
    }

    pub(crate) fn is_aborting(&self) -> bool {
        self.aborting.load(Ordering::Acquire)
    }

    pub(crate) fn tasks(&self) -> usize {
        self.tasks.load(Ordering::Acquire)
    }

    /// Waits until no session task is left.
    pub(crate) async fn wait_idle(&self) {
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.tasks() == 0 {
                return;
            }
            idle.await;
        }
    }

    /// Waits up to `drain` for the session tasks to end; `false` when some are left.
    pub(crate) async fn drain(&self, drain: Duration) -> bool {
        tokio::time::timeout(drain, self.wait_idle()).await.is_ok()
    }

    /// From now on every session task stops at once.
    pub(crate) fn abort(&self) {
        self.aborting.store(true, Ordering::Release);
    }
}

/// A connection slot under `Config::max_connections`, held from the upgrade until the session
/// (or the SSE stream) ends.
pub struct Slot(Option<Arc<Hub>>);

impl Slot {
    /// Takes a slot, or `None` when the hub is full.
    pub(crate) fn acquire(hub: &Arc<Hub>) -> Option<Self> {
        let max = hub.config.max_connections;
        if max == 0 {
            return Some(Self(None));
        }
        let taken = hub.lifecycle.slots.fetch_add(1, Ordering::AcqRel);
        let slot = Self(Some(hub.clone()));
        (taken < max).then_some(slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(hub) = &self.0 {
            hub.lifecycle.slots.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Slot")
    }
}

/// Counts a session task from its spawn to its end, waking `shutdown` when the last one ends.
/// `None` once handed over (see [`TaskGuard::hand_over`]).
pub(crate) struct TaskGuard(Option<Arc<Hub>>);

impl TaskGuard {
    pub(crate) fn new(hub: Arc<Hub>) -> Self {
        hub.lifecycle.tasks.fetch_add(1, Ordering::AcqRel);
        Self(Some(hub))
    }

    /// Stops counting here: the caller ends the count with [`Lifecycle::task_ended`] (a
    /// session's registration does, and so does not keep a second pointer to the hub).
    pub(crate) fn hand_over(mut self) {
        self.0 = None;
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if let Some(hub) = &self.0 {
            hub.lifecycle.task_ended();
        }
    }
}
