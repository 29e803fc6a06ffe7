//! [`RedisDriver`]: the cluster [`Driver`] over Redis pub/sub, with presence kept in Redis.

use std::{
    fmt,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use melody::cluster::{Driver, DriverFuture, Link, NodePresence, Outgoing};
use redis::{
    Client,
    aio::{ConnectionManager, ConnectionManagerConfig, PubSub},
};
use tokio::{runtime::Handle, task::AbortHandle, time::timeout};

use crate::{
    Error, RedisOptions,
    options::Names,
    stats::{Counters, RedisStats},
    tasks::{heartbeat, read_presence, subscribe, subscriber},
};

/// A cluster [`Driver`] over Redis pub/sub, with cluster-wide presence kept in Redis.
///
/// Create it with [`RedisDriver::connect`] and attach it to a hub with
/// [`Cluster::attach`](melody::cluster::Cluster::attach). A clone is a handle to the same
/// driver: keep one to read [`stats`](Self::stats) or to [`stop`](Self::stop) or
/// [`close`](Self::close) it. Attach it to one hub only. Its tasks end when the hub is gone, or at
/// [`stop`](Self::stop) / [`close`](Self::close).
///
/// See the [crate docs](crate) for the channel layout and the delivery guarantees.
#[derive(Clone)]
pub struct RedisDriver {
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
    link: OnceLock<Link>,
    tasks: Mutex<Vec<AbortHandle>>,
    stopped: AtomicBool,
    counters: Arc<Counters>,
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

/// The connection commands go through: a connection manager that reconnects on the next
/// command, bounded by the options' timeouts.
pub(crate) async fn command_connection(
    client: &Client,
    options: &RedisOptions,
) -> Result<ConnectionManager, Error> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(options.command_timeout))
        .set_response_timeout(Some(options.command_timeout))
        .set_number_of_retries(1)
        .set_min_delay(options.reconnect_min)
        .set_max_delay(options.reconnect_max);
    timeout(
        options.command_timeout,
        ConnectionManager::new_with_config(client.clone(), config),
    )
    .await
    .map_err(|_| Error::Timeout)?
    .map_err(Error::from)
}

/// Locks a mutex that no panic leaves inconsistent (each update is one step).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl RedisDriver {
    /// Connects to Redis at `url` (`redis://[:password@]host[:port][/db]`) and subscribes to the
    /// namespace's channels, so that once it is attached to a hub nothing another node
    /// publishes is missed. Must be called inside a tokio runtime; the driver's tasks run on
    /// that runtime.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOptions`] for options that do not validate, [`Error::Redis`] for a bad URL
    /// or a broker that cannot be reached, [`Error::Timeout`] when it does not answer within the
    /// command timeout.
    pub async fn connect(url: &str, options: RedisOptions) -> Result<Self, Error> {
        options.validate()?;
        let runtime = Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let client = Client::open(url)?;
        let manager = command_connection(&client, &options).await?;
        let names = Arc::new(Names::new(&options.namespace));
        let pubsub = subscribe(&client, &names, options.command_timeout).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                options,
                names,
                client,
                manager,
                runtime,
                pubsub: Mutex::new(Some(pubsub)),
                link: OnceLock::new(),
                tasks: Mutex::new(Vec::new()),
                stopped: AtomicBool::new(false),
                counters: Arc::default(),
            }),
        })
    }

    /// This driver's counters now.
    #[must_use]
    pub fn stats(&self) -> RedisStats {
        self.inner.counters.snapshot()
    }

    /// The options it was made with.
    #[must_use]
    pub fn options(&self) -> &RedisOptions {
        &self.inner.options
    }

    /// Stops at once, as a crash would: no more publishing, receiving or heartbeats. The
    /// node's presence snapshot is left to expire (within the presence ttl); use
    /// [`close`](Self::close) to leave cleanly. Frames sent afterwards are reported as lost.
    /// Idempotent.
    pub fn stop(&self) {
        self.inner.stopped.store(true, Ordering::Relaxed);
        self.inner.abort_tasks();
        self.inner
            .counters
            .subscribed
            .store(false, Ordering::Relaxed);
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
        let Some(link) = self.inner.link.get() else {
            return Ok(());
        };
        let node = link.node().to_string();
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

    /// Sends a batch as one pipeline of PUBLISHes, in order.
    async fn publish_batch(&self, batch: &[Outgoing]) -> Result<(), Error> {
        if self.inner.stopped.load(Ordering::Relaxed) {
            return Err(Error::Stopped);
        }
        let names = &self.inner.names;
        let mut pipe = redis::pipe();
        for outgoing in batch {
            let channel = match outgoing.target.topic() {
                Some(topic) => format!("{}{topic}", names.topic_prefix),
                // Everyone, and direct sends: a node does not know where another's session is.
                None => names.all.clone(),
            };
            pipe.cmd("PUBLISH").arg(channel).arg(&outgoing.frame[..]);
        }
        let started = Instant::now();
        let mut conn = self.inner.manager.clone();
        let mut result = pipe.query_async::<Vec<i64>>(&mut conn).await;
        if matches!(&result, Err(error) if error.is_connection_refusal()) {
            // Nothing was sent: the connection was down. One more try, on the connection the
            // manager is re-establishing now.
            result = pipe.query_async::<Vec<i64>>(&mut conn).await;
        }
        let counters = &self.inner.counters;
        let sent = batch.len() as u64;
        match result {
            Ok(heard) => {
                Counters::add(&counters.published, sent);
                let unheard = heard.iter().filter(|&&n| n == 0).count() as u64;
                Counters::add(&counters.unheard, unheard);
                counters.lag(started.elapsed());
                Ok(())
            }
            Err(error) => {
                Counters::add(&counters.publish_errors, sent);
                Err(Error::Publish(error))
            }
        }
    }
}

impl fmt::Debug for RedisDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisDriver")
            .field("namespace", &self.inner.options.namespace)
            .field("node", &self.inner.link.get().map(Link::node))
            .finish_non_exhaustive()
    }
}

impl Driver for RedisDriver {
    fn start(&self, link: Link) {
        if self.inner.link.set(link.clone()).is_err() {
            link.error(&Error::AlreadyStarted);
            return;
        }
        let Some(pubsub) = lock(&self.inner.pubsub).take() else {
            return;
        };
        let inner = &self.inner;
        inner.counters.subscribed.store(true, Ordering::Relaxed);
        inner.spawn(subscriber(
            pubsub,
            inner.client.clone(),
            inner.names.clone(),
            inner.options.clone(),
            link.clone(),
            inner.counters.clone(),
        ));
        inner.spawn(heartbeat(
            inner.manager.clone(),
            inner.names.clone(),
            inner.options.clone(),
            link,
            inner.counters.clone(),
        ));
    }

    fn publish<'a>(&'a self, batch: &'a [Outgoing]) -> DriverFuture<'a, ()> {
        Box::pin(async move { Ok(self.publish_batch(batch).await?) })
    }

    fn presence(&self) -> Option<DriverFuture<'_, Vec<NodePresence>>> {
        let link = self.inner.link.get()?.clone();
        let read = read_presence(
            self.inner.manager.clone(),
            self.inner.names.clone(),
            link,
            self.inner.options.command_timeout,
        );
        Some(Box::pin(async move { Ok(read.await?) }))
    }

    fn stop(&self) {
        RedisDriver::stop(self);
    }
}
