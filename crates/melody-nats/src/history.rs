//! [`NatsHistory`]: live topics' histories in NATS JetStream, shared by every node (feature
//! `live`).
//!
//! With the prefix `p` (the [`NatsOptions::prefix`]), one stream `p_live` (dots become `_`)
//! holds the subjects `p_live.>`:
//!
//! | subject | holds |
//! | --- | --- |
//! | `p_live.t.<encoded topic>` | a topic's publications ([`encode_topic`](crate::encode_topic)), each with the headers `Melody-Epoch`, `Melody-Offset` and `Melody-Prev` (the stream sequence of the topic's previous message); the JSON is the payload. A message with offset 0 starts an epoch |
//! | `p_live.m.<store id>` | a node's read markers (`[topic, marker]`) |
//!
//! A publication is appended with `Nats-Expected-Last-Subject-Sequence` set to the sequence of
//! the topic's last message as read just before: JetStream accepts it only if no other node
//! appended in between (else it is read again and retried), so every node's publications to a
//! topic get one order, the stream's, and offsets without gaps. Every node reads the whole
//! stream in order with an ordered consumer (which JetStream resumes where it stopped after a
//! lost connection, so nothing is missed), and hands each publication, and its own markers, to
//! its hub.
//!
//! A read walks back from the topic's last message along `Melody-Prev` with direct gets, as
//! far as it needs (the publications asked for, and no more than the history's `size` and
//! `ttl` allow). The stream's own limits (`max_msgs_per_subject`, `max_age`) grow to the largest
//! history any node asks for and never shrink; smaller histories are cut at read time.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex, atomic::Ordering},
    time::Duration,
};

use async_nats::{
    Client, HeaderMap, Statistics,
    jetstream::{
        self, Context,
        consumer::{DeliverPolicy, pull::OrderedConfig},
        context::PublishErrorKind,
        message::PublishMessage,
        stream::{Config, DirectGetErrorKind, Stream},
    },
};
use bytes::Bytes;
use futures_util::StreamExt;
use melody::live::{
    Feed, History, HistoryStore, ReadFrom, StoreError, StoreFuture, StreamPosition, StreamRead,
    new_epoch,
};
use serde_json::value::RawValue;
use time::OffsetDateTime;
use tokio::{runtime::Handle, task::AbortHandle};

use crate::{Error, NatsOptions, driver::lock, subjects::Subjects};

const EPOCH: &str = "Melody-Epoch";
const OFFSET: &str = "Melody-Offset";
const PREV: &str = "Melody-Prev";

/// How often the feed checks whether the connection came back (and its consumer must be made
/// again: JetStream's own detection, by missed heartbeats, takes half a minute).
const RECONNECT_CHECK: Duration = Duration::from_millis(100);

/// How often an append or a read retries after another node appended to the same topic at the
/// same moment.
const MAX_ATTEMPTS: usize = 64;

/// Live topics' histories in NATS JetStream, shared by every node that connects to the same
/// NATS and prefix: plug it into each node's live topics with
/// [`Live::store`](melody::live::Live::store). The server must have JetStream enabled
/// (`nats-server -js`).
///
/// ```no_run
/// use melody::{Melody, live::{History, Live}};
/// use melody_nats::{NatsHistory, NatsOptions};
///
/// # async fn demo() -> Result<(), melody_nats::Error> {
/// let melody = Melody::new();
/// let store = NatsHistory::connect("nats://127.0.0.1:4222", NatsOptions::default()).await?;
/// melody.plug(Live::new().history("room:*", History::new()).store(store));
/// # Ok(()) }
/// ```
///
/// See the [module docs](self) for the stream and the guarantees. Its task (the consumer that
/// feeds this node) ends when the hub is gone. Attach it to one hub only.
#[derive(Clone)]
pub struct NatsHistory {
    inner: Arc<Inner>,
}

struct Inner {
    jetstream: Context,
    /// The client's counters: `connects` tells the feed that the connection came back.
    statistics: Arc<Statistics>,
    stream: Stream,
    stream_name: String,
    root: String,
    /// This store's marker subject.
    markers: String,
    /// The stream's last sequence when connected: the feed starts after it.
    connected_at: u64,
    /// Each topic's last message as this node last saw it (its appends and its feed), so that
    /// an append usually takes one round trip: JetStream refuses one made on a stale tail,
    /// which is then read afresh.
    tails: Mutex<HashMap<String, Tail>>,
    /// The stream's limits as this store last saw them: (messages per topic, age).
    limits: Mutex<(i64, Duration)>,
    runtime: Handle,
    task: Mutex<Option<AbortHandle>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
    }
}

