//! Server-Sent Events on the hub's topics (feature `sse`).
//!
//! An SSE endpoint subscribes each client to one topic, resolved from its request by a
//! [`TopicResolver`]. [`Melody::publish`] and [`Melody::publish_event`] reach the SSE subscribers
//! of a topic and its WebSocket sessions alike, with one encoding per transport.
//!
//! ```
//! use axum::{Router, routing::get};
//! use melody::{Melody, sse::{Event, TopicResolver}};
//!
//! let melody = Melody::new();
//! let device = TopicResolver::header("x-device-id");
//! let app: Router = Router::new()
//!     // The same topic for both transports: an SSE stream and a WebSocket that joins it.
//!     .route("/events", get(melody.sse_handler(device.clone())))
//!     .route("/ws", get(melody.handler_with_topic(device)));
//!
//! // From anywhere: SSE subscribers get the whole event, WebSocket sessions a text frame of
//! // its data.
//! let _ = melody.publish_event("device-42", Event::new("{\"task\":\"cancelled\"}").event("task"));
//! ```
//!
//! # Delivery
//!
//! Each subscriber has a bounded queue of [`Config::message_buffer_size`](crate::Config)
//! events and follows the hub's [`OverflowPolicy`]: a full queue drops the event (counted in
//! [`Stats::sse_dropped`](crate::Stats)), or ends the stream. A comment line is sent every
//! [`Config::sse_keep_alive`](crate::Config) so proxies keep the connection open and a client
//! that went away is noticed; the subscriber is removed as soon as the response body is dropped.
//! Binary messages are not sent to SSE subscribers (SSE is text).

use std::{
    convert::Infallible,
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderValue, Request, Response, StatusCode, header, request::Parts};
use http_body_util::{BodyExt, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::Frame;
use tokio::sync::mpsc;

use crate::{
    Error, Keys, Melody, Message, OverflowPolicy, Session, UpgradeRejection, melody::Hub,
    stats::Reason, topics::Member, upgrade::Slot,
};

/// The response of an SSE endpoint: a `text/event-stream` body, or a refusal.
pub type SseResponse = Response<UnsyncBoxBody<Bytes, Infallible>>;

/// How a request names its topic: a header, a query parameter, a path segment, or your own
/// function. The request's `Last-Event-ID` header is passed to custom resolvers.
///
/// ```
/// use melody::sse::TopicResolver;
///
/// let by_header = TopicResolver::header("x-device-id");
/// let by_query = TopicResolver::query("topic");
/// let by_path = TopicResolver::path_segment(1); // "/devices/42/events" -> "42"
/// let custom = TopicResolver::custom(|req, last_event_id| {
///     let user = req.headers.get("x-user")?.to_str().ok()?;
///     let _resume_from = last_event_id;
///     Some(format!("user:{user}"))
/// });
/// ```
#[derive(Clone)]
pub struct TopicResolver(Arc<ResolveFn>);

type ResolveFn = dyn Fn(&Parts, Option<&str>) -> Option<String> + Send + Sync;

impl TopicResolver {
    /// The value of a request header.
    #[must_use]
    pub fn header(name: &'static str) -> Self {
        Self::custom(move |req, _| {
            let value = req.headers.get(name)?.to_str().ok()?.trim();
            (!value.is_empty()).then(|| value.to_owned())
        })
    }

    /// The value of a query parameter (percent-decoding `%XX` and `+`).
    #[must_use]
    pub fn query(name: &'static str) -> Self {
        Self::custom(move |req, _| {
            let query = req.uri.query()?;
            query.split('&').find_map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (key == name && !value.is_empty()).then(|| percent_decode(value))?
            })
        })
    }

    /// The path segment at `index`, counting from 0 after the leading `/`.
    #[must_use]
    pub fn path_segment(index: usize) -> Self {
        Self::custom(move |req, _| {
            let segment = req
                .uri
                .path()
                .trim_start_matches('/')
                .split('/')
                .nth(index)?;
            (!segment.is_empty()).then(|| percent_decode(segment))?
        })
    }

    /// Your own function of the request head and its `Last-Event-ID`.
    #[must_use]
    pub fn custom(
        resolve: impl Fn(&Parts, Option<&str>) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        Self(Arc::new(resolve))
    }

    /// The topic for this request, if it names one.
    #[must_use]
    pub fn resolve(&self, req: &Parts) -> Option<String> {
        let last_event_id = req
            .headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok());
        (self.0)(req, last_event_id)
    }
}

