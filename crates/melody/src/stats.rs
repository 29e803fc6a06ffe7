//! Counters of a hub: sessions, traffic, drops and refusals. Read them with [`Melody::stats`];
//! with the `metrics` feature the same figures also go to the `metrics` facade.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::Melody;

/// Why a connection or a session was refused; the names are the `reason` label of
/// `melody_rejections_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    Origin,
    Auth,
    MaxConnections,
    RateLimit,
    FrameRate,
    TooBig,
    BadUtf8,
    Protocol,
}

impl Reason {
    #[cfg(feature = "metrics")]
    fn label(self) -> &'static str {
        match self {
            Self::Origin => "origin",
            Self::Auth => "auth",
            Self::MaxConnections => "max_connections",
            Self::RateLimit => "rate_limit",
            Self::FrameRate => "frame_rate",
            Self::TooBig => "too_big",
            Self::BadUtf8 => "bad_utf8",
            Self::Protocol => "protocol",
        }
    }
}

/// The live counters behind [`Stats`].
#[derive(Default)]
pub(crate) struct Counters {
    connects: AtomicU64,
    messages_in: AtomicU64,
    bytes_in: AtomicU64,
    messages_out: AtomicU64,
    bytes_out: AtomicU64,
    dropped: AtomicU64,
    rejected: [AtomicU64; 8],
    sse_subscribers: AtomicU64,
    sse_events: AtomicU64,
    sse_dropped: AtomicU64,
    backplane_sent: AtomicU64,
    backplane_received: AtomicU64,
    backplane_errors: AtomicU64,
    backplane_reconnects: AtomicU64,
}

impl Counters {
    pub(crate) fn connected(&self) {
        self.connects.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        {
            metrics::counter!("melody_connects_total").increment(1);
            metrics::gauge!("melody_sessions").increment(1.0);
        }
    }

    pub(crate) fn disconnected(&self) {
        #[cfg(feature = "metrics")]
        metrics::gauge!("melody_sessions").decrement(1.0);
    }

    pub(crate) fn received(&self, bytes: usize) {
        self.messages_in.fetch_add(1, Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Relaxed);
        #[cfg(feature = "metrics")]
        {
            metrics::counter!("melody_messages_received_total").increment(1);
            metrics::counter!("melody_bytes_received_total").increment(bytes as u64);
        }
    }

    pub(crate) fn sent(&self, messages: usize, bytes: usize) {
        self.messages_out.fetch_add(messages as u64, Relaxed);
        self.bytes_out.fetch_add(bytes as u64, Relaxed);
        #[cfg(feature = "metrics")]
        {
            metrics::counter!("melody_messages_sent_total").increment(messages as u64);
            metrics::counter!("melody_bytes_sent_total").increment(bytes as u64);
        }
    }

    pub(crate) fn dropped(&self) {
        self.dropped.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        metrics::counter!("melody_messages_dropped_total").increment(1);
    }

    pub(crate) fn rejected(&self, reason: Reason) {
        tracing::debug!(?reason, "rejected");
        self.rejected[reason as usize].fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        metrics::counter!("melody_rejections_total", "reason" => reason.label()).increment(1);
    }

    #[cfg_attr(not(feature = "sse"), allow(dead_code))]
    pub(crate) fn sse_subscribed(&self) {
        self.sse_subscribers.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        metrics::gauge!("melody_sse_subscribers").increment(1.0);
    }

    #[cfg_attr(not(feature = "sse"), allow(dead_code))]
    pub(crate) fn sse_unsubscribed(&self) {
        self.sse_subscribers.fetch_sub(1, Relaxed);
        #[cfg(feature = "metrics")]
        metrics::gauge!("melody_sse_subscribers").decrement(1.0);
    }

    #[cfg_attr(not(feature = "sse"), allow(dead_code))]
    pub(crate) fn sse_sent(&self, events: usize) {
        self.sse_events.fetch_add(events as u64, Relaxed);
        #[cfg(feature = "metrics")]
        metrics::counter!("melody_sse_events_total").increment(events as u64);
    }

    #[cfg_attr(not(feature = "sse"), allow(dead_code))]
    pub(crate) fn sse_dropped(&self) {
        self.sse_dropped.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        metrics::counter!("melody_sse_events_dropped_total").increment(1);
    }

    pub(crate) fn backplane_sent(&self) {
        self.backplane_sent.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        metrics::counter!("melody_backplane_sent_total").increment(1);
    }

    pub(crate) fn backplane_received(&self) {
        self.backplane_received.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        metrics::counter!("melody_backplane_received_total").increment(1);
    }

    pub(crate) fn backplane_error(&self) {
        self.backplane_errors.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        metrics::counter!("melody_backplane_errors_total").increment(1);
    }

    pub(crate) fn backplane_reconnected(&self) {
        self.backplane_reconnects.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        metrics::counter!("melody_backplane_reconnects_total").increment(1);
    }

    fn rejections(&self, reason: Reason) -> u64 {
        self.rejected[reason as usize].load(Relaxed)
    }
}

