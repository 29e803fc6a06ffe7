//! [`Config`]: timeouts, limits, the outbound queue and its overflow policy, the origin check.

use std::{sync::Arc, time::Duration};

use http::HeaderName;

use super::{compression::Compression, origin::CheckOrigin};

/// What happens when a message is written to a session whose outbound queue is full.
///
/// The queue holds [`Config::message_buffer_size`] messages. A client that reads slower than the
/// server writes fills it; this policy decides what that client costs. Either way a slow client
/// never slows down any other session or the broadcaster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OverflowPolicy {
    /// Drop the message, count it, and report [`Error::MessageBufferFull`](crate::Error::MessageBufferFull) to the
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
    /// arrival order. When `true`, at most 64 calls of one session run at once; at that point
    /// the session reads no further until one finishes (unlike Go melody, which starts a
    /// goroutine per message with no bound).
    pub concurrent_message_handling: bool,
    /// Which browser origins may open a session. Default [`CheckOrigin::SameOrigin`].
    pub check_origin: CheckOrigin,
    /// Most sessions and SSE streams at once (upgrades in progress count); the next upgrade
    /// or SSE request gets 503 until one ends. Default 0: unlimited.
    pub max_connections: usize,
    /// How long the auth hook ([`Melody::on_auth`](crate::Melody::on_auth)) may take;
    /// an upgrade still waiting after that is refused with 503 (a hook waiting on a database
    /// that is down must not hold every arriving connection). Default 10 s.
    pub auth_timeout: Duration,
    /// Whether a refusal of the auth hook is told after the upgrade instead of before it: the
    /// handshake is accepted and the connection closed at once with close code 4000 + the
    /// refusal's status (4401, 4403, …) and its message as the close reason (at most 123
    /// bytes). A browser cannot read the status of a refused handshake (its `WebSocket` only
    /// reports 1006, as for a network failure), so without this a client cannot tell "refused,
    /// do not retry" from "unreachable, retry"; with it, it can. No session is created and no
    /// handler runs. Default `false`: the refusal is the HTTP response.
    pub close_on_auth_refusal: bool,
    /// Most data messages a session may send per second, on average. A session that goes over
    /// its burst is closed with 1008 "message rate limit exceeded". Default 0: no limit.
    pub message_rate_limit: u32,
    /// How many messages a session may send at once before the rate limit bites. Default 0:
    /// the same as `message_rate_limit`.
    pub message_burst: u32,
    /// Most frames of any kind a session may send per second, on average: data frames,
    /// continuation frames, pings, pongs. Frames are counted because each costs work to parse
    /// and answer even when it carries nothing (an empty continuation frame, an unsolicited
    /// pong); a session over its burst is closed with 1008 "frame rate limit exceeded".
    /// Default 10,000 (a browser sends one frame per message). 0: no limit.
    pub frame_rate_limit: u32,
    /// How many frames a session may send at once before the frame rate limit bites. Default
    /// 20,000; 0 means the same as `frame_rate_limit`.
    pub frame_burst: u32,
    /// Most topics one session may be in at once; [`Session::join`](crate::Session::join)
    /// beyond it fails with [`JoinError::TooManyTopics`](crate::JoinError). Default 128.
    pub max_topics_per_session: usize,
    /// Largest upgrade request head a session keeps, in bytes: the URI plus every kept
    /// header's name and value. A bigger one is refused with 431 before the upgrade. Default
    /// 16 KiB.
    pub max_request_head: usize,
    /// Which request headers a session keeps for [`Session::headers`](crate::Session::headers):
    /// `None` (the default) keeps all (bounded by `max_request_head`), `Some(names)` only those.
    pub keep_headers: Option<Arc<[HeaderName]>>,
    /// The subprotocols the server speaks (`Sec-WebSocket-Protocol`), most preferred first.
    /// Of those a client offers, the first in this list is selected and answered, and the
    /// session reports it ([`Session::subprotocol`](crate::Session::subprotocol)). Default:
    /// none (the header is not answered).
    pub subprotocols: Arc<[Box<str>]>,
    /// Whether a client that offers none of [`Config::subprotocols`] is refused with 400
    /// ([`UpgradeRejection::NoSubprotocol`](crate::UpgradeRejection::NoSubprotocol)); when
    /// `false` (the default) it connects without a subprotocol.
    pub require_subprotocol: bool,
    /// permessage-deflate: off (the default), shared or dedicated ([`Compression`]).
    pub compression: Compression,
    /// How long a session goes without traffic (no message read, none queued for it) before
    /// it gives up its task and parks. A parked session keeps its TCP stream, deadlines and
    /// limits in about 0.2 KiB instead of a task of about 0.75 KiB, and is woken by whatever
    /// comes first: a message from the client, one queued for it, a ping due, a close. Waking
    /// costs one task spawn (about a microsecond), which is why a busy session does not park.
    /// Nothing else changes: every handler, limit and timeout works the same, except that a
    /// parked session's ping and pong deadline come from one alarm clock per hub that ticks
    /// every 50 ms: up to 50 ms late, never early.
    ///
    /// A session parks between one and two of these after its last traffic, and at once when
    /// it has had none since it connected. `Some(Duration::ZERO)` parks at every wait; `None`
    /// never parks. Sessions never park while a tracing subscriber records their
    /// `melody_session` span, nor on a stream that is not a plain TCP stream (TLS, HTTP/2).
    /// Default 2 s.
    pub park_idle_after: Option<Duration>,
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
            auth_timeout: Duration::from_secs(10),
            close_on_auth_refusal: false,
            message_rate_limit: 0,
            message_burst: 0,
            frame_rate_limit: 10_000,
            frame_burst: 20_000,
            max_topics_per_session: 128,
            max_request_head: 16 * 1024,
            keep_headers: None,
            subprotocols: Arc::new([]),
            require_subprotocol: false,
            compression: Compression::disabled(),
            park_idle_after: Some(Duration::from_secs(2)),
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

    /// Sets [`Config::park_idle_after`]: `None` never parks idle sessions.
    ///
    /// ```
    /// use std::time::Duration;
    /// use melody::Config;
    ///
    /// // Sessions keep their task for 10 s after their last message.
    /// let config = Config::default().park_idle_after(Some(Duration::from_secs(10)));
    /// assert_eq!(config.park_idle_after, Some(Duration::from_secs(10)));
    /// ```
    #[must_use]
    pub fn park_idle_after(mut self, idle: Option<Duration>) -> Self {
        self.park_idle_after = idle;
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

    /// Sets [`Config::auth_timeout`].
    #[must_use]
    pub fn auth_timeout(mut self, wait: Duration) -> Self {
        self.auth_timeout = wait;
        self
    }

    /// Sets [`Config::close_on_auth_refusal`].
    ///
    /// ```
    /// // A browser client sees `4401` and the message instead of an opaque 1006.
    /// let config = melody::Config::default().close_on_auth_refusal(true);
    /// assert!(config.close_on_auth_refusal);
    /// ```
    #[must_use]
    pub fn close_on_auth_refusal(mut self, close: bool) -> Self {
        self.close_on_auth_refusal = close;
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

    /// Sets [`Config::frame_rate_limit`] (frames per second; 0 disables it) and
    /// [`Config::frame_burst`] (0 means the same as the rate).
    ///
    /// ```
    /// // A server fed by one upstream connection that sends 50,000 small messages a second.
    /// let config = melody::Config::default().frame_rate_limit(100_000, 200_000);
    /// assert_eq!(config.frame_rate_limit, 100_000);
    /// ```
    #[must_use]
    pub fn frame_rate_limit(mut self, per_second: u32, burst: u32) -> Self {
        self.frame_rate_limit = per_second;
        self.frame_burst = burst;
        self
    }

    /// Sets [`Config::max_topics_per_session`].
    #[must_use]
    pub fn max_topics_per_session(mut self, topics: usize) -> Self {
        self.max_topics_per_session = topics;
        self
    }

    /// Sets [`Config::max_request_head`] in bytes.
    #[must_use]
    pub fn max_request_head(mut self, bytes: usize) -> Self {
        self.max_request_head = bytes;
        self
    }

    /// Keeps only these request headers on each session ([`Config::keep_headers`]); the rest
    /// of the upgrade request's headers are dropped once the upgrade is checked.
    ///
    /// ```
    /// use melody::{Config, http::header};
    ///
    /// let config = Config::default().keep_headers([header::COOKIE, header::USER_AGENT]);
    /// ```
    #[must_use]
    pub fn keep_headers(mut self, names: impl IntoIterator<Item = HeaderName>) -> Self {
        self.keep_headers = Some(names.into_iter().collect());
        self
    }

    /// Sets [`Config::subprotocols`], most preferred first.
    ///
    /// ```
    /// use melody::Config;
    ///
    /// // A client offering `graphql-ws, graphql-transport-ws` gets `graphql-transport-ws`.
    /// let config = Config::default().subprotocols(["graphql-transport-ws", "graphql-ws"]);
    /// ```
    #[must_use]
    pub fn subprotocols<S: Into<Box<str>>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.subprotocols = names.into_iter().map(Into::into).collect();
        self
    }

    /// Sets [`Config::require_subprotocol`]: refuse (400) a client that offers none of
    /// [`Config::subprotocols`] instead of connecting it without one.
    #[must_use]
    pub fn require_subprotocol(mut self, required: bool) -> Self {
        self.require_subprotocol = required;
        self
    }

    /// Sets [`Config::compression`].
    ///
    /// ```
    /// use melody::{Compression, Config};
    ///
    /// // Browsers offer permessage-deflate; a broadcast is compressed once for all of them.
    /// let config = Config::default().compression(Compression::shared());
    /// ```
    #[must_use]
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// The rate limiter's quota, `None` when rate limiting is off.
    pub(crate) fn rate_limit_quota(&self) -> Option<governor::Quota> {
        let rate = std::num::NonZeroU32::new(self.message_rate_limit)?;
        let burst = std::num::NonZeroU32::new(self.message_burst).unwrap_or(rate);
        Some(governor::Quota::per_second(rate).allow_burst(burst))
    }

    /// The frame budget: (nanoseconds of credit per frame, tolerance in nanoseconds), `None`
    /// when the frame rate limit is off.
    pub(crate) fn frame_budget(&self) -> Option<(u64, u64)> {
        let rate = u64::from(self.frame_rate_limit);
        if rate == 0 {
            return None;
        }
        let burst = match u64::from(self.frame_burst) {
            0 => rate,
            burst => burst,
        };
        let per_frame = (1_000_000_000 / rate).max(1);
        Some((per_frame, per_frame.saturating_mul(burst)))
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
