//! Live topics: presence events, history with recovery after a reconnect, over the router's
//! requests (feature `live`). The wire protocol is docs/PROTOCOL.md.
//!
//! [`Live`] is a plug-in built with the topics it serves and the application's [`Router`]:
//! clients `subscribe` to topics the server opened (a pattern such as `room:*`), get what they
//! missed since their last position, see who else is there, and receive every publication made
//! with [`LiveHub::publish`].
//!
//! ```
//! use std::time::Duration;
//! use melody::{Melody, live::{History, Live, LiveHub}, router::Router};
//! use serde_json::json;
//!
//! let melody = Melody::new();
//! let chat = Router::new().on_request("say", |session, text: String| async move {
//!     let live = LiveHub::of(&session.melody()).expect("live is plugged");
//!     let name = session.get::<String>("name").unwrap_or_default();
//!     live.publish("room:lobby", json!({ "from": name, "text": text })).await?;
//!     Ok(())
//! });
//! melody.plug(
//!     Live::new()
//!         .presence("room:*")
//!         .history("room:*", History::new().size(100).ttl(Duration::from_secs(600)))
//!         .info(|session| json!({ "name": session.get::<String>("name") }))
//!         .router(chat),
//! );
//! ```
//!
//! # What a client can do
//!
//! `subscribe` (with `since` to recover, or `history` for the latest publications),
//! `unsubscribe`, and `presence` (the member list), each a request answered once; see
//! docs/PROTOCOL.md for every field. Only topics matching a pattern given to [`Live::topics`],
//! [`Live::presence`] or [`Live::history`] can be subscribed, and [`Live::authorize`] can refuse
//! one per session. Publishing is the application's: a route of its router that checks what it
//! must, then calls [`LiveHub::publish`].
//!
//! # Guarantees
//!
//! - **Seam.** A subscriber gets the publications it missed in its subscribe reply, then every
//!   later one, in order, none twice: publishing and subscribing to a topic take the same lock
//!   on this node, so each publication is either in the reply or queued after it.
//! - **Recovery** is complete (`recovered: true`) when the client's epoch is the topic's, and
//!   everything after its offset is still kept ([`History::size`], [`History::ttl`]) and is at
//!   most [`Live::max_recover`]. Otherwise the reply says `recovered: false`, and the
//!   application refetches its state.
//! - **Epochs.** A topic's stream in memory starts with a fresh epoch when the process starts,
//!   and when the topic had no subscriber and nothing left in its history (it was let go); in a
//!   store, when its stream expired (no publication for its ttl). Either way a returning client
//!   learns that its history is gone, and a connected one sees the new epoch on the next
//!   publication (every publication of a topic with history carries its epoch and offset).
//! - **Presence** events are at most once. A member leaves when it unsubscribes or
//!   disconnects, for whatever reason; with a cluster, the members of a node that vanished
//!   without their sessions disconnecting (a crash, a network split) leave for the other nodes
//!   within the driver's presence bound plus two [`Live::presence_watch`] periods (Redis
//!   defaults: about 5 s), their `leave` without `info`.
//! - **Several nodes.** Without a store, histories and offsets are each node's own: a topic
//!   with history then works only when its publisher and all its subscribers are on one node;
//!   with several nodes, use a store. With a [`HistoryStore`] shared
//!   by the nodes ([`Live::store`]; Redis: `melody_redis::RedisHistory`, NATS JetStream:
//!   `melody_nats::NatsHistory`), each topic has one stream and one order, the store's,
//!   whichever node publishes; every node gets every
//!   publication from the store in that order, and a client recovers on any node what was
//!   published on any node, with the same seam (the subscriber joins the topic's deliveries
//!   only once its node's feed has caught up with what its reply told it). Presence events
//!   cross nodes with a cluster ([`crate::cluster`]) as any topic send does; the member list
//!   of a subscribe reply ([`LiveHub::cluster_members`]) covers every node: this node's
//!   members, then the others' as known from their `join` events and the cluster's presence
//!   ([`LiveHub::members`] is this node's only). With a store, SSE streams resume from
//!   `Last-Event-ID` on any node too.
//!
//! # Costs
//!
//! A topic with history keeps up to [`History::size`] publications in memory (their JSON and
//! 40 bytes each), or none with a store; with presence, one entry per member; and one per
//! subscriber. A publication is encoded once, like any broadcast; to a topic with history it
//! takes the topic's lock for its fan-out (publishers to one topic take turns). Measured: no
//! difference in CPU per delivery with history on or off (docs/PERFORMANCE_NOTES.md).

