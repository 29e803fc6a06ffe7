//! Live topics for Server-Sent Events subscribers (features `live` and `sse`): publications
//! as events whose id is `epoch:offset`, and a reconnecting `EventSource` resumed from its
//! `Last-Event-ID`.

use std::{
    collections::VecDeque,
    future::Future,
    sync::{Arc, atomic::Ordering},
    time::Instant,
};

use bytes::Bytes;
use http::Request;

use super::{
    LiveHub, MAX_TOPIC_LEN,
    history::{History, Replay, Stream, StreamPosition},
    state::LiveState,
    store::{HistoryStore, ReadFrom, StreamRead},
    stored::recovers,
};
use crate::sse::{Event, Past, PendingPast, Sse, SseResponse, TopicResolver};

/// The SSE event of a publication: its data, and `epoch:offset` as id.
pub(crate) fn event(position: &StreamPosition, data: &str) -> Event {
    Event::new(data).id(format!("{}:{}", position.epoch, position.offset))
}

/// `Last-Event-ID: <epoch>:<offset>` as a position.
fn parse(last_event_id: &str) -> Option<StreamPosition> {
    let (epoch, offset) = last_event_id.trim().rsplit_once(':')?;
    Some(StreamPosition {
        epoch: epoch.to_owned(),
        offset: offset.parse().ok()?,
    })
}

/// The first event of a stream whose recovery was not complete.
fn not_recovered() -> Bytes {
    Event::new(r#"{"recovered":false}"#)
        .event("recovery")
        .encode()
}

impl LiveHub {
    /// An axum handler streaming a live topic (named by `resolver`) to `EventSource` clients:
    /// each publication is an event of its data with the id `epoch:offset`, and a client that
    /// reconnects with `Last-Event-ID` (browsers do it on their own) first gets what it missed,
    /// in order, with no gap or repeat at the seam. When that cannot be complete (another
    /// epoch, history trimmed or expired, more than `max_recover` missed) the stream starts
    /// with `event: recovery` and data `{"recovered":false}`. With a history store shared by
    /// several nodes ([`Live::store`](super::Live::store)) a stream resumes on any node: its
    /// past is read from the store while what is published meanwhile waits, and is sent after
    /// it, less what the past already held.
    ///
    /// The request passes the hub's auth hook and counts against `max_connections`, as for
    /// [`Sse::handler`]. Served (400 otherwise): topics opened with a pattern of
    /// [`Live`](super::Live), without presence (member events are for the topic's sessions),
    /// at most [`MAX_TOPIC_LEN`] bytes, and allowed by
    /// [`Live::authorize_sse`](super::Live::authorize_sse) — without it, only when the hub has
    /// no [`Live::authorize`](super::Live::authorize) (a hub that checks its WebSocket
    /// subscribers checks these too). Attaches the SSE plug-in to the hub if it is not yet.
    ///
    /// ```
    /// use axum::{Router, routing::get};
    /// use melody::{Melody, live::{History, Live, LiveHub}, sse::TopicResolver};
    ///
    /// let melody = Melody::new();
    /// melody.plug(Live::new().history("news:*", History::new()));
    /// let live = LiveHub::of(&melody).unwrap();
    /// let app: Router = Router::new().route("/events", get(live.sse_handler(TopicResolver::query("topic"))));
    /// ```
    #[cfg(feature = "axum")]
    #[must_use = "mount the handler on a route"]
    pub fn sse_handler(
        &self,
        resolver: TopicResolver,
    ) -> impl Fn(axum::extract::Request) -> crate::sse::AxumFuture + Clone + Send + Sync + 'static
    {
        let live = self.clone();
        crate::sse::axum_handler(move |req| live.sse_handle(req, &resolver))
    }

    /// [`LiveHub::sse_handler`] for any hyper-based server.
    pub fn sse_handle<B>(
        &self,
        req: Request<B>,
        resolver: &TopicResolver,
    ) -> impl Future<Output = SseResponse> + Send + use<B> {
        let sse = Sse::attach(&self.melody);
        let state = self.state.clone();
        // Only topics open to SSE: anything else is answered as a request that names no topic.
        let open = TopicResolver::custom({
            let resolver = resolver.clone();
            let state = state.clone();
            move |parts, _| {
                resolver.resolve(parts).filter(|topic| {
                    let features = state.settings.features(topic);
                    // Presence is for the topic's sessions: events from other nodes arrive as
                    // plain topic sends, which no SSE stream of it may see.
                    let allowed = match &state.settings.authorize_sse {
                        Some(authorize) => authorize(parts, topic),
                        // A hub that checks its WebSocket subscribers checks these too.
                        None => state.settings.authorize.is_none(),
                    };
                    features.open && !features.presence && topic.len() <= MAX_TOPIC_LEN && allowed
                })
            }
        });
        sse.handle_with(req, &open, move |index, topic, last_event_id, slot| {
            let replay = last_event_id
                .and_then(parse)
                .map_or(Replay::Nothing, Replay::Since);
            let history = state.settings.features(topic).history;
            if let (Some(store), Some(history), Replay::Since(since)) =
                (&state.store, history, &replay)
            {
                let past = read_past(&state, store.clone(), topic, history, since.clone());
                return index.subscribe_reading(topic, slot, past, None);
            }
            let index = Arc::clone(index);
            state.replay_to(topic, &replay, move |recovered: Recovered<'_>, end| {
                let mut backlog = VecDeque::new();
                if recovered.complete == Some(false) {
                    backlog.push_back(not_recovered());
                }
                for (position, data) in recovered.publications {
                    backlog.push_back(event(&position, data).encode());
                }
                index.subscribe_after(topic, slot, backlog, end)
            })
        })
    }
}

