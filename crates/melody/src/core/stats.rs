//! Counters of a hub: sessions, traffic, drops and refusals. Read them with [`Melody::stats`];
//! with the `metrics` feature the same figures also go to the `metrics` facade
//! (`core/metrics.rs`).

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};

#[cfg(feature = "metrics")]
use super::metrics;
use super::{
    hub::Melody,
    striped::{StripedTraffic, Traffic},
};

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
    pub(crate) const ALL: [Self; 8] = [
        Self::Origin,
        Self::Auth,
        Self::MaxConnections,
        Self::RateLimit,
        Self::FrameRate,
        Self::TooBig,
        Self::BadUtf8,
        Self::Protocol,
    ];

    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn label(self) -> &'static str {
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
pub(crate) struct Counters {
    connects: AtomicU64,
    /// Sessions parked now, and parks ever (see `Config::park_idle_after`).
    parked: AtomicUsize,
    parks: AtomicU64,
    /// Messages and bytes in and out: added to by every read and write of every session.
    traffic: StripedTraffic,
    /// Payload bytes compression kept off the wire, negative when it added some (a message
    /// compressed with context that grew). Only sessions that compress touch it: writing
    /// uncompressed costs no extra atomic.
    wire_bytes_saved: AtomicI64,
    compressions: AtomicU64,
    dropped: AtomicU64,
    rejected: [AtomicU64; Reason::ALL.len()],
}

impl Counters {
    pub(crate) fn new() -> Self {
        #[cfg(feature = "metrics")]
        metrics::register();
        Self {
            connects: AtomicU64::new(0),
            parked: AtomicUsize::new(0),
            parks: AtomicU64::new(0),
            traffic: StripedTraffic::new(),
            wire_bytes_saved: AtomicI64::new(0),
            compressions: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            rejected: Default::default(),
        }
    }

    pub(crate) fn connected(&self) {
        self.connects.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        metrics::connected();
    }

    /// A session parked (its task ends; see `transport/connection/park.rs`).
    pub(crate) fn parked(&self) {
        self.parked.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        metrics::parked();
    }

    /// A park held (nothing took the session back as it parked): counted in `parks`.
    pub(crate) fn park_held(&self) {
        self.parks.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        metrics::park_held();
    }

    /// A parked session woke (its task is spawned again, or it ends).
    pub(crate) fn unparked(&self) {
        self.parked.fetch_sub(1, Relaxed);
        #[cfg(feature = "metrics")]
        metrics::unparked();
    }

    pub(crate) fn disconnected(&self) {
        #[cfg(feature = "metrics")]
        metrics::disconnected();
    }

    pub(crate) fn received(&self, bytes: usize) {
        self.traffic
            .add((Traffic::MessagesIn, 1), (Traffic::BytesIn, bytes as u64));
        #[cfg(feature = "metrics")]
        metrics::received(bytes);
    }

    /// `wire_bytes`: the payload bytes as written, compressed where they were.
    /// Messages written: `bytes` of payload, of which compression kept `saved` off the wire.
    pub(crate) fn sent(&self, messages: usize, bytes: usize, saved: i64) {
        self.traffic.add(
            (Traffic::MessagesOut, messages as u64),
            (Traffic::BytesOut, bytes as u64),
        );
        if saved != 0 {
            self.wire_bytes_saved.fetch_add(saved, Relaxed);
        }
        #[cfg(feature = "metrics")]
        metrics::sent(
            messages,
            bytes,
            usize::try_from(bytes as i64 - saved).unwrap_or(0),
        );
    }

    /// A payload was compressed (permessage-deflate).
    pub(crate) fn compressed(&self) {
        self.compressions.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        metrics::compressed();
    }

    pub(crate) fn dropped(&self) {
        self.dropped.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        metrics::dropped();
    }

    pub(crate) fn rejected(&self, reason: Reason) {
        tracing::debug!(?reason, "rejected");
        self.rejected[reason as usize].fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        metrics::rejected(reason);
    }

    fn rejections(&self, reason: Reason) -> u64 {
        self.rejected[reason as usize].load(Relaxed)
    }
}