mod history;
mod nodes;
mod remote;
mod routes;
mod rules;
#[cfg(feature = "sse")]
mod sse;
mod state;
mod store;
mod stored;
mod wire;

use std::{fmt, sync::Arc};

use serde::Serialize;
use serde_json::{Value, value::RawValue};

pub use self::{
    history::{History, StreamPosition, new_epoch},
    store::{Feed, HistoryStore, ReadFrom, StoreError, StoreFuture, StreamRead},
    wire::{MAX_TOPIC_LEN, Member},
};
use self::{
    rules::{Pattern, Rule, Settings},
    state::LiveState,
};
use crate::{
    Closed, Melody, Session,
    plugin::Plugin,
    router::{EncodeError, Router},
};

/// The live-topics plug-in: which topics clients may subscribe to, with presence and history,
/// and the application's router that it extends. See the [module docs](self).
#[must_use = "live topics do nothing until plugged into a hub"]
pub struct Live {
    settings: Settings,
    store: Option<Arc<dyn HistoryStore>>,
    router: Router,
    /// How often the cluster's presence is read for nodes that vanished.
    presence_watch: std::time::Duration,
}

impl Default for Live {
    fn default() -> Self {
        Self {
            settings: Settings {
                max_recover: 1000,
                ..Settings::default()
            },
            store: None,
            router: Router::new(),
            presence_watch: std::time::Duration::from_secs(1),
        }
    }
}

impl Live {
    /// No topic open yet, an empty router, at most 1,000 publications recovered.
    pub fn new() -> Self {
        Self::default()
    }

    fn rule(mut self, pattern: &str, presence: bool, history: Option<History>) -> Self {
        self.settings.rules.push(Rule {
            pattern: Pattern::parse(pattern),
            presence,
            history,
        });
        self
    }

    /// Lets clients subscribe to topics matching `pattern` (a name, or a prefix ending in `*`:
    /// `room:*`; `*` alone is every topic), with neither presence nor history.
    pub fn topics(self, pattern: &str) -> Self {
        self.rule(pattern, false, None)
    }

    /// Presence on topics matching `pattern` (which clients may then subscribe to): members
    /// get `join` and `leave` events, and the member list with their subscribe reply.
    pub fn presence(self, pattern: &str) -> Self {
        self.rule(pattern, true, None)
    }

    /// History on topics matching `pattern` (which clients may then subscribe to): each
    /// publication gets an offset and is kept as `history` says, for recovery. Where several
    /// patterns give a topic history, the first one added counts.
    pub fn history(self, pattern: &str, history: History) -> Self {
        self.rule(pattern, false, Some(history))
    }

    /// What members of topics with presence show of themselves: `info(session)` when they
    /// subscribe (for example a user name the auth hook put in the session's keys). Default
    /// nothing: only their id.
    pub fn info(mut self, info: impl Fn(&Session) -> Value + Send + Sync + 'static) -> Self {
        self.settings.info = Some(Arc::new(info));
        self
    }

    /// Decides, per session and topic, whether a subscription to an open topic is allowed;
    /// a refusal answers `{"reason":"forbidden"}`.
    pub fn authorize(
        mut self,
        authorize: impl Fn(&Session, &str) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.settings.authorize = Some(Arc::new(authorize));
        self
    }

    /// Decides, per SSE request (its head, after the hub's auth hook) and topic, whether
    /// [`LiveHub::sse_handler`] streams an open topic. Without it, SSE streams are served only
    /// when there is no [`Live::authorize`].
    pub fn authorize_sse(
        mut self,
        authorize: impl Fn(&http::request::Parts, &str) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.settings.authorize_sse = Some(Arc::new(authorize));
        self
    }

