//! [`RedisBackplane`]: the [`Backplane`] implementation and its three tasks (publisher,
//! subscriber, presence heartbeat).

use std::{
    fmt,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_util::StreamExt;
use melody::backplane::{Backplane, Inbox, NodePresence, PresenceFuture, Target};
use redis::{
    Client,
    aio::{ConnectionManager, ConnectionManagerConfig, PubSub},
};
use tokio::{
    runtime::Handle,
    sync::mpsc,
    task::AbortHandle,
    time::{MissedTickBehavior, timeout},
};

use crate::{
    Error, RedisOptions,
    options::Names,
    stats::{Counters, RedisStats},
};

/// The most deliveries sent to Redis in one pipeline.
const BATCH: usize = 256;

/// A [`Backplane`] over Redis pub/sub, with cluster-wide presence kept in Redis.
///
/// Create it with [`RedisBackplane::connect`] and attach it to a hub with
/// [`Melody::set_backplane`](melody::Melody::set_backplane). A clone is a handle to the same
/// backplane: keep one to read [`stats`](Self::stats) or to [`stop`](Self::stop) it. Attach it
/// to one hub only. Its tasks end when the last clone is dropped (the hub holds one for its
/// whole life), or at [`stop`](Self::stop) / [`close`](Self::close).
///
/// See the [crate docs](crate) for the channel layout and the delivery guarantees.
#[derive(Clone)]
pub struct RedisBackplane {
    inner: Arc<Inner>,
}

struct Inner {
    options: RedisOptions,
    names: Arc<Names>,
    client: Client,
    manager: ConnectionManager,
    runtime: Handle,
    /// The subscription made by `connect`, taken by `start`.
    pubsub: Mutex<Option<PubSub>>,
    queue: mpsc::Sender<Outgoing>,
    queue_rx: Mutex<Option<mpsc::Receiver<Outgoing>>>,
    inbox: OnceLock<Inbox>,
    tasks: Mutex<Vec<AbortHandle>>,
    stopped: std::sync::atomic::AtomicBool,
    counters: Arc<Counters>,
}

/// One delivery on its way to Redis.
struct Outgoing {
    channel: Channel,
    payload: Bytes,
    queued: Instant,
}

enum Channel {
    All,
    Topic(String),
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.abort_tasks();
    }
}

impl Inner {
    fn abort_tasks(&self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }

