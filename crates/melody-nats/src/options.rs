//! [`NatsOptions`]: how a [`NatsDriver`](crate::NatsDriver) connects (subject prefix, presence
//! timeout, reconnect delay, first-connect retry, the client's own options), and the NATS
//! client configuration built from them.

use std::{fmt, time::Duration};

use async_nats::{ConnectOptions, Event};
use tokio::sync::mpsc;

/// A closure that adjusts the client's [`ConnectOptions`].
type Customize = Box<dyn FnOnce(ConnectOptions) -> ConnectOptions + Send>;

/// Options of [`NatsDriver::connect`](crate::NatsDriver::connect). Every setter returns the
/// options, for chaining.
///
/// ```
/// use std::time::Duration;
/// use melody_nats::NatsOptions;
///
/// let options = NatsOptions::default()
///     .prefix("chat.eu")
///     .presence_timeout(Duration::from_millis(500));
/// assert_eq!(options.get_prefix(), "chat.eu");
/// ```
///
/// The queue in front of the driver (how many frames may wait to be sent, and how many go in
/// one batch) is the cluster's: [`ClusterOptions`](melody::cluster::ClusterOptions), given to
/// [`Cluster::attach_with`](melody::cluster::Cluster::attach_with).
pub struct NatsOptions {
    pub(crate) prefix: String,
    pub(crate) presence_timeout: Duration,
    pub(crate) max_reconnect_delay: Duration,
    pub(crate) retry_on_initial_connect: bool,
    customize: Option<Customize>,
}

impl Default for NatsOptions {
    fn default() -> Self {
        Self {
            prefix: "melody".to_owned(),
            presence_timeout: Duration::from_millis(250),
            max_reconnect_delay: Duration::from_secs(1),
            retry_on_initial_connect: false,
            customize: None,
        }
    }
}

impl fmt::Debug for NatsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsOptions")
            .field("prefix", &self.prefix)
            .field("presence_timeout", &self.presence_timeout)
            .field("max_reconnect_delay", &self.max_reconnect_delay)
            .field("retry_on_initial_connect", &self.retry_on_initial_connect)
            .field("customized", &self.customize.is_some())
            .finish()
    }
}

impl NatsOptions {
    /// The subject prefix (default `"melody"`). Nodes with the same prefix on the same broker
    /// form one cluster; other prefixes are other clusters. One or more dot-separated tokens,
    /// without spaces or the wildcards `*` and `>`.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a presence query waits for the nodes to answer (default 250 ms): the bound of
    /// presence's eventual consistency.
    #[must_use]
    pub fn presence_timeout(mut self, timeout: Duration) -> Self {
        self.presence_timeout = timeout;
        self
    }

    /// The longest wait between reconnect attempts (default 1 s). Attempts start at once and
    /// back off exponentially up to this, so an outage costs at most about this much beyond
    /// the broker's own downtime.
    #[must_use]
    pub fn max_reconnect_delay(mut self, delay: Duration) -> Self {
        self.max_reconnect_delay = delay;
        self
    }

    /// Connects in the background when the broker is unreachable at start, instead of failing
    /// [`NatsDriver::connect`](crate::NatsDriver::connect) (default off). Until it connects,
    /// what the node sends is dropped and reported, and presence is an error.
    #[must_use]
    pub fn retry_on_initial_connect(mut self, retry: bool) -> Self {
        self.retry_on_initial_connect = retry;
        self
    }

    /// Adjusts the client's [`ConnectOptions`]: credentials, TLS, a client name, ping interval.
    /// The driver then sets its event callback, reconnect delay and `no_echo` over it.
    ///
    /// ```
    /// use melody_nats::NatsOptions;
    ///
    /// let options = NatsOptions::default()
    ///     .connect_options(|o| o.name("chat-node").user_and_password("u".into(), "p".into()));
    /// # let _ = options;
    /// ```
    #[must_use]
    pub fn connect_options(
        mut self,
        customize: impl FnOnce(ConnectOptions) -> ConnectOptions + Send + 'static,
    ) -> Self {
        self.customize = Some(Box::new(customize));
        self
    }

    /// The subject prefix.
    #[must_use]
    pub fn get_prefix(&self) -> &str {
        &self.prefix
    }

    /// The client's options: the user's adjustments, then `no_echo` (a node never receives
    /// what it sent), endless reconnects with [`reconnect_delay`], and every client event sent
    /// to `events`.
    pub(crate) fn client_options(
        &mut self,
        events: mpsc::UnboundedSender<Event>,
    ) -> ConnectOptions {
        let max_delay = self.max_reconnect_delay;
        let mut options = ConnectOptions::new();
        if let Some(customize) = self.customize.take() {
            options = customize(options);
        }
        options = options
            .no_echo()
            .max_reconnects(None)
            .reconnect_delay_callback(move |attempts| reconnect_delay(attempts, max_delay))
            .event_callback(move |event| {
                let _ = events.send(event);
                std::future::ready(())
            });
        if self.retry_on_initial_connect {
            options = options.retry_on_initial_connect();
        }
        options
    }
}

/// Attempts start at once and back off exponentially (10 ms, 20 ms, …) up to `max`.
fn reconnect_delay(attempts: usize, max: Duration) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let exponent = u32::try_from(attempts - 2).unwrap_or(u32::MAX).min(20);
    Duration::from_millis(10u64 << exponent).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnects_back_off_up_to_the_cap() {
        let max = Duration::from_secs(1);
        let delays: Vec<_> = (0..10).map(|n| reconnect_delay(n, max)).collect();
        assert_eq!(delays[..4], [0, 0, 10, 20].map(Duration::from_millis));
        assert_eq!(delays[9], Duration::from_secs(1));
        assert_eq!(reconnect_delay(usize::MAX, max), max);
    }
}
