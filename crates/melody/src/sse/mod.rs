//! Server-Sent Events on the hub's topics (feature `sse`), as a plug-in.
//!
//! [`Sse::attach`] adds SSE subscribers to a hub: an SSE endpoint subscribes each client to one
//! topic, resolved from its request by a [`TopicResolver`]. Whatever is sent to a topic
//! (`melody.topic(t).send(..)`, from a WebSocket handler, an HTTP handler, another node) reaches
//! its SSE subscribers as an event of that text, and [`Sse::publish`] sends a whole [`Event`]
//! (name, id, retry) to them and its data to the topic's WebSocket sessions: one hub, two
//! transports, each encoded once.
//!
//! ```
//! use axum::{Router, routing::get};
//! use melody::{Keys, Melody, UpgradeRejection, sse::{Event, Sse, TopicResolver}};
//!
//! let melody = Melody::new();
//! let sse = Sse::attach(&melody);
//! let device = TopicResolver::header("x-device-id");
//! let join = device.clone();
//! let app: Router = Router::new()
//!     // The same topic for both transports: an SSE stream and a WebSocket that joins it.
//!     .route("/events", get(sse.handler(device)))
//!     .route("/ws", get(melody.handler_with(move |req| {
//!         join.resolve(req)
//!             .map(|topic| Keys::new().join(topic))
//!             .ok_or(UpgradeRejection::NotUpgrade)
//!     })));
//!
//! // From anywhere: SSE subscribers get the whole event, WebSocket sessions a text frame of
//! // its data.
//! let _ = sse.publish("device-42", Event::new("{\"task\":\"cancelled\"}").event("task"));
//! ```
//!
//! # Delivery
//!
//! Each subscriber has a bounded queue of [`Config::message_buffer_size`](crate::Config) events
//! and follows the hub's [`OverflowPolicy`](crate::OverflowPolicy): a full queue drops the event
//! (counted in [`SseStats::dropped`]), or ends the stream. A subscriber whose queue stays full for
//! the hub's `write_wait` has stopped reading and is dropped. A comment line is sent every
//! [`Sse::keep_alive`] (15 s) so proxies keep the connection open and a client that went away is
//! noticed; the subscriber is removed as soon as the response body is dropped. Binary messages
//! are not sent to SSE subscribers (SSE is text). An SSE stream counts against
//! `Config::max_connections`, and closing the hub ends every stream.

mod event;
mod resolver;
mod stats;
mod stream;

use std::{any::Any, convert::Infallible, future::Future, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, combinators::UnsyncBoxBody};

pub(crate) use self::stream::Index;
use self::stream::Limits;
#[cfg(feature = "live")]
pub(crate) use self::stream::{Past, PendingPast};
pub use self::{event::Event, resolver::TopicResolver, stats::SseStats};
use crate::{
    Closed, Melody, UpgradeRejection,
    plugin::{Delivery, Reach, Sink},
};

/// The response of an SSE endpoint: a `text/event-stream` body, or a refusal.
pub type SseResponse = Response<UnsyncBoxBody<Bytes, Infallible>>;

/// The SSE plug-in of one hub: its endpoint, its publish, its counters. A cheap handle; clone
/// it into handlers, or find it again from any session with [`Sse::of`].
#[derive(Clone)]
pub struct Sse {
    melody: Melody,
    index: Arc<Index>,
}

/// A delivery context meaning "for the topic's WebSocket sessions only": what a plug-in sends
/// to a topic's members that its anonymous SSE streams must not see (presence events).
pub(crate) struct NotForSse;

/// The sink that hands topic deliveries to the subscribers.
struct Subscribers(Arc<Index>);

impl Sink for Subscribers {
    fn deliver(&self, delivery: &Delivery<'_>) -> Reach {
        let Some(topic) = delivery.target().topic() else {
            return Reach::default();
        };
        let context = delivery.context().map(|context| context as &dyn Any);
        if context.is_some_and(|context| context.is::<NotForSse>()) {
            return Reach::default();
        }
        let event = context.and_then(|context| context.downcast_ref::<Event>());
        let local = match (event, delivery.message().as_str()) {
            (Some(event), _) => self.0.publish(topic, || event.encode()),
            (None, Some(text)) => self.0.publish(topic, || Event::new(text).encode()),
            (None, None) => 0,
        };
        Reach::local(local)
    }

    fn closed(&self) {
        self.0.clear();
    }
}

impl Sse {
    /// Adds SSE subscribers to `melody` (once: a second call returns the same plug-in).
    pub fn attach(melody: &Melody) -> Self {
        if let Some(sse) = Self::of(melody) {
            return sse;
        }
        let config = melody.config();
        let index = Arc::new(Index::new(Limits {
            queue: config.message_buffer_size,
            write_wait: config.write_wait,
            overflow: config.overflow,
        }));
        melody.plugins().insert(index.clone());
        melody.plugins().add_sink(Subscribers(index.clone()));
        Self {
            melody: melody.clone(),
            index,
        }
    }