    fn spawn<F: Future<Output = ()> + Send + 'static>(&self, task: F) {
        let handle = self.runtime.spawn(task);
        lock(&self.tasks).push(handle.abort_handle());
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl RedisBackplane {
    /// Connects to Redis at `url` (`redis://[:password@]host[:port][/db]`) and subscribes to the
    /// namespace's channels, so that once it is attached to a hub nothing another node
    /// publishes is missed. Must be called inside a tokio runtime; the backplane's tasks run on
    /// that runtime.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOptions`] for options that do not validate, [`Error::Redis`] for a bad URL
    /// or a broker that cannot be reached (within the command timeout).
    pub async fn connect(url: &str, options: RedisOptions) -> Result<Self, Error> {
        options.validate()?;
        let runtime = Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let client = Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.command_timeout))
            .set_response_timeout(Some(options.command_timeout))
            .set_number_of_retries(1)
            .set_min_delay(options.reconnect_min)
            .set_max_delay(options.reconnect_max);
        let manager = timeout(
            options.command_timeout,
            ConnectionManager::new_with_config(client.clone(), config),
        )
        .await
        .map_err(|_| Error::Timeout)??;
        let names = Arc::new(Names::new(&options.namespace));
        let pubsub = subscribe(&client, &names, options.command_timeout).await?;
        let (queue, queue_rx) = mpsc::channel(options.queue_capacity);
        Ok(Self {
            inner: Arc::new(Inner {
                options,
                names,
                client,
                manager,
                runtime,
                pubsub: Mutex::new(Some(pubsub)),
                queue,
                queue_rx: Mutex::new(Some(queue_rx)),
                inbox: OnceLock::new(),
                tasks: Mutex::new(Vec::new()),
                stopped: std::sync::atomic::AtomicBool::new(false),
                counters: Arc::default(),
            }),
        })
    }

    /// This backplane's counters now.
    #[must_use]
    pub fn stats(&self) -> RedisStats {
        let mut stats = self.inner.counters.snapshot();
        stats.queued = (self.inner.options.queue_capacity - self.inner.queue.capacity()) as u64;
        stats
    }

    /// The options it was made with.
    #[must_use]
    pub fn options(&self) -> &RedisOptions {
        &self.inner.options
    }

    /// Stops at once, as a crash would: no more publishing, receiving or heartbeats. The
    /// node's presence snapshot is left to expire (within the presence ttl); use
    /// [`close`](Self::close) to leave cleanly. Deliveries published afterwards are reported as
    /// lost. Idempotent.
    pub fn stop(&self) {
        self.inner
            .stopped
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.inner.abort_tasks();
        self.inner
            .counters
            .subscribed
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// Leaves the cluster cleanly: [`stop`](Self::stop)s, then deletes this node's presence
    /// snapshot so the other nodes stop counting its sessions at once.
    ///
    /// # Errors
    ///
    /// [`Error::Redis`] or [`Error::Timeout`] when the snapshot could not be deleted (it then
    /// expires within the presence ttl).
    pub async fn close(&self) -> Result<(), Error> {
        self.stop();
        let Some(inbox) = self.inner.inbox.get() else {
            return Ok(());
        };
        let node = inbox.node().to_string();
        let mut conn = self.inner.manager.clone();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("DEL")
            .arg(self.inner.names.presence_key(&node))
            .ignore()
            .cmd("SREM")
            .arg(&self.inner.names.nodes)
            .arg(&node)
            .ignore();
        let request = pipe.query_async::<()>(&mut conn);
        timeout(self.inner.options.command_timeout, request)
            .await
            .map_err(|_| Error::Timeout)??;
        Ok(())
    }

    fn lost(&self, error: &Error) {
        Counters::add(&self.inner.counters.dropped, 1);
        if let Some(inbox) = self.inner.inbox.get() {
            inbox.report_error(error);
        }
    }
}

impl fmt::Debug for RedisBackplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackplane")
            .field("namespace", &self.inner.options.namespace)
            .field("node", &self.inner.inbox.get().map(Inbox::node))
            .finish_non_exhaustive()
    }
}

impl Backplane for RedisBackplane {
    fn start(&self, inbox: Inbox) {
        if self.inner.inbox.set(inbox.clone()).is_err() {
            inbox.report_error(&Error::AlreadyStarted);
            return;
        }
        let (Some(pubsub), Some(queue_rx)) = (
            lock(&self.inner.pubsub).take(),
            lock(&self.inner.queue_rx).take(),
        ) else {
            return;
        };
        let inner = &self.inner;
        inner
            .counters
            .subscribed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        inner.spawn(publisher(
            queue_rx,
            inner.manager.clone(),
            inner.names.clone(),
            inbox.clone(),
            inner.counters.clone(),
        ));
        inner.spawn(subscriber(
            pubsub,
            inner.client.clone(),
            inner.names.clone(),
            inner.options.clone(),
            inbox.clone(),
            inner.counters.clone(),
        ));
        inner.spawn(heartbeat(
            inner.manager.clone(),
            inner.names.clone(),
            inner.options.clone(),
            inbox,
            inner.counters.clone(),
        ));
    }