    /// Runs on the server when a member joins a topic with presence: the live topics (to
    /// publish, to read members: capture no `Melody` in the callback, which would keep the hub
    /// alive), the topic, the member. Runs outside the topic's lock; a panic is logged.
    pub fn on_join(mut self, f: impl Fn(&LiveHub, &str, &Member) + Send + Sync + 'static) -> Self {
        self.settings.on_join = Some(Arc::new(f));
        self
    }

    /// Runs on the server when a member leaves a topic with presence, by unsubscribing or
    /// disconnecting; as [`Live::on_join`]. Do not publish to live topics from
    /// [`Melody::on_error`]: a full queue met during a live fan-out is reported there while the
    /// topic's lock is held.
    pub fn on_leave(mut self, f: impl Fn(&LiveHub, &str, &Member) + Send + Sync + 'static) -> Self {
        self.settings.on_leave = Some(Arc::new(f));
        self
    }

    /// The most publications one subscription recovers (and the most `history` it gets);
    /// missing more is `recovered: false`. Default 1,000.
    pub fn max_recover(mut self, max: usize) -> Self {
        self.settings.max_recover = max;
        self
    }

    /// Keeps the histories in `store`, shared by every node of a cluster (e.g.
    /// `melody_redis::RedisHistory`, `melody_nats::NatsHistory`), instead of this node's
    /// memory: one order per topic (the store's), whichever node publishes, and a subscriber
    /// recovers on any node what was published on any node.
    pub fn store(mut self, store: impl HistoryStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// How often, with a cluster, each node reads the cluster's presence to find nodes that
    /// vanished without their members leaving (a crash, a network split): their members'
    /// `leave` events (without `info`) then reach this node's members of the topic, within
    /// the driver's presence bound plus two of these. Default 1 s.
    pub fn presence_watch(mut self, every: std::time::Duration) -> Self {
        self.presence_watch = every.max(std::time::Duration::from_millis(10));
        self
    }

    /// The application's router: the live protocol's requests (`subscribe`, `unsubscribe`,
    /// `presence`) are added to it, replacing routes of those types, and it is plugged in with
    /// the live topics. Plug the router this way, not on its own.
    pub fn router(mut self, router: Router) -> Self {
        self.router = router;
        self
    }
}

impl Plugin for Live {
    fn install(self, melody: &Melody) {
        let state = Arc::new(LiveState::new(self.settings, self.store));
        melody.plugins().insert(state.clone());
        if let Some(store) = &state.store {
            store.start(store::Feed {
                state: Arc::downgrade(&state),
                melody: melody.plugins().downgrade(),
            });
        }
        let leaving = state.clone();
        melody
            .plugins()
            .on_disconnect(move |session| leaving.disconnected(session));
        let presence = state.settings.rules.iter().any(|rule| rule.presence);
        if let (true, Ok(runtime)) = (presence, tokio::runtime::Handle::try_current()) {
            let remote = state.remote.clone();
            melody.plugins().add_sink(nodes::PeerPresence {
                remote: remote.clone(),
                state: Arc::downgrade(&state),
            });
            runtime.spawn(nodes::watch(
                melody.plugins().downgrade(),
                Arc::downgrade(&state),
                remote,
                self.presence_watch,
            ));
        }
        melody.plug(routes::add(self.router, &state));
    }
}

impl fmt::Debug for Live {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Live")
            .field("settings", &self.settings)
            .field("router", &self.router)
            .finish()
    }
}

/// The live topics of a hub, to publish and to look at: [`LiveHub::of`] a hub [`Live`] was
/// plugged into. Cheap to clone.
#[derive(Clone)]
pub struct LiveHub {
    melody: Melody,
    state: Arc<LiveState>,
}

/// What [`LiveHub::publish`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Published {
    /// The publication's offset in the topic's stream, when the topic keeps history.
    pub offset: Option<u64>,
    /// Recipients reached on this node (sessions and sinks such as SSE subscribers).
    pub reached: usize,
}

/// Why [`LiveHub::publish`] published nothing.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The data is not JSON.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The hub is closed.
    #[error(transparent)]
    Closed(#[from] Closed),
    /// The history store failed (the publication may or may not have been kept).
    #[error("history store: {0}")]
    Store(Arc<dyn std::error::Error + Send + Sync>),
}

