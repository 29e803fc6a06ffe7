//! A [NATS] backplane for [melody]: one WebSocket hub across many nodes, over NATS core
//! pub/sub, with cluster-wide presence gathered by request/reply.
//!
//! Every node connects its own [`NatsBackplane`] to the same NATS server (or cluster) with the
//! same subject prefix, and attaches it with [`Melody::set_backplane`]. From then on
//! [`Melody::broadcast`], [`Melody::publish`], [`Melody::send_to`] (and their variants) reach the
//! sessions of every node, and [`Melody::presence`], [`Melody::cluster_len`] and
//! [`Melody::cluster_members`] count across the cluster.
//!
//! ```no_run
//! use melody::Melody;
//! use melody_nats::{NatsBackplane, NatsOptions};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let melody = Melody::new();
//! let backplane = NatsBackplane::connect("nats://127.0.0.1:4222", NatsOptions::default()).await?;
//! melody.set_backplane(backplane);
//!
//! // Reaches every session on every node that shares the broker and the prefix.
//! melody.broadcast("hello, cluster")?;
//! // Counts sessions on every node that answers within the presence timeout.
//! let everyone = melody.cluster_len().await?;
//! # let _ = everyone;
//! # Ok(())
//! # }
//! ```
//!
//! # Subjects
//!
//! With the prefix `p` (default `"melody"`, see [`NatsOptions::prefix`]):
//!
//! | subject | carries |
//! |---|---|
//! | `p.all` | broadcasts ([`Target::All`], [`Target::AllExcept`]) |
//! | `p.topic.<encoded topic>` | topic publishes ([`Target::Topic`], [`Target::TopicExcept`]) |
//! | `p.session` | direct sends to a session on another node ([`Target::Session`]) |
//! | `p.presence` | presence requests; each node answers on the request's reply subject |
//! | `p.hello`, `p.here`, `p.bye` | nodes joining, answering a join, and leaving |
//!
//! A topic name may hold any character, but a NATS subject token may not contain spaces, dots or
//! wildcards, so the topic is written as the lower-case hex of its UTF-8 bytes (`"room 1"` →
//! `p.topic.726f6f6d2031`; the empty topic is `p.topic._`). The delivery itself carries the topic
//! name, so the subject is only for routing and for watching traffic with `nats sub`.
//!
//! Each node holds **one** subscription, `p.>`, so everything one node sends reaches the others
//! in the order it was sent (NATS keeps the order of one publisher's messages on one
//! subscription): a topic publish followed by a broadcast arrives in that order on every node.
//! The connection is made with `no_echo`, so a node never receives its own deliveries.
//!
//! # Delivery guarantees
//!
//! - **At most once.** NATS core pub/sub has no persistence and no acknowledgements: a delivery
//!   reaches every node that is connected and subscribed when the broker routes it, once, and is
//!   otherwise lost. There are no duplicates and no replays.
//! - **Order:** per sending node, deliveries arrive in the order they were published.
//! - **Publishing never blocks.** [`Backplane::publish`] puts the delivery in a bounded queue
//!   ([`NatsOptions::queue_capacity`]) drained by a task of the backplane. A full queue drops the
//!   delivery and reports it.
//! - **Outage.** When the connection to the broker is lost, the client reconnects by itself
//!   (every [`NatsOptions::max_reconnect_delay`] at most, 1 s by default) and re-subscribes.
//!   While it is known to be disconnected, deliveries are **dropped and reported**: each one is
//!   counted in the hub's `backplane_errors` ([`melody::Stats`]) and in
//!   [`NatsStats::dropped`], and logged through [`Inbox::report_error`]; none is replayed late
//!   after the reconnect. The loss of the connection is reported too, and the reconnect is
//!   counted in `backplane_reconnects`. Deliveries handed to the client in the instant before it
//!   notices the loss (on a broken socket, well under a millisecond; on a silent network
//!   partition, up to two ping intervals) may be lost without a report of their own, or, rarely,
//!   sent just after the reconnect. Deliveries sent by other nodes while this node is
//!   disconnected are lost for this node; they are not reported there (the other nodes do not
//!   know) but this node's own disconnect and reconnect are. A failed reconnect attempt is
//!   logged at debug level; the outage is counted once.
//! - **The gap.** Once the broker is back, each node reconnects within
//!   [`NatsOptions::max_reconnect_delay`] (attempts back off 0, 10, 20, 40 ms … up to it) and
//!   re-subscribes at once. Measured on loopback with three nodes (the crate's tests): delivery
//!   between nodes resumed 0.02 s after a broker restart following a short outage, and 0.8 s
//!   after one following a 1.5 s outage (2.3 s from the stop).
//! - **Presence is eventually consistent, with a bound.** [`Melody::presence`] publishes a
//!   request on `p.presence` and gathers one snapshot per node
//!   ([`Inbox::local_presence`], taken when the node answers) until every node known to be alive
//!   has answered or [`NatsOptions::presence_timeout`] (250 ms by default) has passed, whichever
//!   comes first. A node that does not answer in time is missing from that answer; a node that
//!   stopped or crashed stops answering at once (its subscription goes with its connection), so
//!   it disappears from the next answer, at the cost of that one answer taking the full timeout.
//!   A node that joined in the last few milliseconds may be missing from one answer. This
//!   node's own snapshot is always taken locally, and during an outage presence is an error.
//!
//! # Metrics
//!
//! The hub counts `backplane_sent`, `backplane_received`, `backplane_errors` and
//! `backplane_reconnects` ([`melody::Stats`], and the `metrics` facade with melody's feature
//! `metrics`). [`NatsBackplane::stats`] adds this backend's own view: published, dropped,
//! publish errors, received, reconnects, and the lag (deliveries waiting in the queue).
//!
//! [NATS]: https://nats.io
//! [`Melody::set_backplane`]: melody::Melody::set_backplane
//! [`Melody::broadcast`]: melody::Melody::broadcast
//! [`Melody::publish`]: melody::Melody::publish
//! [`Melody::send_to`]: melody::Melody::send_to
//! [`Melody::presence`]: melody::Melody::presence
//! [`Melody::cluster_len`]: melody::Melody::cluster_len
//! [`Melody::cluster_members`]: melody::Melody::cluster_members

