//! [`NatsStats`]: what only the NATS driver sees, beside the cluster's own counters.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A snapshot of one [`NatsDriver`](crate::NatsDriver)'s counters
/// ([`NatsDriver::stats`](crate::NatsDriver::stats)).
///
/// The cluster counts what every driver shares — frames sent, received and lost, failures,
/// reconnects — in [`ClusterStats`](melody::cluster::ClusterStats); these add what only this
/// backend sees.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NatsStats {
    /// Frames handed to the NATS client, on their way to the broker.
    pub published: u64,
    /// Times the client lost its connection to the broker.
    pub disconnects: u64,
    /// Presence queries of this node that waited the whole presence timeout because a node it
    /// knew did not answer (a node that crashed, or is too slow).
    pub presence_timeouts: u64,
    /// Whether the client is connected to the broker right now.
    pub connected: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    published: AtomicU64,
    disconnects: AtomicU64,
    presence_timeouts: AtomicU64,
}

impl Counters {
    pub(crate) fn published(&self) {
        self.published.fetch_add(1, Relaxed);
    }

    pub(crate) fn disconnected(&self) {
        self.disconnects.fetch_add(1, Relaxed);
    }

    pub(crate) fn presence_timed_out(&self) {
        self.presence_timeouts.fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self, connected: bool) -> NatsStats {
        NatsStats {
            published: self.published.load(Relaxed),
            disconnects: self.disconnects.load(Relaxed),
            presence_timeouts: self.presence_timeouts.load(Relaxed),
            connected,
        }
    }
}
