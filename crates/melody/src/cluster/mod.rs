//! One hub across many nodes, as a plug-in.
//!
//! [`Cluster::attach`] joins a hub to the other nodes that share a [`Driver`] (Redis in
//! `melody-redis`, NATS in `melody-nats`, [`LocalBus`] inside one process): from then on
//! `melody.all()`, `melody.topic(..)` and `melody.session(id)` sends reach the sessions of every
//! node, each send encoded once per node, and [`Cluster::presence`] counts across nodes.
//!
//! ```
//! use melody::{Melody, cluster::{Cluster, LocalBus}};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let bus = LocalBus::new();
//! let (node_a, node_b) = (Melody::new(), Melody::new());
//! let a = Cluster::attach(&node_a, bus.clone())?;
//! Cluster::attach(&node_b, bus)?;
//! // Reaches node_b's sessions too.
//! node_a.all().send("hello, cluster")?;
//! assert_eq!(a.presence().await?.len(), 2);
//! # Ok(())
//! # }
//! ```
//!
//! # What crosses nodes
//!
//! Sends to a [`Target`](crate::fanout::Target): everyone, a topic, each but one, one session
//! by id (a session not on this node is handed to the cluster, and the node that has it
//! delivers it). What stays local: `melody.filter(..)` and `melody.each(..)` (closures and
//! handles do not travel) and sends marked [`local`](crate::fanout::Broadcast::local).
//!
//! A frame that arrives from another node is delivered to this node's sessions and sinks (SSE
//! subscribers) and never sent on again, so there are no loops.
//!
//! # Guarantees
//!
//! - **At most once**, in the order each node sent, as the drivers' brokers give it (Redis and
//!   NATS core pub/sub keep nothing: a node that is not connected at the moment misses it).
//! - **Sending never waits.** Frames go into a bounded queue ([`ClusterOptions::queue`], 4,096)
//!   in front of the driver, which sends them in batches. A frame that does not fit, or a batch
//!   the driver fails to send, is lost, counted ([`ClusterStats`]) and reported to the error
//!   handler ([`Cluster::on_error`]) — never silently.
//! - **Presence is eventually consistent**; its bound is the driver's.

mod driver;
mod local;
mod stats;
mod wire;

use std::{
    fmt,
    sync::{Arc, Mutex},
};

use tokio::sync::mpsc;

use self::stats::ClusterCounters;
pub use self::{
    driver::{Driver, DriverError, DriverFuture, Link, Outgoing},
    local::LocalBus,
    stats::ClusterStats,
    wire::{DecodeError, Frame, NodeId, NodePresence},
};
use crate::{
    Melody, SessionId,
    core::hub::WeakMelody,
    plugin::{Delivery, Origin, Reach, Sink},
};

/// How a cluster queues what it sends.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct ClusterOptions {
    /// Frames waiting for the driver, at most; a send beyond it is dropped and reported.
    /// Default 4,096.
    pub queue: usize,
    /// Most frames handed to the driver in one batch. Default 256.
    pub batch: usize,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            queue: 4096,
            batch: 256,
        }
    }
}

impl ClusterOptions {
    /// Sets [`ClusterOptions::queue`] (at least 1).
    #[must_use]
    pub fn queue(mut self, frames: usize) -> Self {
        self.queue = frames.max(1);
        self
    }

    /// Sets [`ClusterOptions::batch`] (at least 1).
    #[must_use]
    pub fn batch(mut self, frames: usize) -> Self {
        self.batch = frames.max(1);
        self
    }
}

/// [`Cluster::attach`] on a hub that already has a cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the hub already has a cluster attached")]
pub struct AlreadyAttached;