impl LiveHub {
    /// The live topics of `melody`; `None` when [`Live`] is not plugged into it.
    #[must_use]
    pub fn of(melody: &Melody) -> Option<Self> {
        let state = melody.plugins().get::<LiveState>()?;
        Some(Self {
            melody: melody.clone(),
            state,
        })
    }

    /// Publishes `data` to `topic`'s subscribers as
    /// `{"type":"pub","data":{"topic","epoch","offset","data"}}`, kept in its history when it
    /// has one (without history: no epoch, no offset). Any topic can be published to, open to
    /// clients or not. With a [store](Live::store), a topic with history is published through
    /// the store, which hands it to every node (this one too) in its order: `reached` is then
    /// 0, delivery being the store's.
    ///
    /// # Errors
    ///
    /// [`PublishError`]: data that is not JSON, a closed hub, a store that failed.
    pub async fn publish(
        &self,
        topic: &str,
        data: impl Serialize,
    ) -> Result<Published, PublishError> {
        let raw: Box<RawValue> =
            serde_json::value::to_raw_value(&data).map_err(EncodeError::from)?;
        if let (Some(store), Some(history)) = (
            &self.state.store,
            self.state.settings.features(topic).history,
        ) {
            if self.melody.is_closed() {
                return Err(PublishError::Closed(Closed));
            }
            // The store's feed delivers it, here as on every node.
            let position = store
                .append(topic, &raw, history)
                .await
                .map_err(|error| PublishError::Store(Arc::from(error)))?;
            return Ok(Published {
                offset: Some(position.offset),
                reached: 0,
            });
        }
        let (offset, reached) = self.state.publish(&self.melody, topic, Arc::from(raw))?;
        Ok(Published { offset, reached })
    }

    /// Subscribes `session` to `topic` from the server (a plain WebSocket handler's way in):
    /// with presence on, the others get its `join`; it gets the topic's publications from now
    /// on, but no reply and nothing of the past. `Ok(false)` when it was subscribed already.
    ///
    /// # Errors
    ///
    /// [`JoinError`](crate::JoinError) as [`Session::join`] (closed, too many topics).
    pub fn join(&self, session: &Session, topic: &str) -> Result<bool, crate::JoinError> {
        let already = session.is_in(topic);
        let features = self.state.settings.features(topic);
        let outcome =
            self.state
                .subscribe(session, topic, features, &history::Replay::Nothing, |_| {
                    Ok(())
                });
        match outcome {
            Ok(()) => Ok(!already),
            Err(state::SubscribeError::Join(error)) => Err(error),
            Err(state::SubscribeError::Reply(_)) => unreachable!("joining sends no reply"),
        }
    }

    /// Unsubscribes `session` from `topic` from the server; with presence on, the others get
    /// its `leave`. `false` when it was not subscribed.
    pub fn leave(&self, session: &Session, topic: &str) -> bool {
        self.state.unsubscribe(session, topic)
    }

    /// The members of a topic with presence, on this node.
    #[must_use]
    pub fn members(&self, topic: &str) -> Vec<Member> {
        self.state.members(topic)
    }

    /// The members of a topic with presence on every node of the cluster: this node's, then
    /// the other nodes' as this node knows them — from the `join` and `leave` events they
    /// send (with the members' info) and the cluster's presence at each
    /// [`Live::presence_watch`] (ids only: a member that joined before this node started
    /// watching has no info here). What subscribe replies and `presence` requests list.
    #[must_use]
    pub fn cluster_members(&self, topic: &str) -> Vec<Member> {
        self.state.cluster_members(topic)
    }

    /// Where a topic with history stands: its epoch and last offset (`None` before anything
    /// was published or subscribed there, or after it was swept out).
    #[must_use]
    pub fn position(&self, topic: &str) -> Option<StreamPosition> {
        self.state.position(topic)
    }

    /// How many topics hold state (members or history) on this node: bounded by what
    /// subscribers keep open and what history keeps.
    #[must_use]
    pub fn topics_held(&self) -> usize {
        self.state.topics_held()
    }
}

impl fmt::Debug for LiveHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveHub")
            .field("topics_held", &self.topics_held())
            .finish_non_exhaustive()
    }
}