impl fmt::Debug for TopicResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TopicResolver(..)")
    }
}

fn percent_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let [first, tail @ ..] = rest {
        match first {
            b'%' => {
                let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
                bytes.push(u8::from_str_radix(hex, 16).ok()?);
                rest = &tail[2..];
            }
            b'+' => {
                bytes.push(b' ');
                rest = tail;
            }
            other => {
                bytes.push(*other);
                rest = tail;
            }
        }
    }
    String::from_utf8(bytes).ok()
}

/// One Server-Sent Event: `data`, and optionally an event name, an id and a retry delay.
///
/// ```
/// use std::time::Duration;
/// use melody::sse::Event;
///
/// let event = Event::new("line one\nline two").event("update").id("7").retry(Duration::from_secs(3));
/// assert_eq!(
///     &event.encode()[..],
///     b"event: update\nid: 7\nretry: 3000\ndata: line one\ndata: line two\n\n"
/// );
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    event: Option<String>,
    id: Option<String>,
    data: String,
    retry: Option<Duration>,
}

impl Event {
    /// An event carrying `data` (which may span several lines).
    #[must_use]
    pub fn new(data: impl Into<String>) -> Self {
        Self {
            data: data.into(),
            ..Self::default()
        }
    }

    /// Sets the event name (`event:`). Line breaks are removed, as the format cannot carry them.
    #[must_use]
    pub fn event(mut self, name: impl Into<String>) -> Self {
        self.event = Some(one_line(name.into()));
        self
    }

    /// Sets the event id (`id:`), which the browser sends back as `Last-Event-ID` when it
    /// reconnects. Line breaks and NUL are removed.
    #[must_use]
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(one_line(id.into()).replace('\0', ""));
        self
    }

    /// Sets how long the browser waits before reconnecting (`retry:`, in milliseconds).
    #[must_use]
    pub fn retry(mut self, delay: Duration) -> Self {
        self.retry = Some(delay);
        self
    }

    /// The data.
    #[must_use]
    pub fn data(&self) -> &str {
        &self.data
    }

    /// The event in the `text/event-stream` wire format.
    #[must_use]
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.data.len() + 32);
        if let Some(event) = &self.event {
            put_field(&mut out, "event", event);
        }
        if let Some(id) = &self.id {
            put_field(&mut out, "id", id);
        }
        if let Some(retry) = self.retry {
            put_field(&mut out, "retry", &retry.as_millis().to_string());
        }
        for line in lines(&self.data) {
            put_field(&mut out, "data", line);
        }
        out.put_u8(b'\n');
        out.freeze()
    }
}