    fn publish(&self, target: &Target, delivery: Bytes) {
        if self
            .inner
            .stopped
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            self.lost(&Error::Stopped);
            return;
        }
        let channel = match target.topic() {
            Some(topic) => Channel::Topic(format!("{}{topic}", self.inner.names.topic_prefix)),
            // Broadcasts, and direct sends: a node does not know where another's session is.
            None => Channel::All,
        };
        let outgoing = Outgoing {
            channel,
            payload: delivery,
            queued: Instant::now(),
        };
        match self.inner.queue.try_send(outgoing) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.lost(&Error::QueueFull),
            Err(mpsc::error::TrySendError::Closed(_)) => self.lost(&Error::Stopped),
        }
    }

    fn presence(&self) -> Option<PresenceFuture> {
        let inbox = self.inner.inbox.get()?.clone();
        let mut conn = self.inner.manager.clone();
        let names = self.inner.names.clone();
        let limit = self.inner.options.command_timeout;
        Some(Box::pin(async move {
            let read = async {
                let own = inbox.node().to_string();
                let nodes: Vec<String> = redis::cmd("SMEMBERS")
                    .arg(&names.nodes)
                    .query_async(&mut conn)
                    .await?;
                let others: Vec<String> = nodes.into_iter().filter(|n| *n != own).collect();
                let snapshots: Vec<Option<Vec<u8>>> = if others.is_empty() {
                    Vec::new()
                } else {
                    let keys: Vec<String> = others.iter().map(|n| names.presence_key(n)).collect();
                    redis::cmd("MGET").arg(keys).query_async(&mut conn).await?
                };
                // This node's own presence is read live, the others' from their last heartbeat.
                let mut all = vec![inbox.local_presence()];
                let mut expired = Vec::new();
                for (node, snapshot) in others.into_iter().zip(snapshots) {
                    match snapshot.map(|bytes| NodePresence::decode(&bytes)) {
                        Some(Ok(presence)) => all.push(presence),
                        Some(Err(error)) => {
                            tracing::debug!(%node, %error, "unreadable presence snapshot");
                        }
                        None => expired.push(node),
                    }
                }
                if !expired.is_empty() {
                    // Tidy the set: a node whose snapshot expired is gone (a live one re-adds
                    // itself at its next heartbeat).
                    let _: Result<(), _> = redis::cmd("SREM")
                        .arg(&names.nodes)
                        .arg(expired)
                        .query_async(&mut conn)
                        .await;
                }
                all.sort_by_key(|presence| presence.node);
                Ok::<_, redis::RedisError>(all)
            };
            match timeout(limit, read).await {
                Ok(Ok(all)) => Ok(all),
                Ok(Err(error)) => Err(Error::from(error).into()),
                Err(_) => Err(Error::Timeout.into()),
            }
        }))
    }
}

/// A pub/sub connection subscribed to the namespace's broadcast channel and topic pattern.
async fn subscribe(client: &Client, names: &Names, limit: Duration) -> Result<PubSub, Error> {
    let connect = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(&names.all).await?;
        pubsub.psubscribe(&names.topic_pattern).await?;
        Ok::<_, redis::RedisError>(pubsub)
    };
    Ok(timeout(limit, connect)
        .await
        .map_err(|_| Error::Timeout)??)
}

/// Drains the outgoing queue into Redis, a pipeline of PUBLISHes at a time, in order.
async fn publisher(
    mut queue: mpsc::Receiver<Outgoing>,
    mut conn: ConnectionManager,
    names: Arc<Names>,
    inbox: Inbox,
    counters: Arc<Counters>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while queue.recv_many(&mut batch, BATCH).await > 0 {
        let mut pipe = redis::pipe();
        for outgoing in &batch {
            let channel = match &outgoing.channel {
                Channel::All => names.all.as_str(),
                Channel::Topic(channel) => channel.as_str(),
            };
            pipe.cmd("PUBLISH").arg(channel).arg(&outgoing.payload[..]);
        }
        let mut result = pipe.query_async::<Vec<i64>>(&mut conn).await;
        if matches!(&result, Err(error) if error.is_connection_refusal()) {
            // Nothing was sent: the connection was down. One more try, on the connection the
            // manager is re-establishing now.
            result = pipe.query_async::<Vec<i64>>(&mut conn).await;
        }
        let sent = batch.len() as u64;
        match result {
            Ok(heard) => {
                Counters::add(&counters.published, sent);
                let unheard = heard.iter().filter(|&&n| n == 0).count() as u64;
                Counters::add(&counters.unheard, unheard);
                counters.lag(batch[0].queued.elapsed());
            }
            Err(error) => {
                Counters::add(&counters.publish_errors, sent);
                let error = Error::Publish(error);
                for _ in 0..sent {
                    inbox.report_error(&error);
                }
            }
        }
        batch.clear();
    }
}

