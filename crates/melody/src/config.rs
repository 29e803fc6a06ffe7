//! [`Config`]: timeouts, limits, the outbound queue and its overflow policy, the origin check.

use std::time::Duration;

use crate::origin::CheckOrigin;

/// What happens when a message is written to a session whose outbound queue is full.
///
/// The queue holds [`Config::message_buffer_size`] messages. A client that reads slower than the
/// server writes fills it; this policy decides what that client costs. Either way a slow client
/// never slows down any other session or the broadcaster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OverflowPolicy {
    /// Drop the message, count it, and report [`Error::MessageBufferFull`](crate::Error) to the
    /// error handler. The session stays open. This is Go melody's behaviour.
    #[default]
    DropMessage,
    /// Close the slow session with 1008 Policy Violation ("message buffer full"). The message
    /// that did not fit is dropped and reported like with [`OverflowPolicy::DropMessage`].
    CloseSession,
}

/// Settings of a [`Melody`](crate::Melody) hub, fixed when the hub is created.
///
/// The defaults are Go melody's: write wait 10 s, pong wait 60 s, ping period 54 s, maximum
/// message size 512 bytes, message buffer 256 messages. The origin check defaults to same-origin,
/// as gorilla's upgrader does (Go melody itself accepts every origin; `CheckOrigin::Any` is that).
///
/// ```
/// use std::time::Duration;
/// use melody::{Config, OverflowPolicy};
///
/// let config = Config::default()
///     .max_message_size(64 * 1024)
///     .pong_wait(Duration::from_secs(30))
///     .ping_period(Duration::from_secs(25))
///     .overflow(OverflowPolicy::CloseSession);
/// assert_eq!(config.message_buffer_size, 256);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// How long a write (a flush of queued messages) may take before the session is closed as
    /// stalled. Default 10 s.
    pub write_wait: Duration,
    /// How long to wait for a pong after the last one (or after the connect) before the session
    /// is closed as dead. Default 60 s.
    pub pong_wait: Duration,
    /// How often a ping is sent. Must be shorter than `pong_wait`. Default 54 s.
    pub ping_period: Duration,
    /// Largest inbound message, in bytes, after reassembling fragments. A bigger one closes the
    /// session with 1009. Default 512.
    pub max_message_size: usize,
    /// Capacity of each session's outbound queue, in messages. Default 256.
    pub message_buffer_size: usize,
    /// What a full outbound queue does. Default [`OverflowPolicy::DropMessage`].
    pub overflow: OverflowPolicy,
    /// Run each message handler call in its own task instead of in order on the session's task
    /// (Go melody's `ConcurrentMessageHandling`). Default `false`: handlers run one at a time, in
    /// arrival order.
    pub concurrent_message_handling: bool,
    /// Which browser origins may open a session. Default [`CheckOrigin::SameOrigin`].
    pub check_origin: CheckOrigin,
    /// Most sessions at once (upgrades in progress count); the next upgrade gets 503 until a
    /// session ends. Default 0: unlimited.
    pub max_connections: usize,
    /// Most data messages a session may send per second, on average. A session that goes over
    /// its burst is closed with 1008 "message rate limit exceeded". Default 0: no limit.
    pub message_rate_limit: u32,
    /// How many messages a session may send at once before the rate limit bites. Default 0:
    /// the same as `message_rate_limit`.
    pub message_burst: u32,
    /// How often an SSE stream gets a keep-alive comment (feature `sse`). Default 15 s.
    pub sse_keep_alive: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            write_wait: Duration::from_secs(10),
            pong_wait: Duration::from_secs(60),
            ping_period: Duration::from_secs(54),
            max_message_size: 512,
            message_buffer_size: 256,
            overflow: OverflowPolicy::DropMessage,
            concurrent_message_handling: false,
            check_origin: CheckOrigin::SameOrigin,
            max_connections: 0,
            message_rate_limit: 0,
            message_burst: 0,
            sse_keep_alive: Duration::from_secs(15),
        }
    }
}

impl Config {
    /// Sets [`Config::write_wait`].
    #[must_use]
    pub fn write_wait(mut self, wait: Duration) -> Self {
        self.write_wait = wait;
        self
    }

    /// Sets [`Config::pong_wait`].
    #[must_use]
    pub fn pong_wait(mut self, wait: Duration) -> Self {
        self.pong_wait = wait;
        self
    }

    /// Sets [`Config::ping_period`].
    #[must_use]
    pub fn ping_period(mut self, period: Duration) -> Self {
        self.ping_period = period;
        self
    }

    /// Sets [`Config::max_message_size`] in bytes.
    #[must_use]
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Sets [`Config::message_buffer_size`]; a value of 0 is raised to 1.
    #[must_use]
    pub fn message_buffer_size(mut self, messages: usize) -> Self {
        self.message_buffer_size = messages;
        self
    }

    /// Sets [`Config::overflow`].
    #[must_use]
    pub fn overflow(mut self, policy: OverflowPolicy) -> Self {
        self.overflow = policy;
        self
    }

    /// Sets [`Config::concurrent_message_handling`].
    #[must_use]
    pub fn concurrent_message_handling(mut self, concurrent: bool) -> Self {
        self.concurrent_message_handling = concurrent;
        self
    }

    /// Sets [`Config::check_origin`].
    ///
    /// ```
    /// use melody::{CheckOrigin, Config};
    ///
    /// // Go melody's FAQ: accept every origin.
    /// let config = Config::default().check_origin(CheckOrigin::Any);
    /// ```
    #[must_use]
    pub fn check_origin(mut self, check: CheckOrigin) -> Self {
        self.check_origin = check;
        self
    }

    /// Sets [`Config::max_connections`]; 0 means unlimited.
    #[must_use]
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max;
        self
    }

    /// Sets [`Config::message_rate_limit`] (messages per second; 0 disables it) and
    /// [`Config::message_burst`] (0 means the same as the rate).
    ///
    /// ```
    /// // Seed-style limits: 100 messages/s on average, bursts of 200.
    /// let config = melody::Config::default().message_rate_limit(100, 200);
    /// assert_eq!((config.message_rate_limit, config.message_burst), (100, 200));
    /// ```
    #[must_use]
    pub fn message_rate_limit(mut self, per_second: u32, burst: u32) -> Self {
        self.message_rate_limit = per_second;
        self.message_burst = burst;
        self
    }

    /// Sets [`Config::sse_keep_alive`].
    #[must_use]
    pub fn sse_keep_alive(mut self, interval: Duration) -> Self {
        self.sse_keep_alive = interval;
        self
    }

    /// The rate limiter's quota, `None` when rate limiting is off.
    pub(crate) fn rate_limit_quota(&self) -> Option<governor::Quota> {
        let rate = std::num::NonZeroU32::new(self.message_rate_limit)?;
        let burst = std::num::NonZeroU32::new(self.message_burst).unwrap_or(rate);
        Some(governor::Quota::per_second(rate).allow_burst(burst))
    }

    /// The queue capacity actually used (at least 1).
    pub(crate) fn queue_capacity(&self) -> usize {
        self.message_buffer_size.max(1)
    }

    /// The ping period actually used: never zero, and shorter than the pong wait so a healthy
    /// peer always has a chance to answer.
    pub(crate) fn effective_ping_period(&self) -> Duration {
        let period = self.ping_period.max(Duration::from_millis(1));
        if period >= self.pong_wait {
            (self.pong_wait * 9 / 10).max(Duration::from_millis(1))
        } else {
            period
        }
    }
}
