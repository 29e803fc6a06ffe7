//! The live topics of one hub: each topic's stream and members behind one lock, which orders
//! publishing, subscribing and leaving on this node.
//!
//! Why one lock per topic: a subscriber must get what it missed and then every publication
//! after it, with no gap and no repeat at the seam. Publishing appends to the stream and fans
//! out under the topic's lock; subscribing reads the stream, queues the reply and joins the
//! topic under the same lock, so every publication is either in the reply or queued after it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use serde_json::{Value, value::RawValue};

use super::{
    history::{Recovery, Replay, Stream, StreamPosition},
    rules::{Features, Settings},
    store::HistoryStore,
    wire::{self, Member},
};
use crate::{Closed, JoinError, Melody, Session, SessionId};

/// How often, at most, topics left with nothing in them are swept out.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

pub(crate) struct LiveState {
    pub(crate) settings: Settings,
    /// Where histories live when several nodes share them; `None`: in this node's memory.
    pub(crate) store: Option<Arc<dyn HistoryStore>>,
    topics: Mutex<Topics>,
    /// Markers of store reads (`HistoryStore::read`), unique per hub.
    pub(super) next_marker: std::sync::atomic::AtomicU64,
    /// The topics with state each session subscribed to, for its disconnect (its own list of
    /// topics may have lost one that the application left through `Session::leave`).
    by_session: Mutex<HashMap<SessionId, std::collections::HashSet<Arc<str>>>>,
    /// The other nodes' members of presence topics.
    pub(crate) remote: Arc<super::remote::Remote>,
}

struct Topics {
    by_name: HashMap<Arc<str>, Arc<TopicState>>,
    swept: Instant,
}

#[derive(Default)]
pub(super) struct TopicState {
    pub(super) inner: Mutex<TopicInner>,
}

#[derive(Default)]
pub(super) struct TopicInner {
    pub(super) stream: Option<Stream>,
    pub(super) members: HashMap<SessionId, Value>,
    /// Every session subscribed through the live protocol (with or without presence): a topic
    /// with subscribers is never let go, so its epoch cannot change under them.
    pub(super) subscribers: std::collections::HashSet<SessionId>,
    /// SSE streams of the topic (served by `LiveHub::sse_handler`).
    pub(super) sse_streams: usize,
    /// With a store: subscribers whose history read is in flight, and what the feed delivered
    /// to the topic meanwhile.
    pub(super) waiting: Vec<Waiting>,
    /// Taken out of the map: whoever holds it must look the topic up again.
    removed: bool,
}

/// A subscriber of a topic whose history is in a store, not yet in the topic's member list:
/// while its read is in flight, the publications fed meanwhile; once answered, the position
/// its reply went up to, until the feed (which may lag behind the store) gets there.
pub(super) struct Waiting {
    pub(super) session: Session,
    pub(super) fed: Vec<(StreamPosition, Arc<RawValue>)>,
    pub(super) answered: Option<StreamPosition>,
    /// Its read's marker, and whether the feed has brought it (see `HistoryStore::read`).
    pub(super) marker: u64,
    pub(super) marker_seen: bool,
}

impl TopicInner {
    fn is_idle(&mut self, now: Instant) -> bool {
        if let Some(stream) = &mut self.stream {
            stream.trim(now);
        }
        self.members.is_empty()
            && self.subscribers.is_empty()
            && self.sse_streams == 0
            && self.waiting.is_empty()
            && self.stream.as_ref().is_none_or(Stream::is_empty)
    }
}

/// What a subscription gives the subscriber.
pub(crate) struct Subscription {
    pub(crate) position: Option<StreamPosition>,
    pub(crate) recovery: Recovery,
    pub(crate) members: Option<Vec<Member>>,
}

/// Why a subscription failed.
pub(crate) enum SubscribeError {
    Join(JoinError),
    /// Queueing the reply failed; the subscription was undone.
    Reply(Box<dyn std::error::Error + Send + Sync>),
}

impl LiveState {
    pub(crate) fn new(settings: Settings, store: Option<Arc<dyn HistoryStore>>) -> Self {
        Self {
            settings,
            store,
            next_marker: std::sync::atomic::AtomicU64::new(1),
            by_session: Mutex::default(),
            remote: Arc::default(),
            topics: Mutex::new(Topics {
                by_name: HashMap::new(),
                swept: Instant::now(),
            }),
        }
    }

