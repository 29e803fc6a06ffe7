//! The backplane's own counters, beside the hub's `backplane_*` stats.

use std::{
    sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    time::Duration,
};

/// A snapshot of one [`RedisBackplane`](crate::RedisBackplane)'s counters
/// ([`RedisBackplane::stats`](crate::RedisBackplane::stats)). The hub counts too
/// (`Stats::backplane_sent`, `backplane_received`, `backplane_errors`, `backplane_reconnects`):
/// these add what only the backend sees — queueing, lag, and why a delivery was lost.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisStats {
    /// Deliveries Redis accepted (PUBLISH answered).
    pub published: u64,
    /// Deliveries lost because PUBLISH failed (a broker outage). Each is also reported to the
    /// hub as a backplane error.
    pub publish_errors: u64,
    /// Deliveries dropped because the outgoing queue was full (also reported to the hub).
    pub dropped: u64,
    /// Deliveries Redis accepted but no subscriber heard, not even this node's own: published
    /// while every subscription connection was still re-subscribing after a broker restart.
    pub unheard: u64,
    /// Deliveries received from other nodes and handed to the hub.
    pub received: u64,
    /// Times the subscription connection was re-established after a loss.
    pub reconnects: u64,
    /// Presence heartbeats that could not be written.
    pub heartbeat_errors: u64,
    /// Deliveries waiting in the outgoing queue now.
    pub queued: u64,
    /// Publish lag of the last batch: from `publish` (queued) to Redis's answer.
    pub last_publish_lag: Duration,
    /// The largest publish lag seen.
    pub max_publish_lag: Duration,
    /// Whether the subscription connection is up now.
    pub subscribed: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) published: AtomicU64,
    pub(crate) publish_errors: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) unheard: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) heartbeat_errors: AtomicU64,
    pub(crate) queued: AtomicU64,
    pub(crate) last_lag_us: AtomicU64,
    pub(crate) max_lag_us: AtomicU64,
    pub(crate) subscribed: AtomicBool,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub(crate) fn lag(&self, lag: Duration) {
        let us = u64::try_from(lag.as_micros()).unwrap_or(u64::MAX);
        self.last_lag_us.store(us, Relaxed);
        self.max_lag_us.fetch_max(us, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> RedisStats {
        RedisStats {
            published: self.published.load(Relaxed),
            publish_errors: self.publish_errors.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            unheard: self.unheard.load(Relaxed),
            received: self.received.load(Relaxed),
            reconnects: self.reconnects.load(Relaxed),
            heartbeat_errors: self.heartbeat_errors.load(Relaxed),
            queued: self.queued.load(Relaxed),
            last_publish_lag: Duration::from_micros(self.last_lag_us.load(Relaxed)),
            max_publish_lag: Duration::from_micros(self.max_lag_us.load(Relaxed)),
            subscribed: self.subscribed.load(Relaxed),
        }
    }
}
