//! Live topics for Server-Sent Events subscribers (features `live` and `sse`): publications
//! as events whose id is `epoch:offset`, and a reconnecting `EventSource` resumed from its
//! `Last-Event-ID`.

use std::{collections::VecDeque, future::Future, sync::Arc};

use bytes::Bytes;
use http::Request;

use super::{
    LiveHub, MAX_TOPIC_LEN,
    history::{Replay, StreamPosition},
    state::Recovered,
};
use crate::sse::{Event, Sse, SseResponse, TopicResolver};

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
    /// with `event: recovery` and data `{"recovered":false}`.
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