    /// Runs `f` on the topic's state under its lock; the state is created when missing (and
    /// idle topics are swept out now and then).
    pub(super) fn with_topic<R>(
        &self,
        name: &str,
        f: impl FnOnce(&Arc<str>, &mut TopicInner) -> R,
    ) -> R {
        loop {
            let (state, key) = {
                let mut topics = lock(&self.topics);
                let now = Instant::now();
                if now.duration_since(topics.swept) >= SWEEP_EVERY {
                    topics.swept = now;
                    // `try_lock`: a topic's lock is taken before the map's elsewhere, so
                    // waiting for one here could deadlock; a busy topic is not idle anyway.
                    topics
                        .by_name
                        .retain(|_, topic| match topic.inner.try_lock() {
                            Ok(mut inner) => {
                                let idle = inner.is_idle(now);
                                inner.removed |= idle;
                                !idle
                            }
                            Err(_) => true,
                        });
                }
                match topics.by_name.get_key_value(name) {
                    Some((key, state)) => (state.clone(), key.clone()),
                    None => {
                        let key: Arc<str> = Arc::from(name);
                        let state = Arc::new(TopicState::default());
                        topics.by_name.insert(key.clone(), state.clone());
                        (state, key)
                    }
                }
            };
            let mut inner = lock(&state.inner);
            // Swept out between the map and its lock: look it up again.
            if !inner.removed {
                return f(&key, &mut inner);
            }
        }
    }

    /// The topic's state if it exists.
    fn existing(&self, name: &str) -> Option<Arc<TopicState>> {
        lock(&self.topics).by_name.get(name).cloned()
    }

    /// Takes an idle topic out of the map. Called with its lock held (the map's lock is only
    /// ever taken inside a topic's, never the other way round).
    pub(super) fn remove_if_idle(&self, name: &str, inner: &mut TopicInner) {
        // A topic already removed is not the map's any more (a new one may have its name).
        if !inner.removed && inner.is_idle(Instant::now()) {
            inner.removed = true;
            lock(&self.topics).by_name.remove(name);
        }
    }

    /// Subscribes `session`: joins the topic, and — before anything published after it —
    /// `reply` queues the answer built from what this returns.
    pub(crate) fn subscribe(
        &self,
        session: &Session,
        topic: &str,
        features: Features,
        replay: &Replay,
        reply: impl FnOnce(&Subscription) -> Result<(), Box<dyn std::error::Error + Send + Sync>>,
    ) -> Result<(), SubscribeError> {
        if !features.keeps_state() {
            let joined = session.join(topic).map_err(SubscribeError::Join)?;
            let subscription = Subscription {
                position: None,
                recovery: Recovery::default(),
                members: None,
            };
            return reply(&subscription).map_err(|error| {
                if joined {
                    session.leave(topic);
                }
                SubscribeError::Reply(error)
            });
        }
        // The application's code runs outside the topic's lock: `info` before, `on_join`
        // after (either may use the LiveHub, on this topic too).
        let member = features.presence.then(|| self.member(session));
        // Listed for the session's disconnect before anything can make it a subscriber.
        self.index(session.id(), topic, true);
        let outcome = self.with_topic(topic, |name, inner| {
            let joined = match session.join(&**name) {
                Ok(joined) => joined,
                Err(error) => {
                    self.remove_if_idle(name, inner);
                    return Err(SubscribeError::Join(error));
                }
            };
            let now = Instant::now();
            // With a store, histories are the store's (`stored.rs`), never this memory's.
            let history = features.history.filter(|_| self.store.is_none());
            let (position, recovery) = match history {
                Some(limits) => {
                    let stream = inner.stream.get_or_insert_with(|| Stream::new(limits));
                    let recovery = stream.replay(replay, self.settings.max_recover, now);
                    (Some(stream.position()), recovery)
                }
                None => (None, Recovery::default()),
            };
            let new_member = member.as_ref().is_some_and(|member| {
                inner
                    .members
                    .insert(member.id, member.info.clone())
                    .is_none()
            });
            inner.subscribers.insert(session.id());
            let members = features
                .presence
                .then(|| self.members_everywhere(name, inner));
            let subscription = Subscription {
                position,
                recovery,
                members,
            };
            if let Err(error) = reply(&subscription) {
                if joined {
                    session.leave(name);
                    inner.subscribers.remove(&session.id());
                }
                if new_member {
                    inner.members.remove(&session.id());
                }
                self.remove_if_idle(name, inner);
                return Err(SubscribeError::Reply(error));
            }
            if let (Some(member), true) = (&member, new_member) {
                let event = wire::presence_event("join", name, member);
                announce(&session.melody(), name, Some(session.id()), event, false);
            }
            Ok((name.clone(), new_member))
        });
        self.finish_subscribe(session, topic, member.as_ref(), outcome)
    }

