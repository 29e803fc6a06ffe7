//! How a [`RedisDriver`](crate::RedisDriver) behaves: namespace, presence heartbeat and expiry,
//! reconnect backoff, timeouts.

use std::time::Duration;

use crate::Error;

/// Options for [`RedisDriver::connect`](crate::RedisDriver::connect). The defaults suit a
/// cluster on one LAN; every setter returns the options, for chaining.
///
/// ```
/// use std::time::Duration;
/// use melody_redis::RedisOptions;
///
/// let options = RedisOptions::default()
///     .namespace("chat")
///     .heartbeat(Duration::from_millis(500))
///     .presence_ttl(Duration::from_millis(1500));
/// assert_eq!(options.get_namespace(), "chat");
/// ```
#[derive(Clone, Debug)]
pub struct RedisOptions {
    pub(crate) namespace: String,
    pub(crate) heartbeat: Duration,
    pub(crate) presence_ttl: Duration,
    pub(crate) reconnect_min: Duration,
    pub(crate) reconnect_max: Duration,
    pub(crate) health_check: Duration,
    pub(crate) command_timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            namespace: "melody".to_owned(),
            heartbeat: Duration::from_secs(1),
            presence_ttl: Duration::from_secs(3),
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(1),
            health_check: Duration::from_secs(5),
            command_timeout: Duration::from_secs(1),
        }
    }
}

impl RedisOptions {
    /// The prefix of every channel and key (default `"melody"`), so that several applications
    /// share one Redis. Nodes of one cluster must use the same namespace. It may not be empty,
    /// may not hold the glob characters `* ? [ ] \`, and may not contain `:topic` (which would let
    /// one namespace's topic pattern match another's channels).
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// How often this node writes its presence snapshot (default 1 s). Other nodes see a join,
    /// a leave or a new session within this interval.
    #[must_use]
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every;
        self
    }

    /// How long a snapshot lives without a newer one (default 3 s): a node that crashed drops
    /// out of everyone's presence within this time. Must be longer than the heartbeat.
    #[must_use]
    pub fn presence_ttl(mut self, ttl: Duration) -> Self {
        self.presence_ttl = ttl;
        self
    }

    /// The delay before the first reconnect attempt after the subscription connection is lost,
    /// doubled after each failed attempt up to `max` (defaults 50 ms and 1 s). The gap after a
    /// broker restart is at most about `max` once the broker accepts connections again.
    #[must_use]
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_min = min;
        self.reconnect_max = max;
        self
    }

    /// How often the subscription connection is pinged when idle (default 5 s), so that a
    /// half-open connection (a broker host that vanished without closing it) is noticed.
    #[must_use]
    pub fn health_check(mut self, every: Duration) -> Self {
        self.health_check = every;
        self
    }

    /// The time limit for connecting and for each command's answer (default 1 s).
    #[must_use]
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// The namespace.
    #[must_use]
    pub fn get_namespace(&self) -> &str {
        &self.namespace
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        let ns = &self.namespace;
        if ns.is_empty() {
            return Err(Error::InvalidOptions("the namespace is empty"));
        }
        if ns.contains(['*', '?', '[', ']', '\\']) {
            return Err(Error::InvalidOptions(
                "the namespace holds a glob character (* ? [ ] \\)",
            ));
        }
        if ns.contains(":topic") {
            return Err(Error::InvalidOptions("the namespace contains \":topic\""));
        }
        if self.heartbeat.is_zero() || self.presence_ttl <= self.heartbeat {
            return Err(Error::InvalidOptions(
                "the presence ttl must be longer than a non-zero heartbeat",
            ));
        }
        if self.reconnect_min.is_zero() || self.reconnect_max < self.reconnect_min {
            return Err(Error::InvalidOptions(
                "the reconnect backoff needs 0 < min <= max",
            ));
        }
        if self.health_check.is_zero() || self.command_timeout.is_zero() {
            return Err(Error::InvalidOptions(
                "the health check and command timeout must be non-zero",
            ));
        }
        Ok(())
    }
}

/// The names of the channels and keys of one namespace.
#[derive(Debug)]
pub(crate) struct Names {
    /// Broadcasts and direct sends.
    pub(crate) all: String,
    /// `{ns}:topic:` — a topic's channel is this plus its name.
    pub(crate) topic_prefix: String,
    /// `{ns}:topic:*`, psubscribed.
    pub(crate) topic_pattern: String,
    /// The set of node ids that wrote a snapshot.
    pub(crate) nodes: String,
    /// `{ns}:presence:` — a node's snapshot key is this plus its id.
    pub(crate) presence_prefix: String,
}

impl Names {
    pub(crate) fn new(ns: &str) -> Self {
        Self {
            all: format!("{ns}:all"),
            topic_prefix: format!("{ns}:topic:"),
            topic_pattern: format!("{ns}:topic:*"),
            nodes: format!("{ns}:nodes"),
            presence_prefix: format!("{ns}:presence:"),
        }
    }

    pub(crate) fn presence_key(&self, node: impl std::fmt::Display) -> String {
        format!("{}{node}", self.presence_prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates() {
        assert!(RedisOptions::default().validate().is_ok());
        for bad in [
            RedisOptions::default().namespace(""),
            RedisOptions::default().namespace("a*"),
            RedisOptions::default().namespace("app:topic:x"),
            RedisOptions::default().presence_ttl(Duration::from_millis(500)),
            RedisOptions::default()
                .reconnect_backoff(Duration::from_secs(2), Duration::from_secs(1)),
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        let names = Names::new("ns");
        assert_eq!(names.all, "ns:all");
        assert_eq!(names.topic_pattern, "ns:topic:*");
        assert_eq!(names.presence_key("00ff"), "ns:presence:00ff");
    }
}
