//! The SSE plug-in's counters: [`SseStats`], and the `melody_sse_*` metrics with the `metrics`
//! feature (described and present at zero from the plug-in's attachment).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A snapshot of the SSE plug-in's counters, from [`Sse::stats`](super::Sse::stats).
///
/// With the `metrics` feature the same figures go to the `metrics` facade:
///
/// | metric | kind | meaning |
/// |---|---|---|
/// | `melody_sse_subscribers` | gauge | SSE subscribers connected |
/// | `melody_sse_events_total` | counter | events queued to subscribers |
/// | `melody_sse_events_dropped_total` | counter | events dropped on a full queue |
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct SseStats {
    /// Subscribers connected now.
    pub subscribers: u64,
    /// Events queued to subscribers.
    pub events: u64,
    /// Events dropped because a subscriber's queue was full.
    pub dropped: u64,
}

#[derive(Default)]
pub(crate) struct SseCounters {
    subscribers: AtomicU64,
    events: AtomicU64,
    dropped: AtomicU64,
}

#[cfg(feature = "metrics")]
const SUBSCRIBERS: &str = "melody_sse_subscribers";
#[cfg(feature = "metrics")]
const EVENTS: &str = "melody_sse_events_total";
#[cfg(feature = "metrics")]
const DROPPED: &str = "melody_sse_events_dropped_total";

impl SseCounters {
    pub(crate) fn new() -> Self {
        #[cfg(feature = "metrics")]
        {
            use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};
            describe_gauge!(SUBSCRIBERS, Unit::Count, "SSE subscribers connected now");
            describe_counter!(EVENTS, Unit::Count, "SSE events queued to subscribers");
            describe_counter!(
                DROPPED,
                Unit::Count,
                "SSE events dropped because a subscriber's queue was full"
            );
            gauge!(SUBSCRIBERS).increment(0.0);
            counter!(EVENTS).increment(0);
            counter!(DROPPED).increment(0);
        }
        Self::default()
    }

    pub(crate) fn subscribed(&self) {
        self.subscribers.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        metrics::gauge!(SUBSCRIBERS).increment(1.0);
    }

    pub(crate) fn unsubscribed(&self) {
        self.subscribers.fetch_sub(1, Relaxed);
        #[cfg(feature = "metrics")]
        metrics::gauge!(SUBSCRIBERS).decrement(1.0);
    }

    pub(crate) fn sent(&self, events: usize) {
        self.events.fetch_add(events as u64, Relaxed);
        #[cfg(feature = "metrics")]
        metrics::counter!(EVENTS).increment(events as u64);
    }

    pub(crate) fn dropped(&self) {
        self.dropped.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        metrics::counter!(DROPPED).increment(1);
    }

    pub(crate) fn snapshot(&self) -> SseStats {
        SseStats {
            subscribers: self.subscribers.load(Relaxed),
            events: self.events.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
        }
    }
}
