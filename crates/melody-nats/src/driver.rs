//! [`NatsDriver`]: the [`Driver`] over NATS core pub/sub — connecting, starting the receiving
//! tasks, publishing a batch, stopping.

use std::{
    fmt,
    sync::{
        Arc, Mutex, MutexGuard, OnceLock,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    time::Duration,
};

use async_nats::{
    Client, Event, Subscriber,
    client::{PublishErrorKind, RequestErrorKind},
    connection::State,
};
use bytes::Bytes;
use melody::cluster::{Driver, DriverFuture, Link, NodePresence, Outgoing};
use tokio::{runtime::Handle, sync::mpsc, task::AbortHandle};

use crate::{
    Error, NatsOptions, NatsStats,
    presence::{self, Known},
    stats::Counters,
    subjects::{Subjects, node_bytes},
    tasks,
};

/// A cluster [`Driver`] over NATS core pub/sub, with presence by request/reply.
///
/// Connect one per hub with [`NatsDriver::connect`] and attach it with
/// [`Cluster::attach`](melody::cluster::Cluster::attach). A clone is a handle to the same
/// connection: keep one to read [`stats`](Self::stats), to check
/// [`is_connected`](Self::is_connected) or to use the [`client`](Self::client) for other
/// subjects. Attach it to one hub only.
///
/// See the [crate docs](crate) for the subjects, the guarantees and the lifetime.
#[derive(Clone)]
pub struct NatsDriver {
    inner: Arc<Inner>,
}

/// Owned by the handles (the cluster holds one); dropping the last one stops the tasks.
struct Inner {
    client: Client,
    shared: Arc<Shared>,
    /// What `connect` prepared and `start` hands to the tasks.
    pending: Mutex<Option<Pending>>,
    tasks: Mutex<Vec<AbortHandle>>,
    runtime: Handle,
}

/// The subscription and the client's events, from `connect` until `start`.
struct Pending {
    subscriber: Subscriber,
    events: mpsc::UnboundedReceiver<Event>,
}

/// What the handles and the tasks share. It holds no task and no handle, so the tasks never
/// keep the driver alive.
pub(crate) struct Shared {
    pub(crate) subjects: Subjects,
    pub(crate) presence_timeout: Duration,
    /// The node's way back into its cluster, once started.
    pub(crate) link: OnceLock<Link>,
    /// Other nodes believed alive (see [`presence`]).
    pub(crate) known: Arc<Known>,
    pub(crate) stopped: AtomicBool,
    pub(crate) counters: Counters,
}

/// Locks a mutex that no panic leaves inconsistent (each update is one step).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl NatsDriver {
    /// Connects to the NATS server at `url` (e.g. `nats://127.0.0.1:4222`; a comma-separated
    /// list for a cluster) and subscribes to the prefix. Returns once the subscription is active
    /// on the server, so a send from another node right after this returns is not missed.
    /// Call it inside a tokio runtime: the driver's tasks run there.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPrefix`], and when the broker cannot be reached (unless
    /// [`NatsOptions::retry_on_initial_connect`]), [`Error::Connect`], [`Error::Subscribe`] or
    /// [`Error::RoundTrip`].
    pub async fn connect(url: &str, mut options: NatsOptions) -> Result<Self, Error> {
        let subjects = Subjects::new(&options.prefix)?;
        let (events_tx, events) = mpsc::unbounded_channel();
        let client = options.client_options(events_tx).connect(url).await?;
        let subscriber = client.subscribe(subjects.wildcard.clone()).await?;
        if !options.retry_on_initial_connect {
            round_trip(&client).await?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                shared: Arc::new(Shared {
                    subjects,
                    presence_timeout: options.presence_timeout,
                    link: OnceLock::new(),
                    known: Arc::default(),
                    stopped: AtomicBool::new(false),
                    counters: Counters::default(),
                }),
                pending: Mutex::new(Some(Pending { subscriber, events })),
                tasks: Mutex::default(),
                runtime: Handle::current(),
            }),
        })
    }

    /// This backend's counters (the cluster's are [`Cluster::stats`]).
    ///
    /// [`Cluster::stats`]: melody::cluster::Cluster::stats
    #[must_use]
    pub fn stats(&self) -> NatsStats {
        self.inner.shared.counters.snapshot(self.is_connected())
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

    /// Sends a batch in order; refuses it whole while stopped or disconnected, so that nothing
    /// sent during an outage is replayed late.
    async fn send(&self, batch: &[Outgoing]) -> Result<(), Error> {
        let Inner { client, shared, .. } = &*self.inner;
        if shared.stopped.load(Relaxed) {
            return Err(Error::Stopped);
        }
        if client.connection_state() != State::Connected {
            return Err(Error::Disconnected);
        }
        for outgoing in batch {
            let subject = shared.subjects.for_target(&outgoing.target);
            match client.publish(subject, outgoing.frame.clone()).await {
                Ok(()) => shared.counters.published(),
                // One frame over the server's `max_payload`: the frames after it still go.
                Err(error) if error.kind() == PublishErrorKind::MaxPayloadExceeded => {
                    let error = Error::TooLarge {
                        size: outgoing.frame.len(),
                        max: client.server_info().max_payload,
                    };
                    match shared.link.get() {
                        Some(link) => link.dropped(1, &error),
                        None => return Err(error),
                    }
                }
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }
}

/// Waits until the server has handled everything this client sent so far (the subscription
/// above all). `Client::flush` only empties the client's buffer, so ask something only the server
/// answers: a request on a fresh subject nobody serves, answered with "no responders" once the
/// server got to it.
async fn round_trip(client: &Client) -> Result<(), Error> {
    match client.request(client.new_inbox(), Bytes::new()).await {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == RequestErrorKind::NoResponders => Ok(()),
        Err(error) => Err(Error::RoundTrip(error)),
    }
}

impl Driver for NatsDriver {
    fn start(&self, link: Link) {
        let inner = &self.inner;
        let Some(Pending { subscriber, events }) = lock(&inner.pending).take() else {
            link.error(&Error::AlreadyStarted);
            return;
        };
        let shared = &inner.shared;
        let _ = shared.link.set(link.clone());
        let client = &inner.client;
        let tasks = [
            inner.runtime.spawn(tasks::receive(
                client.clone(),
                shared.clone(),
                link.clone(),
                subscriber,
            )),
            inner.runtime.spawn(tasks::watch(
                client.clone(),
                shared.clone(),
                link.clone(),
                events,
            )),
        ];
        lock(&inner.tasks).extend(tasks.iter().map(|task| task.abort_handle()));
        // Tell the other nodes, so that their next presence query waits for this one.
        let (client, hello) = (client.clone(), shared.subjects.hello.clone());
        inner.runtime.spawn(async move {
            let _ = client.publish(hello, node_bytes(link.node())).await;
        });
    }

    fn publish<'a>(&'a self, batch: &'a [Outgoing]) -> DriverFuture<'a, ()> {
        Box::pin(async move { Ok(self.send(batch).await?) })
    }

    fn presence(&self) -> Option<DriverFuture<'_, Vec<NodePresence>>> {
        let inner = &self.inner;
        Some(Box::pin(async move {
            Ok(presence::gather(&inner.client, &inner.shared).await?)
        }))
    }

    /// Leaves the cluster: stops receiving (the subscription goes at once), and says goodbye so
    /// that the other nodes drop this one from presence at once. The goodbye is sent on the
    /// runtime just after this returns.
    fn stop(&self) {
        let inner = &self.inner;
        if inner.shared.stopped.swap(true, Relaxed) {
            return;
        }
        inner.abort_tasks();
        if let Some(link) = inner.shared.link.get() {
            let client = inner.client.clone();
            let (bye, node) = (inner.shared.subjects.bye.clone(), link.node());
            inner.runtime.spawn(async move {
                let _ = client.publish(bye, node_bytes(node)).await;
                let _ = client.flush().await;
            });
        }
    }
}

impl Inner {
    fn abort_tasks(&self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.abort_tasks();
        // A subscriber unsubscribes on a runtime task when dropped: drop it on ours, wherever
        // the last handle goes.
        let pending = self
            .pending
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(pending) = pending {
            self.runtime.spawn(async move { drop(pending) });
        }
    }
}

impl fmt::Debug for NatsDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsDriver")
            .field("prefix", &self.inner.shared.subjects.prefix)
            .field("state", &self.inner.client.connection_state())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