use std::{
    collections::BTreeSet,
    fmt,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use async_nats::{Client, ConnectOptions, Event, Subject, Subscriber, connection::State};
use bytes::Bytes;
use futures_util::StreamExt;
use melody::backplane::{Backplane, Inbox, NodeId, NodePresence, PresenceFuture, Target};
use tokio::{runtime::Handle, sync::mpsc, task::JoinHandle, time::Instant};

/// What can go wrong with the NATS backplane.
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
    /// Flushing the connection failed.
    #[error("cannot flush the NATS connection: {0}")]
    Flush(#[from] async_nats::client::FlushError),
    /// Publishing failed.
    #[error("cannot publish to NATS: {0}")]
    Publish(#[from] async_nats::PublishError),
    /// The client is not connected to the broker (an outage): the delivery was dropped.
    #[error("not connected to NATS: delivery dropped")]
    Disconnected,
    /// The connection to the broker was lost; the client is reconnecting.
    #[error("lost the connection to NATS; reconnecting")]
    ConnectionLost,
    /// The outbound queue was full: the delivery was dropped.
    #[error("backplane queue full ({0} deliveries): delivery dropped")]
    QueueFull(usize),
    /// The backplane was closed.
    #[error("the NATS backplane is closed")]
    Closed,
    /// The backplane has not been attached to a hub yet.
    #[error("the NATS backplane is not attached to a hub")]
    NotStarted,
    /// An event reported by the client or the server.
    #[error("NATS: {0}")]
    Event(String),
}

/// Options of [`NatsBackplane::connect`].
pub struct NatsOptions {
    prefix: String,
    presence_timeout: Duration,
    queue_capacity: usize,
    max_reconnect_delay: Duration,
    retry_on_initial_connect: bool,
    customize: Option<Box<dyn FnOnce(ConnectOptions) -> ConnectOptions + Send>>,
}

impl Default for NatsOptions {
    fn default() -> Self {
        Self {
            prefix: "melody".to_owned(),
            presence_timeout: Duration::from_millis(250),
            queue_capacity: 8192,
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
            .field("queue_capacity", &self.queue_capacity)
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

    /// How many deliveries may wait to be handed to the client (default 8192). When full, a
    /// delivery is dropped and reported.
    #[must_use]
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity.max(1);
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
    /// [`NatsBackplane::connect`] (default off). Until it connects, deliveries are dropped and
    /// reported.
    #[must_use]
    pub fn retry_on_initial_connect(mut self, retry: bool) -> Self {
        self.retry_on_initial_connect = retry;
        self
    }

    /// Adjusts the client's [`ConnectOptions`]: credentials, TLS, a client name, ping interval.
    /// The backplane then sets its event callback, reconnect delay and `no_echo` over it.
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
}

/// This backend's counters (see [`NatsBackplane::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NatsStats {
    /// Deliveries handed to the NATS client.
    pub published: u64,
    /// Deliveries dropped: published while disconnected, or with the queue full.
    pub dropped: u64,
    /// Deliveries the client refused.
    pub publish_errors: u64,
    /// Deliveries received from other nodes.
    pub received: u64,
    /// Times the client reconnected after losing the connection.
    pub reconnects: u64,
    /// Times the client lost the connection.
    pub disconnects: u64,
    /// Deliveries waiting in the queue right now: the publishing lag.
    pub queued: u64,
}

/// The backplane over NATS core pub/sub. Create one per hub with [`NatsBackplane::connect`]
/// and attach it with [`melody::Melody::set_backplane`]. A clone is a handle to the same
/// connection, kept to read [`NatsBackplane::stats`] or to [`NatsBackplane::close`] it.
#[derive(Clone)]
pub struct NatsBackplane {
    inner: Arc<Inner>,
}

/// Owned by the handles; dropping the last one stops the tasks.
struct Inner {
    client: Client,
    shared: Arc<Shared>,
    queue: mpsc::Sender<(Subject, Bytes)>,
    pending: Mutex<Option<Pending>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    runtime: Handle,
}

/// What the tasks started by `start` take over.
struct Pending {
    subscriber: Subscriber,
    queue: mpsc::Receiver<(Subject, Bytes)>,
    events: mpsc::UnboundedReceiver<Event>,
}

/// Shared by the handles and the tasks.
struct Shared {
    subjects: Subjects,
    presence_timeout: Duration,
    queue_capacity: usize,
    inbox: OnceLock<Inbox>,
    /// Other nodes believed alive: a presence query stops waiting once all of them answered.
    known: Mutex<BTreeSet<NodeId>>,
    closed: AtomicBool,
    published: AtomicU64,
    dropped: AtomicU64,
    publish_errors: AtomicU64,
    received: AtomicU64,
    reconnects: AtomicU64,
    disconnects: AtomicU64,
}

struct Subjects {
    prefix: String,
    all: Subject,
    session: Subject,
    presence: Subject,
    hello: Subject,
    here: Subject,
    bye: Subject,
    wildcard: Subject,
}

impl Subjects {
    fn new(prefix: &str) -> Result<Self, Error> {
        let valid = !prefix.is_empty()
            && prefix.split('.').all(|token| {
                !token.is_empty()
                    && token
                        .chars()
                        .all(|c| !c.is_whitespace() && c != '*' && c != '>')
            });
        if !valid {
            return Err(Error::InvalidPrefix(prefix.to_owned()));
        }
        let subject = |name: &str| Subject::from(format!("{prefix}.{name}"));
        Ok(Self {
            prefix: prefix.to_owned(),
            all: subject("all"),
            session: subject("session"),
            presence: subject("presence"),
            hello: subject("hello"),
            here: subject("here"),
            bye: subject("bye"),
            wildcard: subject(">"),
        })
    }

    fn for_target(&self, target: &Target) -> Subject {
        match target {
            Target::Topic(topic) | Target::TopicExcept(topic, _) => {
                Subject::from(format!("{}.topic.{}", self.prefix, encode_topic(topic)))
            }
            Target::Session(_) => self.session.clone(),
            _ => self.all.clone(),
        }
    }
}

/// A topic name as one NATS subject token: the lower-case hex of its UTF-8 bytes, or `_` for
/// the empty name.
///
/// ```
/// assert_eq!(melody_nats::encode_topic("room 1"), "726f6f6d2031");
/// assert_eq!(melody_nats::encode_topic(""), "_");
/// ```
#[must_use]
pub fn encode_topic(topic: &str) -> String {
    if topic.is_empty() {
        return "_".to_owned();
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(topic.len() * 2);
    for byte in topic.bytes() {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    out
}

impl NatsBackplane {
    /// Connects to the NATS server at `url` (e.g. `nats://127.0.0.1:4222`; a comma-separated
    /// list for a cluster) and subscribes. Returns once the subscription is active on the
    /// server, so a broadcast from another node right after this returns is not missed. Call it
    /// inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPrefix`], and when the broker cannot be reached (unless
    /// [`NatsOptions::retry_on_initial_connect`]), [`Error::Connect`], [`Error::Subscribe`] or
    /// [`Error::Flush`].
    pub async fn connect(url: &str, options: NatsOptions) -> Result<Self, Error> {
        let subjects = Subjects::new(&options.prefix)?;
        let (events_tx, events) = mpsc::unbounded_channel();
        let max_delay = options.max_reconnect_delay;
        let mut connect = ConnectOptions::new();
        if let Some(customize) = options.customize {
            connect = customize(connect);
        }
        connect = connect
            .no_echo()
            .max_reconnects(None)
            .reconnect_delay_callback(move |attempts| reconnect_delay(attempts, max_delay))
            .event_callback(move |event| {
                let _ = events_tx.send(event);
                std::future::ready(())
            });
        if options.retry_on_initial_connect {
            connect = connect.retry_on_initial_connect();
        }
        let client = connect.connect(url).await?;
        let subscriber = client.subscribe(subjects.wildcard.clone()).await?;
        if !options.retry_on_initial_connect {
            client.flush().await?;
        }
        let (queue_tx, queue_rx) = mpsc::channel(options.queue_capacity);
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                shared: Arc::new(Shared {
                    subjects,
                    presence_timeout: options.presence_timeout,
                    queue_capacity: options.queue_capacity,
                    inbox: OnceLock::new(),
                    known: Mutex::default(),
                    closed: AtomicBool::new(false),
                    published: AtomicU64::new(0),
                    dropped: AtomicU64::new(0),
                    publish_errors: AtomicU64::new(0),
                    received: AtomicU64::new(0),
                    reconnects: AtomicU64::new(0),
                    disconnects: AtomicU64::new(0),
                }),
                queue: queue_tx,
                pending: Mutex::new(Some(Pending {
                    subscriber,
                    queue: queue_rx,
                    events,
                })),
                tasks: Mutex::default(),
                runtime: Handle::current(),
            }),
        })
    }

    /// This backend's counters.
    #[must_use]
    pub fn stats(&self) -> NatsStats {
        let shared = &self.inner.shared;
        NatsStats {
            published: shared.published.load(Relaxed),
            dropped: shared.dropped.load(Relaxed),
            publish_errors: shared.publish_errors.load(Relaxed),
            received: shared.received.load(Relaxed),
            reconnects: shared.reconnects.load(Relaxed),
            disconnects: shared.disconnects.load(Relaxed),
            queued: (shared.queue_capacity - self.inner.queue.capacity()) as u64,
        }
    }

    /// Whether the client is connected to the broker right now.
    #[must_use]
    pub fn is_connected(&self) -> bool {
        self.inner.client.connection_state() == State::Connected
    }

    /// The underlying NATS client (to share the connection for other subjects).
    #[must_use]
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// Leaves the cluster: tells the other nodes (they drop this node from presence at once),
    /// stops receiving, and flushes what was published. Deliveries published afterwards are
    /// dropped and reported as [`Error::Closed`]. Dropping every handle (and the hub) does the
    /// same without the goodbye: the other nodes notice at their next presence query.
    pub async fn close(&self) {
        if self.inner.shared.closed.swap(true, Relaxed) {
            return;
        }
        if let Some(inbox) = self.inner.shared.inbox.get() {
            let _ = self
                .inner
                .client
                .publish(
                    self.inner.shared.subjects.bye.clone(),
                    node_bytes(inbox.node()),
                )
                .await;
        }
        let _ = self.inner.client.flush().await;
        self.inner.abort_tasks();
    }
}

impl fmt::Debug for NatsBackplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsBackplane")
            .field("prefix", &self.inner.shared.subjects.prefix)
            .field("state", &self.inner.client.connection_state())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn abort_tasks(&self) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.abort_tasks();
        // A subscriber unsubscribes on a runtime task when dropped: drop it on ours.
        if let Some(pending) = self
            .pending
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
        {
            self.runtime.spawn(async move { drop(pending) });
        }
    }
}