    /// The SSE plug-in attached to `melody`, if any (from a handler:
    /// `Sse::of(&session.melody())`).
    #[must_use]
    pub fn of(melody: &Melody) -> Option<Self> {
        let index = melody.plugins().get::<Index>()?;
        Some(Self {
            melody: melody.clone(),
            index,
        })
    }

    /// How often each stream gets a keep-alive comment, from now on. Default 15 s.
    pub fn keep_alive(&self, every: Duration) -> &Self {
        self.index.set_keep_alive(every);
        self
    }

    /// An axum handler that streams the events of the topic `resolver` names; a request that
    /// names none gets 400.
    #[cfg(feature = "axum")]
    #[must_use = "mount the handler on a route"]
    pub fn handler(
        &self,
        resolver: TopicResolver,
    ) -> impl Fn(axum::extract::Request) -> AxumFuture + Clone + Send + Sync + 'static {
        let sse = self.clone();
        axum_handler(move |req| sse.handle(req, &resolver))
    }

    /// Answers an SSE request (for any hyper-based server): resolves the topic, runs the hub's
    /// auth hook, takes a connection slot, and streams the topic's events until the client goes
    /// away.
    pub fn handle<B>(
        &self,
        req: Request<B>,
        resolver: &TopicResolver,
    ) -> impl Future<Output = SseResponse> + Send + use<B> {
        self.handle_with(req, resolver, |index, topic, _, slot| {
            index.subscribe(topic, slot)
        })
    }

    /// [`Sse::handle`] with the last step, subscribing, left to `subscribe` (a plug-in that
    /// replays the past first): it gets the index, the topic, the request's `Last-Event-ID`
    /// and the connection slot.
    pub(crate) fn handle_with<B, F>(
        &self,
        req: Request<B>,
        resolver: &TopicResolver,
        subscribe: F,
    ) -> impl Future<Output = SseResponse> + Send + use<B, F>
    where
        F: FnOnce(&Arc<Index>, &str, Option<&str>, crate::Slot) -> SseResponse + Send + 'static,
    {
        let (parts, _body) = req.into_parts();
        let topic = resolver.resolve(&parts);
        let sse = self.clone();
        async move {
            let Some(topic) = topic else {
                return no_topic();
            };
            if sse.melody.is_closed() {
                return rejection(UpgradeRejection::Closed);
            }
            if let Err(refused) = sse.melody.plugins().authorize(&parts).await {
                return rejection(refused);
            }
            // An SSE stream is a connection like a session: it counts against the same limit.
            let Some(slot) = sse.melody.plugins().acquire_slot() else {
                sse.melody.plugins().count_full();
                return rejection(UpgradeRejection::TooManyConnections);
            };
            let last_event_id = parts
                .headers
                .get("last-event-id")
                .and_then(|value| value.to_str().ok());
            subscribe(&sse.index, &topic, last_event_id, slot)
        }
    }

    /// Publishes an event to `topic`: SSE subscribers get the whole event, WebSocket sessions a
    /// text frame of its data, other nodes of a cluster the data as a topic send (their SSE
    /// subscribers see a data-only event). Each transport's bytes are encoded once. Returns how
    /// many subscribers and sessions it was queued for on this node.
    ///
    /// # Errors
    ///
    /// [`Closed`] when the hub is closed.
    pub fn publish(&self, topic: &str, event: Event) -> Result<usize, Closed> {
        let data = event.data().to_owned();
        self.melody.topic(topic).send_with(data, &event)
    }

    /// The number of SSE subscribers of `topic` on this node.
    #[must_use]
    pub fn subscribers(&self, topic: &str) -> usize {
        self.index.len(topic)
    }

    /// A snapshot of the plug-in's counters.
    #[must_use]
    pub fn stats(&self) -> SseStats {
        self.index.counters.snapshot()
    }
}

impl std::fmt::Debug for Sse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sse")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// The future an axum SSE handler returns.
#[cfg(feature = "axum")]
pub(crate) type AxumFuture = futures_util::future::BoxFuture<'static, axum::response::Response>;

/// An axum handler of a function from the request to its SSE response.
#[cfg(feature = "axum")]
pub(crate) fn axum_handler<F, Fut>(
    handle: F,
) -> impl Fn(axum::extract::Request) -> AxumFuture + Clone + Send + Sync + 'static
where
    F: Fn(axum::extract::Request) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = SseResponse> + Send + 'static,
{
    move |req| {
        let response = handle(req);
        Box::pin(async move { axum::response::IntoResponse::into_response(response.await) })
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
