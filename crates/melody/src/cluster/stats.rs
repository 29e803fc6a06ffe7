//! The cluster's counters: [`ClusterStats`], and the `melody_cluster_*` metrics with the
//! `metrics` feature (described and present at zero from the cluster's attachment).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A snapshot of a cluster's counters, from [`Cluster::stats`](super::Cluster::stats).
///
/// With the `metrics` feature the same figures go to the `metrics` facade as
/// `melody_cluster_sent_total`, `melody_cluster_received_total`,
/// `melody_cluster_dropped_total`, `melody_cluster_errors_total` and
/// `melody_cluster_reconnects_total`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct ClusterStats {
    /// Frames queued for the other nodes.
    pub sent: u64,
    /// Frames received from other nodes and delivered here.
    pub received: u64,
    /// Frames lost for the other nodes: dropped on a full queue, or in a batch the driver
    /// could not send.
    pub dropped: u64,
    /// Failures: frames lost, lost broker connections, frames that did not decode.
    pub errors: u64,
    /// Times the driver reconnected to its broker.
    pub reconnects: u64,
}

#[derive(Default)]
pub(crate) struct ClusterCounters {
    sent: AtomicU64,
    received: AtomicU64,
    dropped: AtomicU64,
    errors: AtomicU64,
    reconnects: AtomicU64,
}

#[cfg(feature = "metrics")]
const SERIES: [(&str, &str); 5] = [
    (
        "melody_cluster_sent_total",
        "frames queued for the other nodes",
    ),
    (
        "melody_cluster_received_total",
        "frames received from other nodes",
    ),
    (
        "melody_cluster_dropped_total",
        "frames lost for the other nodes",
    ),
    ("melody_cluster_errors_total", "cluster failures"),
    (
        "melody_cluster_reconnects_total",
        "times the driver reconnected to its broker",
    ),
];

impl ClusterCounters {
    pub(crate) fn new() -> Self {
        #[cfg(feature = "metrics")]
        for (name, help) in SERIES {
            metrics::describe_counter!(name, metrics::Unit::Count, help);
            metrics::counter!(name).increment(0);
        }
        Self::default()
    }

    fn add(counter: &AtomicU64, _series: usize, n: u64) {
        counter.fetch_add(n, Relaxed);
        #[cfg(feature = "metrics")]
        metrics::counter!(SERIES[_series].0).increment(n);
    }

    pub(crate) fn sent(&self) {
        Self::add(&self.sent, 0, 1);
    }

    pub(crate) fn received(&self) {
        Self::add(&self.received, 1, 1);
    }

    pub(crate) fn dropped(&self) {
        Self::add(&self.dropped, 2, 1);
    }

    pub(crate) fn lost(&self, frames: usize) {
        Self::add(&self.dropped, 2, frames as u64);
    }

    pub(crate) fn error(&self) {
        Self::add(&self.errors, 3, 1);
    }

    pub(crate) fn reconnected(&self) {
        Self::add(&self.reconnects, 4, 1);
    }

    pub(crate) fn snapshot(&self) -> ClusterStats {
        ClusterStats {
            sent: self.sent.load(Relaxed),
            received: self.received.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            errors: self.errors.load(Relaxed),
            reconnects: self.reconnects.load(Relaxed),
        }
    }
}
