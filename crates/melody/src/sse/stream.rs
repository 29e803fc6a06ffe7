//! SSE subscribers: the index of who follows which topic, each subscriber's bounded queue, and
//! the response body that drains it.

use std::{
    collections::{HashMap, VecDeque},
    convert::Infallible,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderValue, Response, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::sync::mpsc;

use super::{SseResponse, stats::SseCounters};
use crate::{OverflowPolicy, Slot};

/// The past of a stream as a plug-in reads it (for example from a shared store, while the
/// stream already receives what is published): the events to send first, and which of the
/// events published meanwhile they already hold.
pub(crate) struct Past {
    pub(crate) backlog: VecDeque<Bytes>,
    pub(crate) already_sent: Option<AlreadySent>,
}

/// Whether an encoded event published meanwhile is one the past already held.
pub(crate) type AlreadySent = Box<dyn Fn(&[u8]) -> bool + Send>;

/// A [`Past`] still being read.
pub(crate) type PendingPast = std::pin::Pin<Box<dyn std::future::Future<Output = Past> + Send>>;

/// One SSE client in the index.
#[derive(Clone)]
struct Subscriber {
    id: u64,
    queue: mpsc::Sender<Bytes>,
    /// Since when (milliseconds on [`stall_clock`]) its queue has been found full, 0 when it
    /// is not: a subscriber that stays full for the write wait has stopped reading.
    stalled_since: Arc<AtomicU64>,
}

/// Milliseconds since the first call, never 0.
fn stall_clock() -> u64 {
    static START: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(tokio::time::Instant::now);
    u64::try_from(start.elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .saturating_add(1)
}

/// What the index needs of the hub's configuration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) queue: usize,
    pub(crate) write_wait: Duration,
    pub(crate) overflow: OverflowPolicy,
}

/// Which subscribers follow which topic. Each topic's list is copy-on-write: a publish takes a
/// snapshot (one reference-count increment under a brief read lock) and queues with no lock
/// held.
pub(crate) struct Index {
    topics: RwLock<HashMap<Arc<str>, Arc<Vec<Subscriber>>>>,
    next_id: AtomicU64,
    pub(crate) limits: Limits,
    pub(crate) counters: SseCounters,
    keep_alive_ms: AtomicU64,
}

impl Index {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            topics: RwLock::default(),
            next_id: AtomicU64::new(1),
            limits,
            counters: SseCounters::new(),
            keep_alive_ms: AtomicU64::new(15_000),
        }
    }

    pub(crate) fn set_keep_alive(&self, every: Duration) {
        let ms = u64::try_from(every.as_millis()).unwrap_or(u64::MAX).max(1);
        self.keep_alive_ms.store(ms, Ordering::Relaxed);
    }

    fn keep_alive(&self) -> Duration {
        Duration::from_millis(self.keep_alive_ms.load(Ordering::Relaxed))
    }

    /// The number of subscribers of `topic`.
    pub(crate) fn len(&self, topic: &str) -> usize {
        self.read().get(topic).map_or(0, |list| list.len())
    }

    /// Ends every stream once what is queued for it is read: the hub has closed.
    pub(crate) fn clear(&self) {
        self.write().clear();
    }

    fn join(&self, topic: &str, subscriber: Subscriber) -> Arc<str> {
        let mut topics = self.write();
        let name = topics
            .get_key_value(topic)
            .map_or_else(|| Arc::from(topic), |(name, _)| name.clone());
        Arc::make_mut(topics.entry(name.clone()).or_default()).push(subscriber);
        name
    }

    fn leave(&self, topic: &str, id: u64) {
        let mut topics = self.write();
        if let Some(list) = topics.get_mut(topic) {
            Arc::make_mut(list).retain(|s| s.id != id);
            if list.is_empty() {
                topics.remove(topic);
            }
        }
    }

    /// Queues an encoded event on every subscriber of `topic`; `encode` runs only when there
    /// is at least one. Returns how many it was queued for.
    pub(crate) fn publish(&self, topic: &str, encode: impl FnOnce() -> Bytes) -> usize {
        let Some(subscribers) = self.read().get(topic).cloned() else {
            return 0;
        };
        let frame = encode();
        let write_wait = u64::try_from(self.limits.write_wait.as_millis()).unwrap_or(u64::MAX);
        let mut queued = 0;
        for subscriber in subscribers.iter() {
            match subscriber.queue.try_send(frame.clone()) {
                Ok(()) => {
                    queued += 1;
                    if subscriber.stalled_since.load(Ordering::Relaxed) != 0 {
                        subscriber.stalled_since.store(0, Ordering::Relaxed);
                    }
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.counters.dropped();
                    let now = stall_clock();
                    let since = match subscriber.stalled_since.load(Ordering::Relaxed) {
                        0 => {
                            subscriber.stalled_since.store(now, Ordering::Relaxed);
                            now
                        }
                        since => since,
                    };
                    let stalled = now.saturating_sub(since) >= write_wait;
                    if stalled || self.limits.overflow == OverflowPolicy::CloseSession {
                        // Out of the index, the queue's last sender is gone: the stream ends
                        // once the subscriber has read what is queued. A subscriber whose
                        // queue stayed full for the write wait has stopped reading, as a
                        // WebSocket session whose write takes that long.
                        tracing::debug!(%topic, stalled, "sse subscriber dropped: queue full");
                        self.leave(topic, subscriber.id);
                    }
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        self.counters.sent(queued);
        queued
    }

    /// Subscribes a new client to `topic`: the `text/event-stream` response that streams its
    /// events until the client goes away.
    pub(crate) fn subscribe(self: &Arc<Self>, topic: &str, slot: Slot) -> SseResponse {
        self.subscribe_after(topic, slot, VecDeque::new(), None)
    }

    /// As [`Index::subscribe`], the stream starting with `backlog` (encoded events of the
    /// past, however many: they are not counted against the queue) before what is published
    /// from now on; `on_end` runs when the stream ends.
    pub(crate) fn subscribe_after(
        self: &Arc<Self>,
        topic: &str,
        slot: Slot,
        backlog: VecDeque<Bytes>,
        on_end: Option<Box<dyn FnOnce() + Send>>,
    ) -> SseResponse {
        let past = Past {
            backlog,
            already_sent: None,
        };
        self.subscribe_reading(topic, slot, Box::pin(std::future::ready(past)), on_end)
    }

    /// As [`Index::subscribe_after`], with a past that is read once subscribed: what is
    /// published meanwhile waits in the queue, and is sent after the past, less what the past
    /// already held.
    pub(crate) fn subscribe_reading(
        self: &Arc<Self>,
        topic: &str,
        slot: Slot,
        past: PendingPast,
        on_end: Option<Box<dyn FnOnce() + Send>>,
    ) -> SseResponse {
        let (queue, events) = mpsc::channel(self.limits.queue.max(1));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let topic = self.join(
            topic,
            Subscriber {
                id,
                queue,
                stalled_since: Arc::default(),
            },
        );
        self.counters.subscribed();
        tracing::debug!(%topic, "sse subscriber joined");
        let keep_alive = tokio::time::interval(self.keep_alive());
        let subscription = Subscription {
            _slot: slot,
            index: self.clone(),
            topic,
            id,
            past: Some(past),
            backlog: VecDeque::new(),
            already_sent: None,
            events,
            keep_alive,
            on_end,
        };
        let stream = futures_util::stream::unfold(subscription, |mut sub| async move {
            if let Some(past) = sub.past.take() {
                let past = past.await;
                sub.backlog = past.backlog;
                sub.already_sent = past.already_sent;
            }
            if let Some(chunk) = sub.backlog.pop_front() {
                return Some((Ok::<_, Infallible>(Frame::data(chunk)), sub));
            }
            loop {
                let chunk = tokio::select! {
                    event = sub.events.recv() => event?,
                    _ = sub.keep_alive.tick() => Bytes::from_static(b":\n\n"),
                };
                if sub.already_sent.as_ref().is_some_and(|sent| sent(&chunk)) {
                    continue;
                }
                return Some((Ok::<_, Infallible>(Frame::data(chunk)), sub));
            }
        });
        let mut response = Response::new(StreamBody::new(stream).boxed_unsync());
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        response
    }

    // A poisoned lock means a panic elsewhere while it was held; every update above leaves the
    // index consistent, so it stays usable.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Arc<str>, Arc<Vec<Subscriber>>>> {
        self.topics
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Arc<str>, Arc<Vec<Subscriber>>>> {
        self.topics
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A subscriber's response body: removes it from its topic when dropped (client gone).
struct Subscription {
    /// Its place under `Config::max_connections`, given back when the stream ends.
    _slot: Slot,
    index: Arc<Index>,
    topic: Arc<str>,
    // Only the id: holding the queue's sender here would keep the stream from ever ending.
    id: u64,
    /// The past, until it has been read.
    past: Option<PendingPast>,
    /// Events of the past, sent before the queue's.
    backlog: VecDeque<Bytes>,
    /// Which of the queue's events the past already held.
    already_sent: Option<AlreadySent>,
    events: mpsc::Receiver<Bytes>,
    keep_alive: tokio::time::Interval,
    /// What its plug-in wants done when it ends.
    on_end: Option<Box<dyn FnOnce() + Send>>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.index.leave(&self.topic, self.id);
        self.index.counters.unsubscribed();
        if let Some(on_end) = self.on_end.take() {
            on_end();
        }
        tracing::debug!(topic = %self.topic, "sse subscriber gone");
    }
}
