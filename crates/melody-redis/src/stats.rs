//! The driver's own counters, beside the cluster's (`Cluster::stats`).

use std::{
    sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    time::Duration,
};

/// A snapshot of one [`RedisDriver`](crate::RedisDriver)'s counters
/// ([`RedisDriver::stats`](crate::RedisDriver::stats)). The cluster counts too
/// (`Cluster::stats`: frames sent, received, dropped, errors, reconnects): these add what only
/// Redis shows — what it accepted, what nobody heard, the publish round trip.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisStats {
    /// Frames Redis accepted (PUBLISH answered).
    pub published: u64,
    /// Frames lost because PUBLISH failed (a broker outage). The cluster reports each batch.
    pub publish_errors: u64,
    /// Frames Redis accepted but no subscriber heard, not even this node's own: published
    /// while every subscription connection was still re-subscribing after a broker restart.
    pub unheard: u64,
    /// Frames received from the broker (this node's own included, before the cluster skips
    /// them).
    pub received: u64,
    /// Times the subscription connection was re-established after a loss.
    pub reconnects: u64,
    /// Presence heartbeats that could not be written.
    pub heartbeat_errors: u64,
    /// Round trip of the last pipeline of PUBLISHes.
    pub last_publish_lag: Duration,
    /// The longest round trip seen.
    pub max_publish_lag: Duration,
    /// Whether the subscription connection is up now.
    pub subscribed: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) published: AtomicU64,
    pub(crate) publish_errors: AtomicU64,
    pub(crate) unheard: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) heartbeat_errors: AtomicU64,
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
            unheard: self.unheard.load(Relaxed),
            received: self.received.load(Relaxed),
            reconnects: self.reconnects.load(Relaxed),
            heartbeat_errors: self.heartbeat_errors.load(Relaxed),
            last_publish_lag: Duration::from_micros(self.last_lag_us.load(Relaxed)),
            max_publish_lag: Duration::from_micros(self.max_lag_us.load(Relaxed)),
            subscribed: self.subscribed.load(Relaxed),
        }
    }
}