/// A snapshot of a hub's counters, from [`Melody::stats`]. Each field is read on its own, so
/// the snapshot is not atomic across fields.
///
/// With the `metrics` feature, the same figures go to the [`metrics`](https://docs.rs/metrics)
/// facade under these names. They are process-wide: several hubs in one process add up.
///
/// | metric | kind | meaning |
/// |---|---|---|
/// | `melody_sessions` | gauge | connected sessions |
/// | `melody_connects_total` | counter | sessions ever connected |
/// | `melody_messages_received_total` | counter | data messages received |
/// | `melody_bytes_received_total` | counter | payload bytes received |
/// | `melody_messages_sent_total` | counter | data messages written and flushed |
/// | `melody_bytes_sent_total` | counter | payload bytes written and flushed |
/// | `melody_messages_dropped_total` | counter | messages dropped on a full queue |
/// | `melody_rejections_total{reason}` | counter | refusals; `reason` is one of the [`Rejections`] field names |
/// | `melody_backplane_sent_total` | counter | deliveries published to the backplane |
/// | `melody_backplane_received_total` | counter | deliveries received from other nodes |
/// | `melody_backplane_errors_total` | counter | backplane failures |
/// | `melody_backplane_reconnects_total` | counter | backplane reconnections |
/// | `melody_sse_subscribers` | gauge | SSE subscribers connected |
/// | `melody_sse_events_total` | counter | SSE events queued to subscribers |
/// | `melody_sse_events_dropped_total` | counter | SSE events dropped on a full queue |
///
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// Sessions connected now.
    pub connected: usize,
    /// Sessions ever connected.
    pub connects: u64,
    /// Data messages received.
    pub messages_in: u64,
    /// Payload bytes received.
    pub bytes_in: u64,
    /// Data messages written and flushed.
    pub messages_out: u64,
    /// Payload bytes written and flushed.
    pub bytes_out: u64,
    /// Messages dropped because a session's queue was full.
    pub dropped: u64,
    /// Refusals, by reason.
    pub rejections: Rejections,
    /// SSE subscribers connected now (feature `sse`).
    pub sse_subscribers: u64,
    /// SSE events queued to subscribers (feature `sse`).
    pub sse_events: u64,
    /// SSE events dropped because a subscriber's queue was full (feature `sse`).
    pub sse_dropped: u64,
    /// Deliveries published to the backplane.
    pub backplane_sent: u64,
    /// Deliveries received from other nodes.
    pub backplane_received: u64,
    /// Backplane failures: publishes that failed, lost connections, undecodable deliveries.
    pub backplane_errors: u64,
    /// Times the backplane reconnected to its broker.
    pub backplane_reconnects: u64,
}

/// Refusals by reason: upgrades refused (origin, auth, max connections) and sessions closed for
/// what they sent (rate limit, too big, bad UTF-8, protocol violation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Rejections {
    /// Upgrades refused by the origin check (403).
    pub origin: u64,
    /// Upgrades refused by the auth hook.
    pub auth: u64,
    /// Upgrades refused because the hub was full (503).
    pub max_connections: u64,
    /// Sessions closed for exceeding the message rate limit (1008).
    pub rate_limit: u64,
    /// Sessions closed for exceeding the frame rate limit (1008).
    pub frame_rate: u64,
    /// Sessions closed for a message over the size limit (1009).
    pub too_big: u64,
    /// Sessions closed for invalid UTF-8 in a text message (1007).
    pub bad_utf8: u64,
    /// Sessions closed for another protocol violation (1002).
    pub protocol: u64,
}

impl Melody {
    /// A snapshot of the hub's counters.
    ///
    /// ```
    /// let melody = melody::Melody::new();
    /// let stats = melody.stats();
    /// assert_eq!(stats.connected, 0);
    /// assert_eq!(stats.rejections.auth, 0);
    /// ```
    #[must_use]
    pub fn stats(&self) -> Stats {
        let counters = &self.hub().counters;
        let read = |counter: &AtomicU64| counter.load(Relaxed);
        Stats {
            connected: self.len(),
            connects: read(&counters.connects),
            messages_in: read(&counters.messages_in),
            bytes_in: read(&counters.bytes_in),
            messages_out: read(&counters.messages_out),
            bytes_out: read(&counters.bytes_out),
            dropped: read(&counters.dropped),
            rejections: Rejections {
                origin: counters.rejections(Reason::Origin),
                auth: counters.rejections(Reason::Auth),
                max_connections: counters.rejections(Reason::MaxConnections),
                rate_limit: counters.rejections(Reason::RateLimit),
                frame_rate: counters.rejections(Reason::FrameRate),
                too_big: counters.rejections(Reason::TooBig),
                bad_utf8: counters.rejections(Reason::BadUtf8),
                protocol: counters.rejections(Reason::Protocol),
            },
            sse_subscribers: read(&counters.sse_subscribers),
            sse_events: read(&counters.sse_events),
            sse_dropped: read(&counters.sse_dropped),
            backplane_sent: read(&counters.backplane_sent),
            backplane_received: read(&counters.backplane_received),
            backplane_errors: read(&counters.backplane_errors),
            backplane_reconnects: read(&counters.backplane_reconnects),
        }
    }
}