/// Most topics whose tail is remembered; past it, the memory starts afresh.
const MAX_TAILS: usize = 10_000;

/// What an append needs of a topic's last message.
#[derive(Clone, Debug)]
struct Tail {
    sequence: u64,
    epoch: String,
    offset: u64,
    time: OffsetDateTime,
}

/// A topic's message as the stream keeps it.
#[derive(Debug)]
struct Kept {
    sequence: u64,
    epoch: String,
    offset: u64,
    prev: u64,
    time: OffsetDateTime,
    payload: Bytes,
}

impl NatsHistory {
    /// Connects to NATS at `url` (with `options`' prefix and client options) and creates the
    /// prefix's stream unless it exists. Must be called inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPrefix`], [`Error::Connect`], or [`Error::JetStream`] when JetStream is
    /// not enabled or the stream cannot be created.
    pub async fn connect(url: &str, mut options: NatsOptions) -> Result<Self, Error> {
        Subjects::new(&options.prefix)?;
        let (events, _) = tokio::sync::mpsc::unbounded_channel();
        let client = options.client_options(events).connect(url).await?;
        Self::with_client(client, &options.prefix).await
    }

    /// Uses an existing client (for example [`NatsDriver::client`](crate::NatsDriver::client)'s,
    /// to share its connection) with the subject prefix `prefix`.
    ///
    /// # Errors
    ///
    /// As [`NatsHistory::connect`].
    pub async fn with_client(client: Client, prefix: &str) -> Result<Self, Error> {
        Subjects::new(prefix)?;
        let runtime = Handle::current();
        let root = format!("{prefix}_live");
        // Stream names may hold neither dots nor path separators.
        let stream_name = root.replace(['.', '/', '\\'], "_");
        let statistics = client.statistics();
        let jetstream = jetstream::new(client);
        let defaults = History::default();
        let mut stream = jetstream
            .get_or_create_stream(Config {
                name: stream_name.clone(),
                subjects: vec![format!("{root}.>")],
                max_messages_per_subject: limit(defaults.size),
                max_age: defaults.ttl,
                allow_direct: true,
                ..Config::default()
            })
            .await
            .map_err(jetstream_error)?;
        let info = stream.info().await.map_err(jetstream_error)?;
        let limits = (info.config.max_messages_per_subject, info.config.max_age);
        let connected_at = info.state.last_sequence;
        Ok(Self {
            inner: Arc::new(Inner {
                jetstream,
                statistics,
                stream,
                stream_name,
                markers: format!("{root}.m.{}", new_epoch()),
                root,
                connected_at,
                tails: Mutex::default(),
                limits: Mutex::new(limits),
                runtime,
                task: Mutex::new(None),
            }),
        })
    }

    fn subject(&self, topic: &str) -> String {
        format!("{}.t.{}", self.inner.root, crate::encode_topic(topic))
    }

    /// Grows the stream's limits to hold `history` (never shrinks them: other nodes may need
    /// more).
    async fn hold(&self, history: History) -> Result<(), StoreError> {
        let (size, age) = *lock(&self.inner.limits);
        let age_fits = age.is_zero() || age >= history.ttl;
        if (size < 0 || size >= limit(history.size)) && age_fits {
            return Ok(());
        }
        let mut stream = self.inner.stream.clone();
        let mut config = stream.info().await.map_err(jetstream_error)?.config.clone();
        if config.max_messages_per_subject >= 0 {
            config.max_messages_per_subject =
                config.max_messages_per_subject.max(limit(history.size));
        }
        if !config.max_age.is_zero() {
            config.max_age = config.max_age.max(history.ttl);
        }
        let info = self
            .inner
            .jetstream
            .update_stream(&config)
            .await
            .map_err(jetstream_error)?;
        *lock(&self.inner.limits) = (info.config.max_messages_per_subject, info.config.max_age);
        Ok(())
    }