    /// Lists or unlists `topic` among the topics `session` subscribed to.
    pub(super) fn index(&self, session: SessionId, topic: &str, subscribed: bool) {
        let mut by_session = lock(&self.by_session);
        if subscribed {
            by_session
                .entry(session)
                .or_default()
                .insert(Arc::from(topic));
        } else if let Some(topics) = by_session.get_mut(&session) {
            topics.remove(topic);
            if topics.is_empty() {
                by_session.remove(&session);
            }
        }
    }

    /// After a subscription's locked part: unlisted when it failed, `on_join` when it made a
    /// new member (outside the lock; a panic there is reported, not spread).
    pub(super) fn finish_subscribe(
        &self,
        session: &Session,
        topic: &str,
        member: Option<&Member>,
        outcome: Result<(Arc<str>, bool), SubscribeError>,
    ) -> Result<(), SubscribeError> {
        let (name, new_member) = match outcome {
            Ok(done) => done,
            Err(error) => {
                if !session.is_in(topic) {
                    self.index(session.id(), topic, false);
                }
                return Err(error);
            }
        };
        if let (Some(member), true, Some(on_join)) = (member, new_member, &self.settings.on_join) {
            if let Some(live) = super::LiveHub::of(&session.melody()) {
                guarded("on_join", || on_join(&live, &name, member));
            }
        }
        Ok(())
    }

    /// Takes `session` out of `topic`; whether it was in it. Its `leave` goes to the others.
    pub(crate) fn unsubscribe(&self, session: &Session, topic: &str) -> bool {
        let melody = session.melody();
        let (left, member) = self
            .with_existing(topic, |inner| {
                let left = session.leave(topic);
                (left, self.left(&melody, topic, session.id(), inner))
            })
            .unwrap_or_else(|| (session.leave(topic), None));
        self.index(session.id(), topic, false);
        self.announce_leave(&melody, topic, member.as_ref());
        left
    }

    /// A session that disconnected leaves every live topic it subscribed to: first all of
    /// them, then the application hears of each (so that a callback that panics cannot leave
    /// the session a member of the rest).
    pub(crate) fn disconnected(&self, session: &Session) {
        let melody = session.melody();
        let topics = lock(&self.by_session)
            .remove(&session.id())
            .unwrap_or_default();
        let left: Vec<(Arc<str>, Member)> = topics
            .into_iter()
            .filter_map(|topic| {
                let member = self
                    .with_existing(&topic, |inner| {
                        self.left(&melody, &topic, session.id(), inner)
                    })
                    .flatten()?;
                Some((topic, member))
            })
            .collect();
        for (topic, member) in &left {
            self.announce_leave(&melody, topic, Some(member));
        }
    }

    /// Runs `f` under the lock of `topic`'s state, if it has one.
    pub(super) fn with_existing<R>(
        &self,
        topic: &str,
        f: impl FnOnce(&mut TopicInner) -> R,
    ) -> Option<R> {
        let mut f = Some(f);
        loop {
            let state = self.existing(topic)?;
            let mut inner = lock(&state.inner);
            // Swept out between the map and its lock: look it up again.
            if !inner.removed {
                return f.take().map(|f| f(&mut inner));
            }
        }
    }

    /// The member `id` left `topic` (already out of its member list in the core): its `leave`
    /// goes to the others, and it is returned for [`LiveState::announce_leave`].
    fn left(
        &self,
        melody: &Melody,
        topic: &str,
        id: SessionId,
        inner: &mut TopicInner,
    ) -> Option<Member> {
        // One that unsubscribes or goes while waiting for its reply or the feed never joins.
        inner.waiting.retain(|waiting| waiting.session.id() != id);
        inner.subscribers.remove(&id);
        let member = inner.members.remove(&id).map(|info| Member { id, info });
        if let Some(member) = &member {
            announce(
                melody,
                topic,
                None,
                wire::presence_event("leave", topic, member),
                false,
            );
        }
        self.remove_if_idle(topic, inner);
        member
    }

    /// Tells the application's `on_leave`, outside the topic's lock.
    fn announce_leave(&self, melody: &Melody, topic: &str, member: Option<&Member>) {
        if let (Some(member), Some(on_leave)) = (member, &self.settings.on_leave) {
            if let Some(live) = super::LiveHub::of(melody) {
                guarded("on_leave", || on_leave(&live, topic, member));
            }
        }
    }