type ErrorFn = Arc<dyn Fn(&(dyn std::error::Error + 'static)) + Send + Sync>;

/// What the cluster of one hub shares between its handle, its sink, its sender task and its
/// driver's [`Link`]. It reaches the hub only weakly: the hub owns it.
pub(crate) struct ClusterShared {
    pub(crate) node: NodeId,
    pub(crate) melody: WeakMelody,
    driver: Arc<dyn Driver>,
    queue: mpsc::Sender<Outgoing>,
    counters: ClusterCounters,
    on_error: Mutex<Option<ErrorFn>>,
}

impl ClusterShared {
    pub(crate) fn receive(&self, bytes: &[u8]) -> usize {
        let frame = match Frame::decode(bytes) {
            Ok(frame) => frame,
            Err(error) => {
                self.error(&error);
                return 0;
            }
        };
        if frame.origin == self.node {
            return 0;
        }
        self.counters.received();
        let Some(melody) = self.melody.upgrade() else {
            return 0;
        };
        melody
            .plugins()
            .deliver(&frame.target, &frame.message)
            .unwrap_or(0)
    }

    pub(crate) fn error(&self, error: &(dyn std::error::Error + 'static)) {
        self.counters.error();
        tracing::warn!(node = %self.node, %error, "cluster error");
        let handler = self
            .on_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        if let Some(handler) = handler {
            handler(error);
        }
    }

    pub(crate) fn reconnected(&self) {
        self.counters.reconnected();
        tracing::info!(node = %self.node, "cluster driver reconnected");
    }

    pub(crate) fn local_presence(&self) -> NodePresence {
        let Some(melody) = self.melody.upgrade() else {
            return NodePresence {
                node: self.node,
                ..NodePresence::default()
            };
        };
        NodePresence {
            node: self.node,
            sessions: melody.all().len(),
            topics: melody.plugins().topic_members(),
        }
    }

    /// Queues a frame for the driver without waiting; drops and reports it when full.
    fn enqueue(&self, outgoing: Outgoing) -> bool {
        match self.queue.try_send(outgoing) {
            Ok(()) => {
                self.counters.sent();
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.counters.dropped();
                self.error(&QueueFull);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// A frame that found the cluster's queue full: lost for the other nodes.
#[derive(Debug, thiserror::Error)]
#[error("cluster queue full: a frame for the other nodes was dropped")]
struct QueueFull;

/// The sink that sends this node's deliveries to the other nodes.
struct ToPeers(Arc<ClusterShared>);

impl Sink for ToPeers {
    fn deliver(&self, delivery: &Delivery<'_>) -> Reach {
        if delivery.is_node_only() || delivery.origin() != Origin::Local {
            return Reach::default();
        }
        let frame = Frame {
            origin: self.0.node,
            target: delivery.target().clone(),
            message: delivery.message().clone(),
        };
        let outgoing = Outgoing {
            target: frame.target.clone(),
            frame: frame.encode(),
        };
        if self.0.enqueue(outgoing) {
            Reach::forwarded()
        } else {
            Reach::default()
        }
    }

    fn closed(&self) {
        self.0.driver.stop();
    }
}

/// The cluster of one hub: its node id, its presence across nodes, its counters. A cheap
/// handle; find it again from any session with [`Cluster::of`].
#[derive(Clone)]
pub struct Cluster {
    shared: Arc<ClusterShared>,
}

impl Cluster {
    /// Joins `melody` to the nodes that share `driver`, with the default [`ClusterOptions`].
    ///
    /// # Errors
    ///
    /// [`AlreadyAttached`] when the hub already has a cluster.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime: the cluster's sender runs as a task.
    pub fn attach(melody: &Melody, driver: impl Driver) -> Result<Self, AlreadyAttached> {
        Self::attach_with(melody, driver, ClusterOptions::default())
    }

    /// As [`Cluster::attach`], with options.
    ///
    /// # Errors
    ///
    /// [`AlreadyAttached`] when the hub already has a cluster.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn attach_with(
        melody: &Melody,
        driver: impl Driver,
        options: ClusterOptions,
    ) -> Result<Self, AlreadyAttached> {
        let plugins = melody.plugins();
        if plugins.get::<ClusterShared>().is_some() {
            return Err(AlreadyAttached);
        }
        let (queue, outgoing) = mpsc::channel(options.queue.max(1));
        let shared = Arc::new(ClusterShared {
            node: NodeId(crate::core::random::u64()),
            melody: plugins.downgrade(),
            driver: Arc::new(driver),
            queue,
            counters: ClusterCounters::new(),
            on_error: Mutex::new(None),
        });
        plugins.insert(shared.clone());
        plugins.add_sink(ToPeers(shared.clone()));
        tokio::spawn(send_batches(
            Arc::downgrade(&shared),
            shared.driver.clone(),
            outgoing,
            options.batch.max(1),
        ));
        shared.driver.start(Link {
            shared: Arc::downgrade(&shared),
            node: shared.node,
        });
        Ok(Self { shared })
    }

    /// The cluster attached to `melody`, if any.
    #[must_use]
    pub fn of(melody: &Melody) -> Option<Self> {
        let shared = melody.plugins().get::<ClusterShared>()?;
        Some(Self { shared })
    }

    /// This node's id.
    #[must_use]
    pub fn node(&self) -> NodeId {
        self.shared.node
    }

    /// Runs `f` on every cluster failure: a frame dropped on a full queue or that the driver
    /// could not send (lost for the other nodes), a lost broker connection, a frame that does
    /// not decode.
    pub fn on_error(
        &self,
        f: impl Fn(&(dyn std::error::Error + 'static)) + Send + Sync + 'static,
    ) -> &Self {
        *self
            .shared
            .on_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Arc::new(f));
        self
    }

    /// Presence across the cluster: one snapshot per node. With a driver that keeps no
    /// presence, this node's only. Eventually consistent: see the driver's bound.
    ///
    /// # Errors
    ///
    /// The driver's error when it cannot be asked (a broker outage).
    pub async fn presence(&self) -> Result<Vec<NodePresence>, DriverError> {
        match self.shared.driver.presence() {
            Some(presence) => presence.await,
            None => Ok(vec![self.shared.local_presence()]),
        }
    }

    /// Sessions connected across the cluster (see [`Cluster::presence`]).
    ///
    /// # Errors
    ///
    /// As [`Cluster::presence`].
    pub async fn session_count(&self) -> Result<usize, DriverError> {
        Ok(self.presence().await?.iter().map(|n| n.sessions).sum())
    }

    /// The ids of `topic`'s members across the cluster (see [`Cluster::presence`]).
    ///
    /// # Errors
    ///
    /// As [`Cluster::presence`].
    pub async fn members(&self, topic: &str) -> Result<Vec<SessionId>, DriverError> {
        Ok(self
            .presence()
            .await?
            .into_iter()
            .flat_map(|node| node.topics)
            .filter(|(name, _)| name == topic)
            .flat_map(|(_, ids)| ids)
            .collect())
    }

    /// A snapshot of the cluster's counters.
    #[must_use]
    pub fn stats(&self) -> ClusterStats {
        self.shared.counters.snapshot()
    }
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.shared.node)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// The cluster's sender: takes what is queued, up to `batch` frames at a time, and awaits the
/// driver for each batch, in order. Ends when the cluster is gone.
async fn send_batches(
    shared: std::sync::Weak<ClusterShared>,
    driver: Arc<dyn Driver>,
    mut outgoing: mpsc::Receiver<Outgoing>,
    batch: usize,
) {
    let mut frames = Vec::with_capacity(batch);
    while outgoing.recv_many(&mut frames, batch).await > 0 {
        if let Err(error) = driver.publish(&frames).await {
            match shared.upgrade() {
                Some(shared) => {
                    shared.counters.lost(frames.len());
                    shared.error(&*error);
                }
                None => return,
            }
        }
        frames.clear();
    }
}
