//! The driver seam: what a backend (Redis, NATS, the in-process [`LocalBus`](super::LocalBus))
//! implements, and the [`Link`] through which it hands what other nodes sent to its hub.
//!
//! The cluster owns everything else: the bounded queue in front of the driver, dropping and
//! reporting what does not fit, batching, counting, starting once, decoding what arrives and
//! skipping this node's own frames. A driver only moves bytes.

use std::{fmt, future::Future, pin::Pin, sync::Weak};

use bytes::Bytes;

use super::{
    ClusterShared,
    wire::{NodeId, NodePresence},
};
use crate::fanout::Target;

/// A driver's error: any error, boxed.
pub type DriverError = Box<dyn std::error::Error + Send + Sync>;

/// A boxed future, as driver methods return them.
pub type DriverFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, DriverError>> + Send + 'a>>;

/// One frame to send to the other nodes, with its target so that a driver can route by topic
/// (a channel or subject per topic).
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// Whom the frame is for.
    pub target: Target,
    /// The encoded [`Frame`](super::Frame).
    pub frame: Bytes,
}

/// A transport between the nodes of a cluster.
///
/// ```
/// use melody::cluster::{Driver, DriverFuture, Link, Outgoing};
///
/// /// A driver that loses everything: the smallest that compiles.
/// struct Void;
///
/// impl Driver for Void {
///     fn start(&self, _link: Link) {}
///     fn publish<'a>(&'a self, _batch: &'a [Outgoing]) -> DriverFuture<'a, ()> {
///         Box::pin(async { Ok(()) })
///     }
/// }
/// ```
pub trait Driver: Send + Sync + 'static {
    /// Starts receiving for one node: from now on, every frame another node publishes goes to
    /// `link.receive(..)`. Called once, when the cluster attaches; spawn the receiving tasks
    /// here and report failures (a lost broker connection) with [`Link::error`].
    ///
    /// The subscription must already be active on the broker when the driver is handed to
    /// [`Cluster::attach`](super::Cluster::attach) (connect and subscribe in the driver's
    /// constructor, and wait for the broker to confirm): a frame another node publishes right
    /// after `attach` returns must reach this one. A client-side flush is not a confirmation;
    /// a round trip to the broker is.
    fn start(&self, link: Link);

    /// Sends frames to the other nodes, in order. The cluster awaits one batch at a time, so a
    /// driver may pipeline a batch; an error loses the whole batch (it is counted and
    /// reported). A frame the broker refuses on its own (too large) must not cost the frames
    /// after it: skip it, report it with [`Link::dropped`], and send the rest.
    fn publish<'a>(&'a self, batch: &'a [Outgoing]) -> DriverFuture<'a, ()>;

    /// Every node's presence (each publishes [`Link::local_presence`] snapshots), when the
    /// driver keeps it. `None` (the default): presence is this node's only.
    fn presence(&self) -> Option<DriverFuture<'_, Vec<NodePresence>>> {
        None
    }

    /// The cluster is going away: stop the tasks `start` spawned.
    fn stop(&self) {}
}

/// A driver's way back into its node: [`Driver::start`] gets one.
///
/// It holds its cluster weakly (the cluster owns the driver): once the hub is gone, every call
/// does nothing and [`Link::is_attached`] says so, so a driver's tasks can stop.
#[derive(Clone)]
pub struct Link {
    pub(crate) shared: Weak<ClusterShared>,
    pub(crate) node: NodeId,
}

impl Link {
    /// This node's id.
    #[must_use]
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// Hands a frame received from the broker to this node: decoded, skipped when this node
    /// sent it, else delivered to its local sessions and sinks (never sent on again). Returns
    /// how many recipients it reached here; a frame that does not decode is counted and
    /// reported, never a panic.
    pub fn receive(&self, frame: &[u8]) -> usize {
        self.shared
            .upgrade()
            .map_or(0, |shared| shared.receive(frame))
    }

    /// Reports a failure (a lost connection, a publish that failed): counted, logged, passed to
    /// the cluster's error handler.
    pub fn error(&self, error: &(dyn std::error::Error + 'static)) {
        match self.shared.upgrade() {
            Some(shared) => shared.error(error),
            None => tracing::debug!(node = %self.node, %error, "cluster error after detach"),
        }
    }

    /// Reports frames of a batch that the driver could not send while it sent the rest (a frame
    /// larger than the broker accepts): counted as dropped, and `error` reported as by
    /// [`Link::error`].
    pub fn dropped(&self, frames: usize, error: &(dyn std::error::Error + 'static)) {
        match self.shared.upgrade() {
            Some(shared) => {
                shared.counters.lost(frames);
                shared.error(error);
            }
            None => tracing::debug!(node = %self.node, %error, "cluster error after detach"),
        }
    }

    /// Records that the driver reconnected to its broker.
    pub fn reconnected(&self) {
        if let Some(shared) = self.shared.upgrade() {
            shared.reconnected();
        }
    }

    /// This node's sessions and topic members right now, for presence snapshots.
    #[must_use]
    pub fn local_presence(&self) -> NodePresence {
        match self.shared.upgrade() {
            Some(shared) => shared.local_presence(),
            None => NodePresence {
                node: self.node,
                ..NodePresence::default()
            },
        }
    }

    /// Whether the hub still exists; a driver can stop its tasks when not.
    #[must_use]
    pub fn is_attached(&self) -> bool {
        self.shared
            .upgrade()
            .is_some_and(|shared| shared.melody.upgrade().is_some())
    }
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link").field("node", &self.node()).finish()
    }
}