    /// Publishes to `topic`: appended to its history when it keeps one, then fanned out.
    pub(crate) fn publish(
        &self,
        melody: &Melody,
        topic: &str,
        data: Arc<RawValue>,
    ) -> Result<(Option<u64>, usize), Closed> {
        let features = self.settings.features(topic);
        let Some(limits) = features.history else {
            let message = wire::publication(topic, None, &data);
            #[cfg(feature = "sse")]
            if melody.plugins().get::<crate::sse::Index>().is_some() {
                // SSE streams get the data alone, as for topics with history.
                let event = crate::sse::Event::new(data.get());
                return Ok((None, melody.topic(topic).send_with(message, &event)?));
            }
            let reached = melody.topic(topic).send(message)?;
            return Ok((None, reached));
        };
        self.with_topic(topic, |name, inner| {
            let stream = inner.stream.get_or_insert_with(|| Stream::new(limits));
            let offset = stream.append(data.clone(), Instant::now());
            let message = wire::publication(name, Some(&stream.position()), &data);
            #[cfg(feature = "sse")]
            if melody.plugins().get::<crate::sse::Index>().is_some() {
                // SSE subscribers get the data alone, with `epoch:offset` as the event id.
                let event = super::sse::event(&stream.position(), data.get());
                let reached = melody.topic(&**name).send_with(message, &event)?;
                return Ok((Some(offset), reached));
            }
            let reached = melody.topic(&**name).send(message)?;
            Ok((Some(offset), reached))
        })
    }

    /// `session` as a member: its id and the info the application exposes (`Live::info`).
    /// Runs the application's code: never under a topic's lock.
    pub(super) fn member(&self, session: &Session) -> Member {
        Member {
            id: session.id(),
            info: self
                .settings
                .info
                .as_ref()
                .map_or(Value::Null, |info| info(session)),
        }
    }

    /// The members of `topic` on every node: this node's, then the others' as known here.
    pub(crate) fn cluster_members(&self, topic: &str) -> Vec<Member> {
        match self.existing(topic) {
            Some(state) => self.members_everywhere(topic, &lock(&state.inner)),
            None => self.remote.members(topic),
        }
    }

    /// [`LiveState::cluster_members`] with the topic's state at hand.
    pub(super) fn members_everywhere(&self, topic: &str, inner: &TopicInner) -> Vec<Member> {
        let mut members = members_of(inner);
        let remote = self.remote.members(topic);
        members.extend(
            remote
                .into_iter()
                .filter(|member| !inner.members.contains_key(&member.id)),
        );
        members
    }

    /// The members of `topic` on this node.
    pub(crate) fn members(&self, topic: &str) -> Vec<Member> {
        self.existing(topic)
            .map(|state| members_of(&lock(&state.inner)))
            .unwrap_or_default()
    }

    /// The stream position of `topic`, when it keeps history and has a stream.
    pub(crate) fn position(&self, topic: &str) -> Option<StreamPosition> {
        let state = self.existing(topic)?;
        let inner = lock(&state.inner);
        inner.stream.as_ref().map(Stream::position)
    }

    /// Every topic's state right now (to visit each under its own lock, one at a time).
    pub(super) fn topic_states(&self) -> Vec<(Arc<str>, Arc<TopicState>)> {
        lock(&self.topics)
            .by_name
            .iter()
            .map(|(name, state)| (name.clone(), state.clone()))
            .collect()
    }

    /// How many topics hold state (members or history) right now.
    pub(crate) fn topics_held(&self) -> usize {
        lock(&self.topics).by_name.len()
    }
}

/// Sends a presence event to the topic's sessions (of every node, or this one's only when
/// `local`), never to its SSE streams (members are for the topic's subscribers, not for
/// anonymous streams).
pub(super) fn announce(
    melody: &Melody,
    topic: &str,
    except: Option<SessionId>,
    event: crate::Message,
    local: bool,
) {
    let mut to = melody.topic(topic);
    if let Some(except) = except {
        to = to.except(except);
    }
    if local {
        to = to.local();
    }
    #[cfg(feature = "sse")]
    let _ = to.send_with(event, &crate::sse::NotForSse);
    #[cfg(not(feature = "sse"))]
    let _ = to.send(event);
}

/// Runs an application callback; a panic is logged, not spread (the live topics' state stays
/// consistent whatever the callback does).
pub(super) fn guarded(what: &str, callback: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(callback)).is_err() {
        tracing::warn!(callback = what, "a live topics callback panicked");
    }
}

pub(super) fn members_of(inner: &TopicInner) -> Vec<Member> {
    inner
        .members
        .iter()
        .map(|(id, info)| Member {
            id: *id,
            info: info.clone(),
        })
        .collect()
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
