//! [`Error`]: what the Redis driver returns or reports.

/// What can go wrong in the Redis driver. Failures after [`RedisDriver::connect`] are not
/// returned but reported to the cluster (counted in `Cluster::stats`, passed to
/// `Cluster::on_error`).
///
/// [`RedisDriver::connect`]: crate::RedisDriver::connect
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The options do not make sense.
    #[error("invalid redis driver options: {0}")]
    InvalidOptions(&'static str),
    /// [`RedisDriver::connect`](crate::RedisDriver::connect) was called outside a tokio runtime.
    #[error("the redis driver needs a tokio runtime")]
    NoRuntime,
    /// Redis refused or failed a request.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer within the command timeout.
    #[error("redis did not answer in time")]
    Timeout,
    /// A batch of frames could not be published and is lost.
    #[error("frames lost, publish failed: {0}")]
    Publish(redis::RedisError),
    /// Frames were handed to the driver after it was stopped.
    #[error("frames lost, the redis driver is stopped")]
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
    /// The driver was attached to a second hub (it serves the first only).
    #[error("this redis driver is already attached to a hub")]
    AlreadyStarted,
}
