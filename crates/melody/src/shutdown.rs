//! Graceful shutdown: close every session, let queued messages and closing handshakes finish
//! within a drain timeout, then stop what is left.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use crate::{Melody, melody::Hub};

impl Melody {
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
        let hub = self.hub();
        if tokio::time::timeout(drain, wait_idle(hub)).await.is_ok() {
            return 0;
        }
        let remaining = hub.tasks.load(Ordering::Acquire);
        tracing::debug!(remaining, "drain timeout: dropping the sessions left");
        // Sessions that register from now on abort themselves (see `Registered::new`).
        hub.aborting.store(true, Ordering::Release);
        hub.registry.for_each(|session| session.outbox().abort());
        wait_idle(hub).await;
        remaining
    }
}

/// Waits until no session task is left.
async fn wait_idle(hub: &Arc<Hub>) {
    loop {
        let idle = hub.idle.notified();
        tokio::pin!(idle);
        idle.as_mut().enable();
        if hub.tasks.load(Ordering::Acquire) == 0 {
            return;
        }
        idle.await;
    }
}

/// Counts a session task from its spawn to its end, waking `shutdown` when the last one ends.
pub(crate) struct TaskGuard(Arc<Hub>);

impl TaskGuard {
    pub(crate) fn new(hub: Arc<Hub>) -> Self {
        hub.tasks.fetch_add(1, Ordering::AcqRel);
        Self(hub)
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.0.tasks.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}