/// Receives what the other nodes publish and hands it to the hub; reconnects with backoff and
/// re-subscribes when the connection is lost.
async fn subscriber(
    first: PubSub,
    client: Client,
    names: Arc<Names>,
    options: RedisOptions,
    inbox: Inbox,
    counters: Arc<Counters>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let own = inbox.node().0.to_be_bytes();
    let mut pubsub = Some(first);
    loop {
        let connection = match pubsub.take() {
            Some(connection) => connection,
            None => {
                let mut delay = options.reconnect_min;
                let connection = loop {
                    tokio::time::sleep(delay).await;
                    match subscribe(&client, &names, options.command_timeout).await {
                        Ok(connection) => break connection,
                        Err(error) => {
                            tracing::debug!(%error, ?delay, "redis backplane: reconnect failed");
                            delay = (delay * 2).min(options.reconnect_max);
                        }
                    }
                };
                counters.subscribed.store(true, Relaxed);
                Counters::add(&counters.reconnects, 1);
                inbox.reconnected();
                connection
            }
        };
        let (mut sink, mut stream) = connection.split();
        let mut health = tokio::time::interval(options.health_check);
        health.set_missed_tick_behavior(MissedTickBehavior::Delay);
        health.reset();
        let lost = loop {
            tokio::select! {
                message = stream.next() => {
                    let Some(message) = message else { break Error::Disconnected };
                    health.reset();
                    let payload = message.get_payload_bytes();
                    // The wire form starts with a version byte and the origin node: skip this
                    // node's own deliveries without decoding them (the inbox would skip them
                    // too).
                    if payload.first() == Some(&1) && payload.get(1..9) == Some(&own[..]) {
                        continue;
                    }
                    match inbox.deliver(payload) {
                        Ok(_) => Counters::add(&counters.received, 1),
                        Err(error) => tracing::debug!(%error, "redis backplane: bad delivery"),
                    }
                }
                _ = health.tick() => {
                    let ping = timeout(options.command_timeout, sink.ping::<redis::Value>()).await;
                    if !matches!(ping, Ok(Ok(_))) {
                        break Error::HealthCheck;
                    }
                }
            }
        };
        counters.subscribed.store(false, Relaxed);
        inbox.report_error(&lost);
    }
}

/// Writes this node's presence snapshot every heartbeat, with the presence ttl as its expiry.
async fn heartbeat(
    mut conn: ConnectionManager,
    names: Arc<Names>,
    options: RedisOptions,
    inbox: Inbox,
    counters: Arc<Counters>,
) {
    let node = inbox.node().to_string();
    let key = names.presence_key(&node);
    let ttl = u64::try_from(options.presence_ttl.as_millis()).unwrap_or(u64::MAX);
    let mut tick = tokio::time::interval(options.heartbeat);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        let snapshot = inbox.local_presence().encode();
        let write = redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(&key)
            .arg(&snapshot[..])
            .arg("PX")
            .arg(ttl)
            .ignore()
            .cmd("SADD")
            .arg(&names.nodes)
            .arg(&node)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&names.nodes)
            .arg(ttl)
            .ignore()
            .query_async::<()>(&mut conn)
            .await;
        match write {
            Ok(()) => failing = false,
            Err(error) => {
                Counters::add(&counters.heartbeat_errors, 1);
                // One report per outage, not one a second.
                if !failing {
                    inbox.report_error(&Error::Heartbeat(error));
                }
                failing = true;
            }
        }
    }
}