    /// The topic's last message, `None` when the stream has none.
    async fn last(&self, subject: &str) -> Result<Option<Kept>, StoreError> {
        match self.inner.stream.direct_get_last_for_subject(subject).await {
            Ok(message) => Ok(Some(kept(message)?)),
            Err(error) if error.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// The topic's last message for an append: remembered, or read.
    async fn tail(&self, subject: &str) -> Result<Option<Tail>, StoreError> {
        if let Some(tail) = lock(&self.inner.tails).get(subject) {
            return Ok(Some(tail.clone()));
        }
        Ok(self.last(subject).await?.map(|last| Tail {
            sequence: last.sequence,
            epoch: last.epoch,
            offset: last.offset,
            time: last.time,
        }))
    }

    /// Appends a message to `subject` after the one at `prev` (0: none); `false` when another
    /// node appended first.
    async fn put(
        &self,
        subject: &str,
        position: &StreamPosition,
        prev: u64,
        payload: Bytes,
    ) -> Result<bool, StoreError> {
        let mut headers = HeaderMap::new();
        headers.insert(EPOCH, position.epoch.as_str());
        headers.insert(OFFSET, position.offset.to_string().as_str());
        headers.insert(PREV, prev.to_string().as_str());
        let message = PublishMessage::build()
            .payload(payload)
            .headers(headers)
            .expected_last_subject_sequence(prev);
        let acked = async {
            self.inner
                .jetstream
                .send_publish(subject.to_owned(), message)
                .await?
                .await
        };
        match acked.await {
            Ok(ack) => {
                let tail = Tail {
                    sequence: ack.sequence,
                    epoch: position.epoch.clone(),
                    offset: position.offset,
                    time: OffsetDateTime::now_utc(),
                };
                remember(&self.inner, subject, tail);
                Ok(true)
            }
            Err(error) if error.kind() == PublishErrorKind::WrongLastSequence => {
                lock(&self.inner.tails).remove(subject);
                Ok(false)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Walks back from `last` along `Melody-Prev`: the publications of its epoch with offsets
    /// from `lowest` (oldest first), and the oldest offset the walk found kept.
    async fn walk_back(
        &self,
        last: Kept,
        lowest: u64,
        cutoff: OffsetDateTime,
    ) -> Result<(Vec<(u64, Arc<RawValue>)>, Option<u64>), StoreError> {
        let epoch = last.epoch.clone();
        let mut publications = Vec::new();
        let mut oldest = None;
        let mut at = last;
        while at.offset >= lowest.max(1) && at.epoch == epoch && at.time >= cutoff {
            oldest = Some(at.offset);
            let offset = at.offset;
            publications.push((
                offset,
                Arc::from(RawValue::from_string(into_string(at.payload)?)?),
            ));
            if offset == lowest || at.prev == 0 {
                break;
            }
            at = match self.inner.stream.direct_get(at.prev).await {
                Ok(message) => kept(message)?,
                Err(error) if error.kind() == DirectGetErrorKind::NotFound => break,
                Err(error) => return Err(error.into()),
            };
            // Offsets are contiguous along the chain; anything else is not this topic's past.
            if at.offset + 1 != offset {
                break;
            }
        }
        publications.reverse();
        Ok((publications, oldest))
    }

    /// Publishes a read's marker on this store's marker subject, after everything the read saw.
    async fn mark(&self, topic: &str, marker: u64) -> Result<(), StoreError> {
        let payload = serde_json::to_vec(&(topic, marker.to_string()))?;
        self.inner
            .jetstream
            .publish(self.inner.markers.clone(), payload.into())
            .await?
            .await?;
        Ok(())
    }
}

impl HistoryStore for NatsHistory {
    fn start(&self, feed: Feed) {
        let mut task = lock(&self.inner.task);
        if task.is_some() {
            tracing::warn!("nats history: started twice; only the first hub is fed");
            return;
        }
        let inner = self.inner.clone();
        let handle = self
            .inner
            .runtime
            .spawn(async move { feeder(&inner, &feed).await });
        *task = Some(handle.abort_handle());
    }

    fn append<'a>(
        &'a self,
        topic: &'a str,
        data: &'a RawValue,
        history: History,
    ) -> StoreFuture<'a, StreamPosition> {
        Box::pin(async move {
            self.hold(history).await?;
            let subject = self.subject(topic);
            let payload = Bytes::copy_from_slice(data.get().as_bytes());
            for _ in 0..MAX_ATTEMPTS {
                let cutoff = OffsetDateTime::now_utc() - history.ttl;
                let (position, prev) = match self.tail(&subject).await? {
                    Some(last) if last.time >= cutoff => (
                        StreamPosition {
                            epoch: last.epoch,
                            offset: last.offset + 1,
                        },
                        last.sequence,
                    ),
                    // Nothing for the ttl (or ever): history starts again, in a new epoch.
                    stale => (
                        StreamPosition {
                            epoch: new_epoch(),
                            offset: 1,
                        },
                        stale.map_or(0, |last| last.sequence),
                    ),
                };
                if self.put(&subject, &position, prev, payload.clone()).await? {
                    return Ok(position);
                }
            }
            Err("nats history: too many concurrent appends to one topic".into())
        })
    }

    fn read<'a>(
        &'a self,
        topic: &'a str,
        from: ReadFrom,
        count: usize,
        history: History,
        marker: u64,
    ) -> StoreFuture<'a, StreamRead> {
        Box::pin(async move {
            self.hold(history).await?;
            let subject = self.subject(topic);
            for _ in 0..MAX_ATTEMPTS {
                let cutoff = OffsetDateTime::now_utc() - history.ttl;
                let last = match self.last(&subject).await? {
                    Some(last) if last.time >= cutoff => last,
                    stale => {
                        // A subscriber gets a position even before the first publication: the
                        // stream starts here, with a message of offset 0.
                        let position = StreamPosition {
                            epoch: new_epoch(),
                            offset: 0,
                        };
                        let prev = stale.map_or(0, |last| last.sequence);
                        if !self.put(&subject, &position, prev, Bytes::new()).await? {
                            continue;
                        }
                        self.mark(topic, marker).await?;
                        return Ok(StreamRead {
                            position: Some(position),
                            oldest: None,
                            publications: Vec::new(),
                        });
                    }
                };
                let position = StreamPosition {
                    epoch: last.epoch.clone(),
                    offset: last.offset,
                };
                let kept_from = (last.offset + 1).saturating_sub(history.size as u64);
                let wanted = match from {
                    ReadFrom::After(offset) => offset + 1,
                    _ => (last.offset + 1).saturating_sub(count as u64),
                };
                // More missed than asked for cannot be recovered: no need to read them.
                let (publications, oldest) = if count == 0
                    || wanted > last.offset
                    || last.offset + 1 - wanted > count as u64
                {
                    (Vec::new(), None)
                } else {
                    self.walk_back(last, wanted.max(kept_from), cutoff).await?
                };
                self.mark(topic, marker).await?;
                return Ok(StreamRead {
                    position: Some(position),
                    oldest,
                    publications,
                });
            }
            Err("nats history: too many concurrent appends to one topic".into())
        })
    }
}

/// Reads the whole stream in order from where the store connected, and hands every
/// publication and this store's markers to the hub. JetStream's ordered consumer resumes after
/// the last message it delivered when the connection comes back, so nothing is lost in an
/// outage; if the consumer itself ends, a new one resumes there. Ends when the hub is gone.
async fn feeder(inner: &Inner, feed: &Feed) {
    let mut next = inner.connected_at + 1;
    let mut delay = Duration::from_millis(50);
    while feed.is_attached() {
        let consumer = inner
            .stream
            .create_consumer(OrderedConfig {
                filter_subject: format!("{}.>", inner.root),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: next,
                },
                ..OrderedConfig::default()
            })
            .await;
        let mut messages = match consumer {
            Ok(consumer) => match consumer.messages().await {
                Ok(messages) => messages,
                Err(error) => {
                    tracing::warn!(%error, "nats history: cannot read the stream; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                    continue;
                }
            },
            Err(error) => {
                tracing::warn!(%error, "nats history: cannot create the feed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        delay = Duration::from_millis(50);
        let connects = || inner.statistics.connects.load(Ordering::Relaxed);
        let connected = connects();
        let mut check = tokio::time::interval(RECONNECT_CHECK);
        loop {
            let message = tokio::select! {
                message = messages.next() => match message {
                    Some(message) => message,
                    None => break,
                },
                _ = check.tick() => {
                    if !feed.is_attached() {
                        return;
                    }
                    if connects() != connected {
                        // Reconnected: the consumer may be gone with a restarted server. A new
                        // one resumes right after the last message delivered.
                        break;
                    }
                    continue;
                }
            };
            let message = match message {
                Ok(message) => message,
                Err(error) => {
                    tracing::debug!(%error, "nats history: feed interrupted");
                    continue;
                }
            };
            // Where the message sits in the stream (its reply subject says; `None` for one
            // without).
            let place = message
                .info()
                .ok()
                .map(|info| (info.stream_sequence, info.published));
            if let Some((sequence, _)) = place {
                next = sequence + 1;
            }
            if let Err(error) = hand_over(inner, feed, &message, place) {
                tracing::warn!(%error, subject = %message.subject, "nats history: a message that does not decode");
            }
        }
    }
}

/// One message of the stream to the hub: a publication, this store's marker, or nothing.
/// `place`: its stream sequence and time.
fn hand_over(
    inner: &Inner,
    feed: &Feed,
    message: &jetstream::Message,
    place: Option<(u64, OffsetDateTime)>,
) -> Result<(), StoreError> {
    let subject = message.subject.as_str();
    if subject == inner.markers {
        let (topic, marker): (String, String) = serde_json::from_slice(&message.payload)?;
        feed.marker(&topic, marker.parse()?);
        return Ok(());
    }
    let Some(encoded) = subject
        .strip_prefix(inner.root.as_str())
        .and_then(|rest| rest.strip_prefix(".t."))
    else {
        // Another node's marker.
        return Ok(());
    };
    let headers = message.headers.as_ref().ok_or("no headers")?;
    let offset: u64 = header(headers, OFFSET)?.parse()?;
    let epoch = header(headers, EPOCH)?;
    if let Some((sequence, time)) = place {
        let tail = Tail {
            sequence,
            epoch: epoch.to_owned(),
            offset,
            time,
        };
        remember(inner, subject, tail);
    }
    if offset == 0 {
        // An epoch's start, not a publication.
        return Ok(());
    }
    let position = StreamPosition {
        epoch: epoch.to_owned(),
        offset,
    };
    let data = RawValue::from_string(into_string(message.payload.clone())?)?;
    feed.publication(&decode_topic(encoded)?, position, Arc::from(data));
    Ok(())
}

/// Remembers `tail` as the topic's last message, unless a later one is known.
fn remember(inner: &Inner, subject: &str, tail: Tail) {
    let mut tails = lock(&inner.tails);
    if let Some(known) = tails.get_mut(subject) {
        if known.sequence < tail.sequence {
            *known = tail;
        }
        return;
    }
    if tails.len() >= MAX_TAILS {
        tails.clear();
    }
    tails.insert(subject.to_owned(), tail);
}

fn kept(message: jetstream::message::StreamMessage) -> Result<Kept, StoreError> {
    let headers = &message.headers;
    Ok(Kept {
        sequence: message.sequence,
        epoch: header(headers, EPOCH)?.to_owned(),
        offset: header(headers, OFFSET)?.parse()?,
        prev: header(headers, PREV)?.parse()?,
        time: message.time,
        payload: message.payload,
    })
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, StoreError> {
    headers
        .get(name)
        .map(async_nats::HeaderValue::as_str)
        .ok_or_else(|| format!("no {name} header").into())
}

fn into_string(payload: Bytes) -> Result<String, StoreError> {
    Ok(String::from_utf8(payload.to_vec())?)
}

/// The inverse of [`encode_topic`](crate::encode_topic).
fn decode_topic(encoded: &str) -> Result<String, StoreError> {
    if encoded == "_" {
        return Ok(String::new());
    }
    if encoded.len() % 2 != 0 {
        return Err("an encoded topic has an even length".into());
    }
    let bytes = (0..encoded.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&encoded[at..at + 2], 16))
        .collect::<Result<Vec<u8>, _>>()?;
    Ok(String::from_utf8(bytes)?)
}

/// A history's size as a stream limit.
fn limit(size: usize) -> i64 {
    i64::try_from(size).unwrap_or(i64::MAX)
}

fn jetstream_error(error: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::JetStream(Box::new(error))
}

impl fmt::Debug for NatsHistory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsHistory")
            .field("stream", &self.inner.stream_name)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_decode_as_they_were_encoded() {
        for topic in ["", "room:1", "a b.c*>", "üñí"] {
            assert_eq!(decode_topic(&crate::encode_topic(topic)).unwrap(), topic);
        }
        assert!(decode_topic("abc").is_err());
        assert!(decode_topic("zz").is_err());
        assert!(decode_topic("ff").is_err(), "not UTF-8");
    }
}