/// What an SSE stream resuming from `since` missed, read from the history store while the
/// stream already receives what is published: the events after `since`, and as already sent
/// every published event up to the read's position (the feed may bring them after the read).
fn read_past(
    state: &Arc<LiveState>,
    store: Arc<dyn HistoryStore>,
    topic: &str,
    history: History,
    since: StreamPosition,
) -> PendingPast {
    let max = state.settings.max_recover;
    let marker = state.next_marker.fetch_add(1, Ordering::Relaxed);
    let topic = topic.to_owned();
    Box::pin(async move {
        let from = ReadFrom::After(since.offset);
        let read = match store
            .read(&topic, from, max.saturating_add(1), history, marker)
            .await
        {
            Ok(read) => read,
            Err(error) => {
                tracing::debug!(%topic, %error, "an SSE stream's history could not be read");
                StreamRead::default()
            }
        };
        let complete = recovers(&read, &since, max);
        let Some(at) = read.position.filter(|_| complete) else {
            return Past {
                backlog: VecDeque::from([not_recovered()]),
                already_sent: None,
            };
        };
        let backlog = read
            .publications
            .iter()
            .map(|(offset, data)| {
                let position = StreamPosition {
                    epoch: at.epoch.clone(),
                    offset: *offset,
                };
                event(&position, data.get()).encode()
            })
            .collect();
        Past {
            backlog,
            already_sent: Some(Box::new(move |chunk: &[u8]| {
                position_of(chunk).is_some_and(|p| p.epoch == at.epoch && p.offset <= at.offset)
            })),
        }
    })
}

/// The position of an encoded publication event (its first line is `id: <epoch>:<offset>`).
fn position_of(chunk: &[u8]) -> Option<StreamPosition> {
    let line = chunk.strip_prefix(b"id: ")?.split(|&b| b == b'\n').next()?;
    parse(std::str::from_utf8(line).ok()?)
}

impl LiveState {
    /// Runs `subscribe` (an SSE subscription) under the topic's lock with what `replay` asks
    /// of its history, so that it misses nothing published meanwhile.
    pub(crate) fn replay_to<R>(
        self: &Arc<Self>,
        topic: &str,
        replay: &Replay,
        subscribe: impl FnOnce(Recovered<'_>, Option<StreamEnd>) -> R,
    ) -> R {
        let history = self.settings.features(topic).history;
        let Some(limits) = history.filter(|_| self.store.is_none()) else {
            // No history here, or a store's but nothing to resume from: a stream that asked
            // to resume is told it was not.
            let complete =
                (history.is_some() && matches!(replay, Replay::Since(_))).then_some(false);
            return subscribe(
                Recovered {
                    complete,
                    publications: Vec::new(),
                },
                None,
            );
        };
        self.with_topic(topic, |name, inner| {
            // Counted while the stream lasts: the topic (and its epoch) stays while it does.
            inner.sse_streams += 1;
            let state = Arc::downgrade(self);
            let name = name.clone();
            let end: StreamEnd = Box::new(move || {
                if let Some(state) = state.upgrade() {
                    state.with_existing(&name, |inner| {
                        inner.sse_streams = inner.sse_streams.saturating_sub(1);
                        state.remove_if_idle(&name, inner);
                    });
                }
            });
            let stream = inner.stream.get_or_insert_with(|| Stream::new(limits));
            let recovery = stream.replay(replay, self.settings.max_recover, Instant::now());
            let publications = recovery
                .publications
                .iter()
                .map(|entry| {
                    let position = StreamPosition {
                        epoch: stream.epoch.clone(),
                        offset: entry.offset,
                    };
                    (position, entry.data.get())
                })
                .collect();
            subscribe(
                Recovered {
                    complete: recovery.recovered,
                    publications,
                },
                Some(end),
            )
        })
    }
}

/// What an SSE subscriber gets of the past: whether it is all it missed, and the
/// publications with their positions.
pub(crate) struct Recovered<'a> {
    pub(crate) complete: Option<bool>,
    pub(crate) publications: Vec<(StreamPosition, &'a str)>,
}

/// What runs when an SSE stream ends.
pub(crate) type StreamEnd = Box<dyn FnOnce() + Send>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_event_ids_are_epoch_and_offset() {
        let position = parse("ab12:42").unwrap();
        assert_eq!((position.epoch.as_str(), position.offset), ("ab12", 42));
        assert_eq!(parse("a:b:7").unwrap().epoch, "a:b");
        for bad in ["", "42", "x:", "x:-1", "x:1.5"] {
            assert!(parse(bad).is_none(), "{bad}");
        }
        let encoded = event(&position, r#"{"n":1}"#).encode();
        assert_eq!(&encoded[..], b"id: ab12:42\ndata: {\"n\":1}\n\n");
    }
}
