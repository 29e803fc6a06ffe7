//! A [Redis](https://redis.io) pub/sub driver for [melody]'s cluster: several hubs, on several
//! machines, as one — sends to everyone, to a topic or to one session reach the sessions of
//! every node, and presence ([`Cluster::presence`], [`Cluster::session_count`], [`Cluster::members`])
//! counts them all.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use melody::{Melody, cluster::Cluster};
//! use melody_redis::{RedisDriver, RedisOptions};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//!     let melody = Melody::new();
//!     let driver =
//!         RedisDriver::connect("redis://127.0.0.1:6379", RedisOptions::default().namespace("chat"))
//!             .await?;
//!     let cluster = Cluster::attach(&melody, driver.clone())?;
//!     melody.on_text(|session, text| {
//!         // Reaches every session of every node connected to this Redis.
//!         let _ = session.melody().all().send(text);
//!     });
//!
//!     let app = Router::new().route("/ws", get(melody.handler()));
//!     let listener = tokio::net::TcpListener::bind("0.0.0.0:3000").await?;
//!     tokio::spawn(async move { melody::serve(listener, app).await });
//!
//!     // Cluster-wide presence, eventually consistent (see below).
//!     println!("{} sessions in the cluster", cluster.session_count().await?);
//!     println!("{:?} {:?}", cluster.stats(), driver.stats());
//!     Ok(())
//! }
//! ```
//!
//! # Channels and keys
//!
//! Everything lives under a namespace (`{ns}`, default `melody`,
//! [`RedisOptions::namespace`]), so that several applications can share one Redis:
//!
//! | name | kind | what |
//! | --- | --- | --- |
//! | `{ns}:all` | channel | sends to everyone (`melody.all()`, with or without `except`) and to one session by id (`melody.session(id)`, router envelopes with a `target`) |
//! | `{ns}:topic:{topic}` | channel | topic sends (`melody.topic(t)`) |
//! | `{ns}:presence:{node}` | string, expires | a node's presence snapshot ([`NodePresence`](melody::cluster::NodePresence) wire form) |
//! | `{ns}:nodes` | set | the ids of the nodes that wrote a snapshot |
//!
//! Every node `SUBSCRIBE`s to `{ns}:all` and `PSUBSCRIBE`s to `{ns}:topic:*`. Why not one
//! `SUBSCRIBE` per topic with local members, which would spare a node the traffic of topics it
//! does not host? The core tells a backend nothing when a session joins or leaves a topic, and
//! subscribing from a periodic presence scan would lose a topic's messages for up to a heartbeat
//! after a join. A channel per topic still lets tools watch one topic (`redis-cli subscribe
//! melody:topic:lobby`), and is the layout a subscribe-on-join scheme needs later. Direct sends
//! go on `{ns}:all` because a node does not know which node holds a session; each node's hub
//! drops a direct send for a session it does not have. Sharded pub/sub (`SPUBLISH`, Redis
//! Cluster) is not used: the driver talks to one Redis (or a primary behind a proxy).
//!
//! A node receives its own publishes back and skips them without decoding. Frames from other
//! nodes are handed to the cluster, which fans them out locally and never sends them on again.
//!
//! # Delivery guarantees
//!
//! - **At most once.** Redis pub/sub keeps nothing: a node that is not subscribed at the moment
//!   of a `PUBLISH` misses it. Deliveries from one node arrive at another in the order they were
//!   published (one publishing connection, one subscribing connection, pipelines in order).
//! - **Outages are reported, not hidden.** Sending never waits: the cluster queues frames
//!   (`ClusterOptions::queue`) and hands them to the driver in batches, each sent as one pipeline
//!   of PUBLISHes. A frame Redis does not take (broker down, queue full, driver stopped) is lost
//!   and reported — counted in `Cluster::stats` (`dropped`, `errors`), passed to
//!   `Cluster::on_error`, logged at `warn` — and counted here in
//!   [`RedisStats::publish_errors`]. A frame Redis took while no subscriber had re-subscribed
//!   yet is counted in [`RedisStats::unheard`].
//! - **Reconnects on its own.** The publishing connection is a `redis` connection manager that
//!   reconnects on the next command. The subscribing connection is re-established with backoff
//!   (50 ms doubling to 1 s by default, [`RedisOptions::reconnect_backoff`]), re-subscribes, and
//!   tells the cluster (`Cluster::stats().reconnects`). After a broker restart, delivery resumes
//!   within about the maximum backoff once the broker accepts connections again (measured in
//!   this crate's tests: well under 2 s). A half-open connection is found by a ping every
//!   [`RedisOptions::health_check`] when idle.
//!
//! # Presence
//!
//! Each node writes its snapshot to `{ns}:presence:{node}` with `SET … PX ttl` every
//! [`RedisOptions::heartbeat`] (1 s) and adds itself to `{ns}:nodes`. [`Cluster::presence`] reads
//! the set and the snapshots (`SMEMBERS`, `MGET`: no key scan) and uses this node's own live
//! presence. Presence is **eventually consistent**, with these bounds under the defaults:
//!
//! - a join, a leave, a new or closed session on another node shows within one heartbeat (1 s)
//!   plus the read's round trip;
//! - a node that crashed (or was [`stop`](RedisDriver::stop)ped) drops out within the
//!   presence ttl (3 s, [`RedisOptions::presence_ttl`]); one that [`close`](RedisDriver::close)s
//!   drops out at once;
//! - during a broker outage, presence calls fail (with [`Error`]) instead of answering stale;
//!   after a broker restart (which loses the keys unless it persists them) every node is back
//!   within one heartbeat.
//!
//! # Live topics' histories
//!
//! With the feature `live`, `RedisHistory` keeps the histories of `melody::live` topics in
//! Redis for every node: one order per topic whichever node publishes, every node fed in that
//! order, recovery on any node. Its keys and guarantees are in the `history` module.
//!
//! # Lifetime
//!
//! [`RedisDriver::connect`] must run inside a tokio runtime; the driver's two tasks (subscriber,
//! heartbeat) run there. They end when the hub is gone, or at [`RedisDriver::stop`] /
//! [`RedisDriver::close`].
//!
//! [`Cluster::presence`]: melody::cluster::Cluster::presence
//! [`Cluster::session_count`]: melody::cluster::Cluster::session_count
//! [`Cluster::members`]: melody::cluster::Cluster::members

mod driver;
mod error;
#[cfg(feature = "live")]
pub mod history;
mod options;
mod stats;
mod tasks;

pub use driver::RedisDriver;
pub use error::Error;
#[cfg(feature = "live")]
pub use history::RedisHistory;
pub use options::RedisOptions;
pub use stats::RedisStats;