impl Backplane for NatsBackplane {
    fn start(&self, inbox: Inbox) {
        let inner = &self.inner;
        let Some(pending) = inner
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
        else {
            tracing::error!("a NatsBackplane serves one hub: connect one per hub");
            return;
        };
        let _ = inner.shared.inbox.set(inbox.clone());
        let Pending {
            subscriber,
            queue,
            events,
        } = pending;
        let client = &inner.client;
        let shared = &inner.shared;
        let tasks = [
            inner.runtime.spawn(receive(
                client.clone(),
                shared.clone(),
                inbox.clone(),
                subscriber,
            )),
            inner
                .runtime
                .spawn(send(client.clone(), shared.clone(), inbox.clone(), queue)),
            inner
                .runtime
                .spawn(watch(client.clone(), shared.clone(), inbox.clone(), events)),
        ];
        inner
            .tasks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .extend(tasks);
        let (client, hello) = (client.clone(), shared.subjects.hello.clone());
        inner.runtime.spawn(async move {
            let _ = client.publish(hello, node_bytes(inbox.node())).await;
        });
    }

    fn publish(&self, target: &Target, delivery: Bytes) {
        let shared = &self.inner.shared;
        let error = if shared.closed.load(Relaxed) {
            Error::Closed
        } else {
            match self
                .inner
                .queue
                .try_send((shared.subjects.for_target(target), delivery))
            {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(_)) => Error::QueueFull(shared.queue_capacity),
                Err(mpsc::error::TrySendError::Closed(_)) => Error::Closed,
            }
        };
        shared.dropped.fetch_add(1, Relaxed);
        if let Some(inbox) = shared.inbox.get() {
            inbox.report_error(&error);
        }
    }

    fn presence(&self) -> Option<PresenceFuture> {
        let client = self.inner.client.clone();
        let shared = self.inner.shared.clone();
        Some(Box::pin(async move {
            gather(client, shared)
                .await
                .map_err(|error| Box::new(error) as melody::backplane::BackplaneError)
        }))
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

fn node_bytes(node: NodeId) -> Bytes {
    Bytes::copy_from_slice(&node.0.to_be_bytes())
}

fn parse_node(payload: &[u8]) -> Option<NodeId> {
    Some(NodeId(u64::from_be_bytes(payload.try_into().ok()?)))
}

impl Shared {
    fn known(&self) -> std::sync::MutexGuard<'_, BTreeSet<NodeId>> {
        self.known
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Reads the one subscription in order: deliveries, presence requests, joins and leaves.
async fn receive(client: Client, shared: Arc<Shared>, inbox: Inbox, mut subscriber: Subscriber) {
    let prefix = shared.subjects.prefix.len() + 1;
    while let Some(message) = subscriber.next().await {
        let name = message.subject.get(prefix..).unwrap_or_default();
        match name {
            "presence" => {
                let Some(reply) = message.reply else { continue };
                let snapshot = inbox.local_presence().encode();
                if let Err(error) = client.publish(reply, snapshot).await {
                    inbox.report_error(&Error::Publish(error));
                }
            }
            "hello" => {
                if let Some(node) = parse_node(&message.payload) {
                    shared.known().insert(node);
                    let here = shared.subjects.here.clone();
                    if let Err(error) = client.publish(here, node_bytes(inbox.node())).await {
                        inbox.report_error(&Error::Publish(error));
                    }
                }
            }
            "here" => {
                if let Some(node) = parse_node(&message.payload) {
                    shared.known().insert(node);
                }
            }
            "bye" => {
                if let Some(node) = parse_node(&message.payload) {
                    shared.known().remove(&node);
                }
            }
            _ => match inbox.deliver(&message.payload) {
                Ok(_) => {
                    shared.received.fetch_add(1, Relaxed);
                }
                Err(error) => {
                    tracing::warn!(subject = %message.subject, %error, "undecodable delivery");
                }
            },
        }
    }
}

/// Drains the queue into the client; drops (and reports) what comes while disconnected.
async fn send(
    client: Client,
    shared: Arc<Shared>,
    inbox: Inbox,
    mut queue: mpsc::Receiver<(Subject, Bytes)>,
) {
    while let Some((subject, delivery)) = queue.recv().await {
        if client.connection_state() != State::Connected {
            shared.dropped.fetch_add(1, Relaxed);
            inbox.report_error(&Error::Disconnected);
            continue;
        }
        match client.publish(subject, delivery).await {
            Ok(()) => {
                shared.published.fetch_add(1, Relaxed);
            }
            Err(error) => {
                shared.publish_errors.fetch_add(1, Relaxed);
                inbox.report_error(&Error::Publish(error));
            }
        }
    }
}

/// Turns the client's connection events into the hub's counters and a fresh `hello`.
async fn watch(
    client: Client,
    shared: Arc<Shared>,
    inbox: Inbox,
    mut events: mpsc::UnboundedReceiver<Event>,
) {
    // Whether the client has been connected since it started, and whether it is now.
    let (mut ever, mut connected) = (false, false);
    // One report per outage, not one per failed reconnect attempt.
    let mut reported = false;
    while let Some(event) = events.recv().await {
        match event {
            Event::Connected => {
                connected = true;
                reported = false;
                if std::mem::replace(&mut ever, true) {
                    shared.reconnects.fetch_add(1, Relaxed);
                    inbox.reconnected();
                    // Other nodes may have forgotten this one while it was away.
                    let hello = shared.subjects.hello.clone();
                    let _ = client.publish(hello, node_bytes(inbox.node())).await;
                }
            }
            Event::Disconnected => {
                connected = false;
                reported = true;
                shared.disconnects.fetch_add(1, Relaxed);
                inbox.report_error(&Error::ConnectionLost);
            }
            Event::ClientError(error) if !connected => {
                if !std::mem::replace(&mut reported, true) {
                    inbox.report_error(&Error::Event(error.to_string()));
                } else {
                    tracing::debug!(node = %inbox.node(), %error, "NATS reconnect attempt failed");
                }
            }
            Event::LameDuckMode => {
                tracing::info!(node = %inbox.node(), "NATS server entering lame duck mode");
            }
            Event::Draining | Event::Closed => {}
            other => inbox.report_error(&Error::Event(other.to_string())),
        }
    }
}

/// One presence query: ask every node, wait for the known ones (or the timeout).
async fn gather(client: Client, shared: Arc<Shared>) -> Result<Vec<NodePresence>, Error> {
    let inbox = shared.inbox.get().ok_or(Error::NotStarted)?.clone();
    if shared.closed.load(Relaxed) {
        return Err(Error::Closed);
    }
    if client.connection_state() != State::Connected {
        return Err(Error::Disconnected);
    }
    let deadline = Instant::now() + shared.presence_timeout;
    let waiting_for = shared.known().clone();
    let mut nodes = vec![inbox.local_presence()];
    let reply = client.new_inbox();
    let mut replies = client.subscribe(reply.clone()).await?;
    client
        .publish_with_reply(
            shared.subjects.presence.clone(),
            reply,
            node_bytes(inbox.node()),
        )
        .await?;
    let mut answered = BTreeSet::new();
    // With no node known, wait the whole timeout: a node may have joined unannounced.
    while waiting_for.is_empty() || !waiting_for.is_subset(&answered) {
        let Ok(Some(message)) = tokio::time::timeout_at(deadline, replies.next()).await else {
            break;
        };
        let Ok(snapshot) = NodePresence::decode(&message.payload) else {
            continue;
        };
        if snapshot.node != inbox.node() && answered.insert(snapshot.node) {
            nodes.push(snapshot);
        }
    }
    {
        // Whoever did not answer in time is taken for gone, whoever answered for alive.
        let mut known = shared.known();
        known.retain(|node| answered.contains(node) || !waiting_for.contains(node));
        known.extend(answered);
    }
    if Instant::now() < deadline {
        // Answered early: a node that answers late (slow, or unknown) is still learned, so the
        // next query waits for it.
        let shared = shared.clone();
        tokio::spawn(async move {
            while let Ok(Some(message)) = tokio::time::timeout_at(deadline, replies.next()).await {
                if let Ok(snapshot) = NodePresence::decode(&message.payload) {
                    shared.known().insert(snapshot.node);
                }
            }
        });
    }
    nodes.sort_by_key(|node| node.node);
    Ok(nodes)
}
