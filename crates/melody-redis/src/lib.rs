//! A [Redis](https://redis.io) pub/sub backplane for [melody]: several hubs, on several
//! machines, as one — broadcasts, topic publishes and direct sends reach the sessions of every
//! node, and presence ([`Melody::cluster_len`], [`Melody::cluster_members`]) counts them all.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use melody::Melody;
//! use melody_redis::{RedisBackplane, RedisOptions};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//!     let melody = Melody::new();
//!     let backplane =
//!         RedisBackplane::connect("redis://127.0.0.1:6379", RedisOptions::default().namespace("chat"))
//!             .await?;
//!     melody.set_backplane(backplane.clone());
//!     melody.handle_message(|session, text| {
//!         // Reaches every session of every node connected to this Redis.
//!         let _ = session.melody().broadcast(text);
//!     });
//!
//!     let app = Router::new().route("/ws", get(melody.handler()));
//!     let listener = tokio::net::TcpListener::bind("0.0.0.0:3000").await?;
//!     tokio::spawn(async move { axum::serve(listener, app).await });
//!
//!     // Cluster-wide presence, eventually consistent (see below).
//!     println!("{} sessions in the cluster", melody.cluster_len().await?);
//!     println!("{:?}", backplane.stats());
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
//! | `{ns}:all` | channel | broadcasts ([`Melody::broadcast`], `broadcast_others`) and direct sends ([`Melody::send_to`], router envelopes with a `target`) |
//! | `{ns}:topic:{topic}` | channel | topic publishes ([`Melody::publish`], `publish_others`) |
//! | `{ns}:presence:{node}` | string, expires | a node's presence snapshot ([`NodePresence`](melody::backplane::NodePresence) wire form) |
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
//! Cluster) is not used: the backplane talks to one Redis (or a primary behind a proxy).
//!
//! A node receives its own publishes back and skips them without decoding. Deliveries that
//! come from the backplane are handed to the hub, which fans them out locally and never
//! publishes them again.
//!
//! # Delivery guarantees
//!
//! - **At most once.** Redis pub/sub keeps nothing: a node that is not subscribed at the moment
//!   of a `PUBLISH` misses it. Deliveries from one node arrive at another in the order they were
//!   published (one publishing connection, one subscribing connection, pipelines in order).
//! - **Outages are reported, not hidden.** [`Backplane::publish`](melody::backplane::Backplane)
//!   never blocks: deliveries go into a bounded queue ([`RedisOptions::queue_capacity`]) that a
//!   task sends to Redis in pipelines. A delivery that Redis does not take (broker down, queue
//!   full, backplane stopped) is lost and reported to the hub — counted in
//!   `Stats::backplane_errors` and logged by the hub at `warn` — and counted here in
//!   [`RedisStats::publish_errors`] / [`RedisStats::dropped`]. A delivery Redis took while no
//!   subscriber had re-subscribed yet is counted in [`RedisStats::unheard`].
//! - **Reconnects on its own.** The publishing connection is a `redis` connection manager that
//!   reconnects on the next command. The subscribing connection is re-established with backoff
//!   (50 ms doubling to 1 s by default, [`RedisOptions::reconnect_backoff`]), re-subscribes, and
//!   tells the hub (`Stats::backplane_reconnects`). After a broker restart, delivery resumes
//!   within about the maximum backoff once the broker accepts connections again (measured in
//!   this crate's tests: well under 2 s). A half-open connection is found by a ping every
//!   [`RedisOptions::health_check`] when idle.
//!
//! # Presence
//!
//! Each node writes its snapshot to `{ns}:presence:{node}` with `SET … PX ttl` every
//! [`RedisOptions::heartbeat`] (1 s) and adds itself to `{ns}:nodes`. [`Melody::presence`] reads
//! the set and the snapshots (`SMEMBERS`, `MGET`: no key scan) and uses this node's own live
//! presence. Presence is **eventually consistent**, with these bounds under the defaults:
//!
//! - a join, a leave, a new or closed session on another node shows within one heartbeat (1 s)
//!   plus the read's round trip;
//! - a node that crashed (or was [`stop`](RedisBackplane::stop)ped) drops out within the
//!   presence ttl (3 s, [`RedisOptions::presence_ttl`]); one that [`close`](RedisBackplane::close)s
//!   drops out at once;
//! - during a broker outage, presence calls fail (with [`Error`]) instead of answering stale;
//!   after a broker restart (which loses the keys unless it persists them) every node is back
//!   within one heartbeat.
//!
//! # Lifetime
//!
//! [`RedisBackplane::connect`] must run inside a tokio runtime; the backplane's three tasks
//! (publisher, subscriber, heartbeat) run there. They end when the last clone of the backplane
//! is dropped — the hub keeps one until it is dropped itself — or at
//! [`RedisBackplane::stop`] / [`RedisBackplane::close`].
//!
//! [`Melody::cluster_len`]: melody::Melody::cluster_len
//! [`Melody::cluster_members`]: melody::Melody::cluster_members
//! [`Melody::presence`]: melody::Melody::presence
//! [`Melody::broadcast`]: melody::Melody::broadcast
//! [`Melody::publish`]: melody::Melody::publish
//! [`Melody::send_to`]: melody::Melody::send_to

mod backplane;
mod options;
mod stats;

pub use backplane::RedisBackplane;
pub use options::RedisOptions;
pub use stats::RedisStats;

/// What can go wrong in the Redis backplane. Failures after [`RedisBackplane::connect`] are not
/// returned but reported to the hub ([`melody::backplane::Inbox::report_error`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The options do not make sense.
    #[error("invalid redis backplane options: {0}")]
    InvalidOptions(&'static str),
    /// [`RedisBackplane::connect`] was called outside a tokio runtime.
    #[error("the redis backplane needs a tokio runtime")]
    NoRuntime,
    /// Redis refused or failed a request.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer within the command timeout.
    #[error("redis did not answer in time")]
    Timeout,
    /// A delivery could not be published and is lost.
    #[error("delivery lost, publish failed: {0}")]
    Publish(redis::RedisError),
    /// A delivery was dropped because the outgoing queue is full.
    #[error("delivery lost, the redis backplane's queue is full")]
    QueueFull,
    /// A delivery was published after the backplane was stopped.
    #[error("delivery lost, the redis backplane is stopped")]
    Stopped,
    /// The subscription connection was lost; it is being re-established.
    #[error("redis subscription connection lost; reconnecting")]
    Disconnected,
    /// The subscription connection did not answer a ping; it is being re-established.
    #[error("redis subscription connection did not answer a ping; reconnecting")]
    HealthCheck,
    /// The presence heartbeat could not be written.
    #[error("presence heartbeat failed: {0}")]
    Heartbeat(redis::RedisError),
    /// The backplane was attached to a second hub (it serves the first only).
    #[error("this redis backplane is already attached to a hub")]
    AlreadyStarted,
}