/// A snapshot of a hub's counters, from [`Melody::stats`]. Each field is read on its own, so
/// the snapshot is not atomic across fields. Plug-ins count their own traffic (SSE events,
/// cluster deliveries): see their `stats`.
///
/// With the `metrics` feature, the same figures go to the [`metrics`](https://docs.rs/metrics)
/// facade, each series described and present (at zero) from the hub's creation:
///
/// | metric | kind | meaning |
/// |---|---|---|
/// | `melody_sessions` | gauge | connected sessions |
/// | `melody_connects_total` | counter | sessions ever connected |
/// | `melody_sessions_parked` | gauge | sessions parked now (idle, without a task) |
/// | `melody_parks_total` | counter | times a session parked |
/// | `melody_messages_received_total` | counter | data messages received |
/// | `melody_received_bytes_total` | counter | payload bytes received |
/// | `melody_messages_sent_total` | counter | data messages written and flushed |
/// | `melody_sent_bytes_total` | counter | payload bytes written and flushed |
/// | `melody_sent_wire_bytes_total` | counter | payload bytes as written: compressed where they were |
/// | `melody_compressions_total` | counter | payloads run through the compressor (a shared-mode broadcast counts once) |
/// | `melody_messages_dropped_total` | counter | messages dropped on a full queue |
/// | `melody_rejections_total{reason}` | counter | refusals; `reason` is one of the [`Rejections`] field names |
///
/// They are process-wide: several hubs in one process add up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// Sessions connected now.
    pub connected: usize,
    /// Sessions ever connected.
    pub connects: u64,
    /// Sessions parked now: idle, with no task of their own
    /// ([`Config::park_idle_after`](crate::Config::park_idle_after)). Included in `connected`.
    pub parked: usize,
    /// Times a session parked: a busy session does not park, so a fast rise means sessions
    /// that wake and park again (each wake spawns a task).
    pub parks: u64,
    /// Data messages received.
    pub messages_in: u64,
    /// Payload bytes received.
    pub bytes_in: u64,
    /// Data messages written and flushed.
    pub messages_out: u64,
    /// Payload bytes written and flushed, before compression.
    pub bytes_out: u64,
    /// Payload bytes written and flushed as they went on the wire: compressed where they were
    /// (permessage-deflate), so `bytes_out / wire_bytes_out` is the compression ratio.
    pub wire_bytes_out: u64,
    /// Payloads run through the compressor (permessage-deflate), including those that did not
    /// get smaller and went out as they were. With
    /// [`Compression::shared`](crate::Compression::shared) a message sent to many sessions
    /// counts once; with `dedicated`, once per session. A measure of compression work.
    pub compressions: u64,
    /// Messages dropped because a session's queue was full.
    pub dropped: u64,
    /// Refusals, by reason.
    pub rejections: Rejections,
}

/// Refusals by reason: upgrades refused (origin, auth, max connections) and sessions closed for
/// what they sent (rate limits, too big, bad UTF-8, protocol violation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Rejections {
    /// Upgrades refused by the origin check (403).
    pub origin: u64,
    /// Upgrades refused by the auth hook, or because it did not answer in time.
    pub auth: u64,
    /// Upgrades and SSE streams refused because the hub was full (503).
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
        let counters = &self.hub.counters;
        let read = |counter: &AtomicU64| counter.load(Relaxed);
        Stats {
            connected: if self.hub.is_closed() {
                0
            } else {
                self.hub.registry.len()
            },
            connects: read(&counters.connects),
            parked: counters.parked.load(Relaxed),
            parks: read(&counters.parks),
            messages_in: counters.traffic.get(Traffic::MessagesIn),
            bytes_in: counters.traffic.get(Traffic::BytesIn),
            messages_out: counters.traffic.get(Traffic::MessagesOut),
            bytes_out: counters.traffic.get(Traffic::BytesOut),
            wire_bytes_out: counters
                .traffic
                .get(Traffic::BytesOut)
                .saturating_add_signed(-counters.wire_bytes_saved.load(Relaxed)),
            compressions: read(&counters.compressions),
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
        }
    }
}
