//! [`Error`]: what can go wrong in the NATS driver, returned by
//! [`NatsDriver::connect`](crate::NatsDriver::connect) or reported to the cluster.

/// What can go wrong in the NATS driver.
///
/// [`NatsDriver::connect`](crate::NatsDriver::connect) returns the first four; after that,
/// failures are not returned to the sender but reported to the cluster: counted in
/// [`ClusterStats`](melody::cluster::ClusterStats) and passed to
/// [`Cluster::on_error`](melody::cluster::Cluster::on_error). A failed presence query returns
/// its error from [`Cluster::presence`](melody::cluster::Cluster::presence).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The subject prefix is not a valid NATS subject without wildcards.
    #[error(
        "invalid subject prefix {0:?}: dot-separated non-empty tokens without spaces or wildcards"
    )]
    InvalidPrefix(String),
    /// The first connection to the broker failed.
    #[error("cannot connect to NATS: {0}")]
    Connect(#[from] async_nats::ConnectError),
    /// Subscribing failed.
    #[error("cannot subscribe: {0}")]
    Subscribe(#[from] async_nats::SubscribeError),
    /// The server did not confirm the subscription (a round trip after subscribing failed).
    #[error("NATS did not confirm the subscription: {0}")]
    RoundTrip(#[source] async_nats::RequestError),
    /// The client refused a frame (its connection is gone for good): the batch was lost.
    #[error("cannot publish to NATS: {0}")]
    Publish(#[from] async_nats::PublishError),
    /// A frame larger than the server's `max_payload` (1 MiB unless configured): that frame
    /// was dropped and reported, the rest of its batch sent.
    #[error("a {size}-byte frame exceeds the NATS server's max_payload of {max} bytes: dropped")]
    TooLarge {
        /// The frame's size in bytes.
        size: usize,
        /// The server's limit.
        max: usize,
    },
    /// The client is not connected to the broker (an outage, or a first connection still
    /// being retried): the batch was lost, and a presence query cannot be answered.
    #[error("not connected to NATS: frames dropped")]
    Disconnected,
    /// The connection to the broker was lost; the client is reconnecting.
    #[error("lost the connection to NATS; reconnecting")]
    ConnectionLost,
    /// The driver was stopped (its hub closed): nothing more is sent.
    #[error("the NATS driver is stopped")]
    Stopped,
    /// The driver has not been attached to a hub yet.
    #[error("the NATS driver is not attached to a hub")]
    NotStarted,
    /// The driver (or a clone of it) was attached to a second hub; it serves the first only.
    #[error("this NATS driver is already attached to a hub: connect one per hub")]
    AlreadyStarted,
    /// An event reported by the client or the server (a slow consumer, a server error).
    #[error("NATS: {0}")]
    Event(String),
    /// JetStream refused what the history store asked for (JetStream not enabled on the
    /// server, or the stream cannot be created or updated).
    #[cfg(feature = "live")]
    #[error("NATS JetStream: {0}")]
    JetStream(#[source] Box<dyn std::error::Error + Send + Sync>),
}