/// The lines of `text` as an event stream parser reads them: a line ends at `\r\n`, `\r` or
/// `\n`. Splitting on `\n` alone would let a bare `\r` in published data start a line of its
/// own, and so inject `id:`, `event:` or `retry:` fields into every subscriber's stream.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let text = rest?;
        match text.find(['\r', '\n']) {
            Some(end) => {
                let skip = if text[end..].starts_with("\r\n") {
                    2
                } else {
                    1
                };
                rest = Some(&text[end + skip..]);
                Some(&text[..end])
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}

fn one_line(text: String) -> String {
    if text.contains(['\r', '\n']) {
        text.replace(['\r', '\n'], "")
    } else {
        text
    }
}

fn put_field(out: &mut BytesMut, name: &str, value: &str) {
    out.put_slice(name.as_bytes());
    out.put_slice(b": ");
    out.put_slice(value.as_bytes());
    out.put_u8(b'\n');
}

/// One SSE client in the topic index.
#[derive(Clone)]
pub(crate) struct Subscriber {
    id: u64,
    queue: mpsc::Sender<Bytes>,
    /// Since when (milliseconds on [`stall_clock`]) its queue has been found full, 0 when it
    /// is not: a subscriber that stays full for `write_wait` has stopped reading.
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

impl Member for Subscriber {
    fn member_id(&self) -> u64 {
        self.id
    }
}

/// Removes the subscriber from its topic when the response body is dropped (client gone).
struct Subscription {
    /// Its place under `Config::max_connections`, given back when the stream ends.
    _slot: Slot,
    hub: Arc<Hub>,
    topic: Arc<str>,
    // Only the id: holding the queue's sender here would keep the stream from ever ending.
    id: u64,
    events: mpsc::Receiver<Bytes>,
    keep_alive: tokio::time::Interval,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.sse.leave(&self.topic, self.id);
        self.hub.counters.sse_unsubscribed();
        tracing::debug!(topic = %self.topic, "sse subscriber gone");
    }
}

impl Melody {
    /// An axum handler that streams Server-Sent Events of the topic `resolver` names; a request
    /// that names none gets 400.
    #[cfg(feature = "axum")]
    #[must_use = "mount the handler on a route"]
    pub fn sse_handler(
        &self,
        resolver: TopicResolver,
    ) -> impl Fn(
        axum::extract::Request,
    ) -> futures_util::future::BoxFuture<'static, axum::response::Response>
    + Clone
    + Send
    + Sync
    + 'static {
        let melody = self.clone();
        move |req| {
            let response = melody.handle_sse(req, &resolver);
            Box::pin(async move { axum::response::IntoResponse::into_response(response.await) })
        }
    }

    /// An axum handler that upgrades to WebSocket sessions which join the topic `resolver`
    /// names, before their connect handler runs; a request that names none gets 400.
    #[cfg(feature = "axum")]
    #[must_use = "mount the handler on a route"]
    pub fn handler_with_topic(
        &self,
        resolver: TopicResolver,
    ) -> impl Fn(
        axum::extract::Request,
    ) -> futures_util::future::BoxFuture<'static, axum::response::Response>
    + Clone
    + Send
    + Sync
    + 'static {
        let melody = self.clone();
        move |req: axum::extract::Request| {
            let (parts, body) = req.into_parts();
            let topic = resolver.resolve(&parts);
            let melody = melody.clone();
            Box::pin(async move {
                use axum::response::IntoResponse;
                let Some(topic) = topic else {
                    return no_topic().into_response();
                };
                let req = Request::from_parts(parts, body);
                let keys = Keys::new().with(AUTO_JOIN_KEY, topic);
                melody
                    .handle_request_with_keys(req, keys)
                    .await
                    .into_response()
            })
        }
    }

    /// Answers an SSE request (for plain hyper): resolves the topic, runs the auth hook, and
    /// streams the topic's events until the client goes away.
    pub fn handle_sse<B>(
        &self,
        req: Request<B>,
        resolver: &TopicResolver,
    ) -> impl Future<Output = SseResponse> + Send + use<B> {
        let (parts, _body) = req.into_parts();
        let topic = resolver.resolve(&parts);
        let melody = self.clone();
        async move {
            let Some(topic) = topic else {
                return no_topic();
            };
            if melody.is_closed() {
                return rejection(UpgradeRejection::Closed);
            }
            if let Err(rejection_) = melody.authorize(&parts).await {
                return rejection(rejection_);
            }
            // An SSE stream is a connection like a session: it counts against the same limit.
            let Some(slot) = Slot::acquire(melody.hub()) else {
                melody.hub().counters.rejected(Reason::MaxConnections);
                return rejection(UpgradeRejection::TooManyConnections);
            };
            melody.subscribe(&topic, slot)
        }
    }

    fn subscribe(&self, topic: &str, slot: Slot) -> SseResponse {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let hub = self.hub().clone();
        let (queue, events) = mpsc::channel(hub.config.queue_capacity());
        let subscriber = Subscriber {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            queue,
            stalled_since: Arc::default(),
        };
        let topic = hub.sse.intern(topic);
        hub.sse.join(&topic, &subscriber);
        hub.counters.sse_subscribed();
        tracing::debug!(%topic, "sse subscriber joined");
        let keep_alive =
            tokio::time::interval(hub.config.sse_keep_alive.max(Duration::from_millis(1)));
        let subscription = Subscription {
            _slot: slot,
            hub,
            topic,
            id: subscriber.id,
            events,
            keep_alive,
        };
        let stream = futures_util::stream::unfold(subscription, |mut sub| async move {
            let chunk = tokio::select! {
                event = sub.events.recv() => event?,
                _ = sub.keep_alive.tick() => Bytes::from_static(b":\n\n"),
            };
            Some((Ok::<_, Infallible>(Frame::data(chunk)), sub))
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

    /// Publishes an event to `topic`: SSE subscribers get the whole event, WebSocket sessions a
    /// text frame of its data. Each transport's bytes are encoded once. Returns how many
    /// subscribers and sessions it was queued for on this node. With a backplane, the other
    /// nodes get the data as a [`Melody::publish`] (a data-only event for their SSE subscribers).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the hub is closed.
    pub fn publish_event(&self, topic: &str, event: Event) -> Result<usize, Error> {
        let sse = self.fan_out_sse(topic, || event.encode())?;
        let members = self.hub().topics.members(topic);
        let message = Message::text(event.data);
        let ws = self.fan_out(&message, |queue| members.iter().for_each(queue))?;
        // Other nodes get the data as a topic publish: their SSE subscribers see a data-only
        // event (the name, id and retry stay on this node).
        self.publish_remote(crate::backplane::Target::Topic(topic.to_owned()), &message);
        Ok(sse + ws)
    }

    /// The number of SSE subscribers of `topic`.
    #[must_use]
    pub fn sse_subscribers(&self, topic: &str) -> usize {
        self.hub().sse.len(topic)
    }

    /// Queues an encoded event on every SSE subscriber of `topic`; `encode` runs only when there
    /// is at least one.
    pub(crate) fn fan_out_sse(
        &self,
        topic: &str,
        encode: impl FnOnce() -> Bytes,
    ) -> Result<usize, Error> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let subscribers = self.hub().sse.members(topic);
        if subscribers.is_empty() {
            return Ok(0);
        }
        let hub = self.hub();
        let frame = encode();
        let mut queued = 0;
        let write_wait = u64::try_from(hub.config.write_wait.as_millis()).unwrap_or(u64::MAX);
        for subscriber in subscribers.iter() {
            match subscriber.queue.try_send(frame.clone()) {
                Ok(()) => {
                    queued += 1;
                    if subscriber.stalled_since.load(Ordering::Relaxed) != 0 {
                        subscriber.stalled_since.store(0, Ordering::Relaxed);
                    }
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    hub.counters.sse_dropped();
                    let now = stall_clock();
                    let since = match subscriber.stalled_since.load(Ordering::Relaxed) {
                        0 => {
                            subscriber.stalled_since.store(now, Ordering::Relaxed);
                            now
                        }
                        since => since,
                    };
                    let stalled = now.saturating_sub(since) >= write_wait;
                    if stalled || hub.config.overflow == OverflowPolicy::CloseSession {
                        // Out of the index, the queue's last sender is gone: the stream ends
                        // once the subscriber has read what is queued. A subscriber whose
                        // queue stayed full for the write wait has stopped reading, as a
                        // WebSocket session whose write takes that long.
                        tracing::debug!(%topic, stalled, "sse subscriber dropped: queue full");
                        hub.sse.leave(topic, subscriber.id);
                    }
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        hub.counters.sse_sent(queued);
        Ok(queued)
    }
}

/// Ends every SSE stream once what is queued for it is read: the hub has closed.
pub(crate) fn close_all(hub: &Hub) {
    hub.sse.clear();
}

/// The session key under which [`Melody::handler_with_topic`] passes the topic to join.
pub(crate) const AUTO_JOIN_KEY: &str = "melody.auto_join";

/// Joins the topic a topic-resolving handler chose, if any.
pub(crate) fn auto_join(session: &Session) {
    if let Some(topic) = session.get::<String>(AUTO_JOIN_KEY) {
        if let Err(error) = session.join(topic) {
            tracing::debug!(session = %session.id(), %error, "could not join the resolved topic");
        }
    }
}

fn no_topic() -> SseResponse {
    let mut response = Response::new(
        http_body_util::Full::new(Bytes::from_static(b"the request names no topic"))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = StatusCode::BAD_REQUEST;
    response
}

fn rejection(rejection: UpgradeRejection) -> SseResponse {
    rejection
        .into_response()
        .map(|body| body.map_err(|never| match never {}).boxed_unsync())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_lines_end_where_an_event_stream_parser_ends_them() {
        let split = |text| lines(text).collect::<Vec<_>>();
        assert_eq!(split("a"), ["a"]);
        assert_eq!(split(""), [""]);
        assert_eq!(split("a\nb"), ["a", "b"]);
        assert_eq!(split("a\rb"), ["a", "b"]);
        assert_eq!(split("a\r\nb"), ["a", "b"]);
        assert_eq!(split("a\n\rb"), ["a", "", "b"]);
        assert_eq!(split("a\r"), ["a", ""]);
        assert_eq!(
            &Event::new("x\rid: 1\r\nretry: 2").encode()[..],
            b"data: x\ndata: id: 1\ndata: retry: 2\n\n"
        );
    }
}
