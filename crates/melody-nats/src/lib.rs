//! A [NATS] driver for [melody]'s cluster: one WebSocket hub across many nodes, over NATS core
//! pub/sub, with cluster-wide presence gathered by request/reply.
//!
//! Every node connects its own [`NatsDriver`] to the same NATS server (or cluster) with the
//! same subject prefix, and attaches it to its hub with [`Cluster::attach`]. From then on
//! `melody.all().send(..)`, `melody.topic(t).send(..)` and `melody.session(id).send(..)` (and
//! their `except(..)` forms) reach the sessions of every node, and [`Cluster::presence`],
//! [`Cluster::session_count`] and [`Cluster::members`] count across the cluster.
//!
//! ```no_run
//! use melody::{Melody, cluster::Cluster};
//! use melody_nats::{NatsDriver, NatsOptions};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let melody = Melody::new();
//! let driver = NatsDriver::connect("nats://127.0.0.1:4222", NatsOptions::default()).await?;
//! let cluster = Cluster::attach(&melody, driver)?;
//!
//! // Reaches every session on every node that shares the broker and the prefix.
//! melody.all().send("hello, cluster")?;
//! melody.topic("room:lobby").send("hello, room")?;
//! // Counts sessions on every node that answers within the presence timeout.
//! let everyone = cluster.session_count().await?;
//! # let _ = everyone;
//! # Ok(())
//! # }
//! ```
//!
//! The cluster ([`melody::cluster`]) owns the queue in front of the driver, the batching, the
//! counting and the decoding of frames; this driver publishes each batch on NATS and hands what
//! the other nodes publish back to the cluster.
//!
//! # Subjects
//!
//! With the prefix `p` (default `"melody"`, see [`NatsOptions::prefix`]):
//!
//! | subject | carries |
//! |---|---|
//! | `p.all` | sends to everyone ([`Target::All`], [`Target::AllExcept`]) |
//! | `p.topic.<encoded topic>` | topic sends ([`Target::Topic`], [`Target::TopicExcept`]) |
//! | `p.session` | direct sends to a session on another node ([`Target::Session`]) |
//! | `p.presence` | presence requests; each node answers on the request's reply subject |
//! | `p.hello`, `p.here`, `p.bye` | nodes joining, answering a join, and leaving |
//!
//! A topic name may hold any character, but a NATS subject token may not contain spaces, dots or
//! wildcards, so the topic is written as the lower-case hex of its UTF-8 bytes
//! ([`encode_topic`]: `"room 1"` → `p.topic.726f6f6d2031`; the empty topic is `p.topic._`). The
//! frame itself carries the topic name, so the subject is only for routing and for watching
//! traffic with `nats sub`.
//!
//! Each node holds **one** subscription, `p.>`, so everything one node sends reaches the others
//! in the order it was sent (NATS keeps the order of one publisher's messages on one
//! subscription): a topic send followed by a send to everyone arrives in that order on every
//! node. The connection is made with `no_echo`, so a node never receives its own frames.
//!
//! # Live topics' histories
//!
//! With the feature `live`, [`NatsHistory`] keeps the histories of `melody::live` topics in a
//! JetStream stream for every node: one order per topic whichever node publishes, every node
//! fed in that order (and resumed where it stopped after an outage), recovery on any node. Its
//! subjects and guarantees are in the [`history`] module.
//!
//! # Delivery guarantees
//!
//! - **At most once.** NATS core pub/sub has no persistence and no acknowledgements: a frame
//!   reaches every node that is connected and subscribed when the broker routes it, once, and is
//!   otherwise lost. There are no duplicates and no replays.
//! - **Order:** per sending node, frames arrive in the order they were sent.
//! - **Sending never blocks.** A send puts the frame in the cluster's bounded queue
//!   ([`ClusterOptions::queue`], given to [`Cluster::attach_with`]), which hands it to the
//!   driver in batches. A full queue drops the frame and reports it.
//! - **Outage.** When the connection to the broker is lost, the client reconnects by itself
//!   (every [`NatsOptions::max_reconnect_delay`] at most, 1 s by default) and re-subscribes.
//!   While it is known to be disconnected, the driver refuses every batch
//!   ([`Error::Disconnected`]): its frames are **dropped and reported** — counted in
//!   [`ClusterStats::dropped`] and passed to [`Cluster::on_error`] — and none is replayed late
//!   after the reconnect. The loss of the connection is reported too ([`Error::ConnectionLost`],
//!   once per outage: a failed reconnect attempt is only logged at debug level), and the
//!   reconnect is counted in [`ClusterStats::reconnects`]. Frames handed to the client in the
//!   instant before it notices the loss (on a broken socket, well under a millisecond; on a
//!   silent network partition, up to two ping intervals) may be lost without a report of their
//!   own, or, rarely, sent just after the reconnect. Frames sent by other nodes while this node
//!   is disconnected are lost for this node; they are not reported there (the other nodes do
//!   not know) but this node's own disconnect and reconnect are.
//! - **The gap.** Once the broker is back, each node reconnects within
//!   [`NatsOptions::max_reconnect_delay`] (attempts back off 0, 10, 20, 40 ms … up to it) and
//!   re-subscribes at once. Measured on loopback with three nodes (the crate's tests): delivery
//!   between nodes resumed 0.02 s after a broker restart following a short outage, and 0.8 s
//!   after one following a 1.5 s outage (2.3 s from the stop).
//!
//! # Presence
//!
//! [`Cluster::presence`] publishes a request on `p.presence` and gathers one snapshot per node
//! (each taken by that node when it answers) until every node known to be alive has answered or
//! [`NatsOptions::presence_timeout`] (250 ms by default) has passed, whichever comes first.
//! Presence is **eventually consistent, with that bound**:
//!
//! - a node that does not answer in time is missing from that answer;
//! - a node whose hub is closed (`melody.close()`, `melody.shutdown(..)`) says goodbye and drops
//!   out of the next answer at once;
//! - a node that crashed, or whose hub was dropped without closing, stops answering at once
//!   (its subscription goes with it), so it is missing from the next answer, at the cost of that
//!   one answer taking the full timeout ([`NatsStats::presence_timeouts`]);
//! - a node that joined in the last few milliseconds may be missing from one answer;
//! - this node's own snapshot is always taken locally, and during an outage presence is an
//!   error ([`Error::Disconnected`]).
//!
//! # Metrics
//!
//! The cluster counts frames sent, received and dropped, errors and reconnects
//! ([`Cluster::stats`]; the `melody_cluster_*` series of the `metrics` facade with melody's
//! feature `metrics`). [`NatsDriver::stats`] adds this backend's own view: frames handed to the
//! client, disconnects, presence queries that waited the whole timeout, and whether the client
//! is connected now.
//!
//! # Lifetime
//!
//! [`NatsDriver::connect`] must run inside a tokio runtime; the driver's two tasks (receiving,
//! watching the connection) run there from [`Cluster::attach`] on. They end when the hub is
//! closed (the cluster stops the driver: it unsubscribes and says goodbye), when the last
//! handle of the driver is dropped (the cluster holds one until its hub is gone), and in any
//! case at their next message once the hub no longer exists. They reach the hub only weakly,
//! so a driver never keeps its hub alive.
//!
//! [NATS]: https://nats.io
//! [`Cluster::attach`]: melody::cluster::Cluster::attach
//! [`Cluster::attach_with`]: melody::cluster::Cluster::attach_with
//! [`Cluster::presence`]: melody::cluster::Cluster::presence
//! [`Cluster::session_count`]: melody::cluster::Cluster::session_count
//! [`Cluster::members`]: melody::cluster::Cluster::members
//! [`Cluster::on_error`]: melody::cluster::Cluster::on_error
//! [`Cluster::stats`]: melody::cluster::Cluster::stats
//! [`ClusterOptions::queue`]: melody::cluster::ClusterOptions::queue
//! [`ClusterStats::dropped`]: melody::cluster::ClusterStats::dropped
//! [`ClusterStats::reconnects`]: melody::cluster::ClusterStats::reconnects
//! [`Target::All`]: melody::fanout::Target::All
//! [`Target::AllExcept`]: melody::fanout::Target::AllExcept
//! [`Target::Topic`]: melody::fanout::Target::Topic
//! [`Target::TopicExcept`]: melody::fanout::Target::TopicExcept
//! [`Target::Session`]: melody::fanout::Target::Session

mod driver;
mod error;
#[cfg(feature = "live")]
pub mod history;
mod options;
mod presence;
mod stats;
mod subjects;
mod tasks;

pub use driver::NatsDriver;
pub use error::Error;
#[cfg(feature = "live")]
pub use history::NatsHistory;
pub use options::NatsOptions;
pub use stats::NatsStats;
pub use subjects::encode_topic;
