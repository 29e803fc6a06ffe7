//! Live topics whose history is in a [`HistoryStore`](super::HistoryStore) shared by every
//! node (`LiveHub::publish` appends to it): delivering what the store feeds this node, and
//! subscribing with a history read that is in flight while publications keep arriving.
//!
//! The seam, with a store: a subscriber first registers as waiting on its topic (under the
//! topic's lock), so that whatever the feed delivers from then on is kept for it; then reads the
//! store (no lock held: it is a network call); then, under the lock again, joins the topic and
//! gets its reply: the history read, plus what was fed meanwhile after it. Every publication
//! the feed delivers before that moment is in the reply; every one after it reaches the session
//! through the topic. The feed delivers a topic's publications in the store's order.

use std::sync::Arc;

use serde_json::value::RawValue;

use super::{
    history::{Entry, History, Recovery, Replay, StreamPosition, recoverable},
    rules::Features,
    state::{LiveState, SubscribeError, Subscription, Waiting},
    store::{ReadFrom, StreamRead},
    wire,
};
use crate::{Melody, Session};

impl LiveState {
    /// A publication the store fed this node: to the topic's sessions here (never on to other
    /// nodes: each has its own feed), and to its waiting subscribers.
    pub(crate) fn fed(
        &self,
        melody: &Melody,
        topic: &str,
        position: StreamPosition,
        data: Arc<RawValue>,
    ) {
        let message = wire::publication(topic, Some(&position), &data);
        let deliver = || {
            #[cfg(feature = "sse")]
            if melody.plugins().get::<crate::sse::Index>().is_some() {
                let event = super::sse::event(&position, data.get());
                let _ = melody
                    .topic(topic)
                    .local()
                    .send_with(message.clone(), &event);
                return;
            }
            let _ = melody.topic(topic).local().send(message.clone());
        };
        let under_lock = self.with_existing(topic, |inner| {
            deliver();
            for waiting in &mut inner.waiting {
                let Some(answered) = &waiting.answered else {
                    waiting.fed.push((position.clone(), data.clone()));
                    continue;
                };
                // Answered, the feed not yet at the reply's position: what the reply did not
                // have goes to the session directly, in the feed's order.
                let in_reply =
                    answered.epoch == position.epoch && position.offset <= answered.offset;
                if !in_reply {
                    let _ = waiting.session.send(message.clone());
                }
            }
        });
        if under_lock.is_none() {
            deliver();
        }
    }

    /// The feed brought a read's marker: the subscriber that made it, once answered, joins the
    /// topic's deliveries now.
    pub(crate) fn caught_up(&self, topic: &str, marker: u64) {
        self.with_existing(topic, |inner| {
            let Some(at) = inner.waiting.iter().position(|w| w.marker == marker) else {
                return;
            };
            if inner.waiting[at].answered.is_none() {
                inner.waiting[at].marker_seen = true;
                return;
            }
            let waiting = inner.waiting.swap_remove(at);
            if let Err(error) = waiting.session.join(topic) {
                tracing::debug!(%topic, %error, "a live subscriber could not join after its reply");
            }
            superseded(&mut inner.waiting, waiting.session.id());
        });
    }

    /// The feed lost publications: answered subscribers stop waiting for their markers (which
    /// may be lost too) and join now; those still reading will see what their read saw.
    pub(crate) fn feed_lost(&self) {
        for (name, state) in self.topic_states() {
            let mut inner = super::state::lock(&state.inner);
            let answered: Vec<_> = inner
                .waiting
                .iter()
                .filter(|w| w.answered.is_some())
                .map(|w| w.session.clone())
                .collect();
            inner.waiting.retain(|w| w.answered.is_none());
            for session in answered {
                let _ = session.join(&*name);
            }
        }
    }

    /// Subscribes `session` to a topic whose history is in `store` (see the module docs for
    /// the seam).
    pub(crate) async fn subscribe_stored(
        &self,
        session: &Session,
        topic: &str,
        features: Features,
        history: History,
        replay: &Replay,
        reply: impl FnOnce(&Subscription) -> Result<(), Box<dyn std::error::Error + Send + Sync>>,
    ) -> Result<(), SubscribeError> {
        let Some(store) = self.store.clone() else {
            return Err(SubscribeError::Reply("no history store".into()));
        };
        let max = self.settings.max_recover;
        let member = features.presence.then(|| self.member(session));
        let id = session.id();
        let marker = self
            .next_marker
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Listed for the session's disconnect before anything can make it a subscriber.
        self.index(id, topic, true);
        self.with_topic(topic, |_, inner| {
            inner.waiting.push(Waiting {
                session: session.clone(),
                fed: Vec::new(),
                answered: None,
                marker,
                marker_seen: false,
            });
        });
        let (from, count) = match replay {
            // One more than may be recovered: more than `max` missed is not recovered.
            Replay::Since(since) => (ReadFrom::After(since.offset), max.saturating_add(1)),
            Replay::Latest(n) => (ReadFrom::Latest, (*n).min(max)),
            Replay::Nothing => (ReadFrom::Latest, 0),
        };
        let read = store.read(topic, from, count, history, marker).await;
        let outcome = self.with_topic(topic, |name, inner| {
            // By marker: a session may subscribe again while an earlier subscription of it
            // still waits for the feed.
            let Some(at) = inner.waiting.iter().position(|w| w.marker == marker) else {
                // It unsubscribed or went while its read was in flight.
                return Ok((name.clone(), false));
            };
            let mut waiting = inner.waiting.swap_remove(at);
            let read = match read {
                Ok(read) => read,
                Err(error) => {
                    self.remove_if_idle(name, inner);
                    return Err(SubscribeError::Reply(error));
                }
            };
            let (position, recovery) = merge(read, std::mem::take(&mut waiting.fed), replay, max);
            // The limit is checked now, while the reply can still say so.
            let config = session.melody().config().clone();
            if !session.is_in(name) && session.topics().len() >= config.max_topics_per_session {
                self.remove_if_idle(name, inner);
                return Err(SubscribeError::Join(crate::JoinError::TooManyTopics {
                    max: config.max_topics_per_session,
                }));
            }
            let new_member = member.as_ref().is_some_and(|member| {
                inner
                    .members
                    .insert(member.id, member.info.clone())
                    .is_none()
            });
            inner.subscribers.insert(id);
            let subscription = Subscription {
                position: position.clone(),
                recovery,
                members: features
                    .presence
                    .then(|| self.members_everywhere(name, inner)),
            };
            if let Err(error) = reply(&subscription) {
                if new_member {
                    inner.members.remove(&id);
                }
                if !session.is_in(name) {
                    inner.subscribers.remove(&id);
                }
                self.remove_if_idle(name, inner);
                return Err(SubscribeError::Reply(error));
            }
            // The feed may lag behind the store: the session joins the topic's deliveries once
            // its feed has brought the read's marker, so that nothing reaches it twice.
            if waiting.marker_seen {
                if let Err(error) = session.join(&**name) {
                    inner.subscribers.remove(&id);
                    self.remove_if_idle(name, inner);
                    return Err(SubscribeError::Join(error));
                }
                superseded(&mut inner.waiting, id);
            } else {
                waiting.answered = position;
                inner.waiting.push(waiting);
            }
            if let (Some(member), true) = (&member, new_member) {
                let event = wire::presence_event("join", name, member);
                super::state::announce(&session.melody(), name, Some(id), event, false);
            }
            Ok((name.clone(), new_member))
        });
        self.finish_subscribe(session, topic, member.as_ref(), outcome)
    }
}

/// A session that joined its topic's deliveries: an earlier subscription of it that still
/// waited for the feed is done (what it would send now comes through the topic).
fn superseded(waiting: &mut Vec<Waiting>, id: crate::SessionId) {
    waiting.retain(|w| w.session.id() != id || w.answered.is_none());
}

/// Whether a store's read made from `since` (after its offset, for `max + 1` publications)
/// holds everything published since: same epoch, nothing trimmed or expired in between, at
/// most `max` missed.
pub(super) fn recovers(read: &StreamRead, since: &StreamPosition, max: usize) -> bool {
    read.position.as_ref().is_some_and(|at| {
        let oldest = read.oldest.unwrap_or(at.offset + 1);
        recoverable(since, at, oldest, max) && read.publications.len() <= max
    })
}

/// The subscriber's position and publications: the store's read, moved on by what the feed
/// delivered while it was in flight.
fn merge(
    read: StreamRead,
    fed: Vec<(StreamPosition, Arc<RawValue>)>,
    replay: &Replay,
    max: usize,
) -> (Option<StreamPosition>, Recovery) {
    let entry = |(offset, data): (u64, Arc<RawValue>)| Entry {
        offset,
        at: std::time::Instant::now(),
        data,
    };
    let mut position = read.position.clone();
    let mut recovery = match (replay, &read.position) {
        (Replay::Nothing, _) => Recovery::default(),
        (Replay::Latest(_), _) => Recovery {
            publications: read.publications.into_iter().map(entry).collect(),
            recovered: None,
        },
        (Replay::Since(since), Some(_)) => {
            if recovers(&read, since, max) {
                Recovery {
                    publications: read.publications.into_iter().map(entry).collect(),
                    recovered: Some(true),
                }
            } else {
                Recovery {
                    publications: Vec::new(),
                    recovered: Some(false),
                }
            }
        }
        // No stream at all: nothing was kept since that position.
        (Replay::Since(_), None) => Recovery {
            publications: Vec::new(),
            recovered: Some(false),
        },
    };
    // What the feed delivered during the read and the read did not see comes after it.
    for (at, data) in fed {
        let seen = position
            .as_ref()
            .is_some_and(|now| now.epoch == at.epoch && at.offset <= now.offset);
        if seen {
            continue;
        }
        if position.as_ref().is_some_and(|now| now.epoch != at.epoch) {
            // The stream restarted meanwhile: what was read belongs to a past epoch.
            if recovery.recovered == Some(true) {
                recovery.recovered = Some(false);
            }
            recovery.publications.clear();
        }
        if recovery.recovered != Some(false) {
            recovery.publications.push(entry((at.offset, data)));
        }
        position = Some(at);
    }
    (position, recovery)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: u64) -> Arc<RawValue> {
        Arc::from(RawValue::from_string(n.to_string()).unwrap())
    }

    fn at(epoch: &str, offset: u64) -> StreamPosition {
        StreamPosition {
            epoch: epoch.into(),
            offset,
        }
    }

    fn offsets(recovery: &Recovery) -> Vec<u64> {
        recovery.publications.iter().map(|e| e.offset).collect()
    }

    fn read(offset: u64, oldest: u64, publications: &[u64]) -> StreamRead {
        StreamRead {
            position: Some(at("e", offset)),
            oldest: Some(oldest),
            publications: publications.iter().map(|&n| (n, data(n))).collect(),
        }
    }

    #[test]
    fn what_the_feed_brought_during_the_read_follows_it_once() {
        let since = Replay::Since(at("e", 3));
        // The read saw up to 6; the feed brought 5 and 6 (seen) and 7, 8 (new) meanwhile.
        let fed = [5, 6, 7, 8].map(|n| (at("e", n), data(n))).to_vec();
        let (position, recovery) = merge(read(6, 1, &[4, 5, 6]), fed, &since, 100);
        assert_eq!(position, Some(at("e", 8)));
        assert_eq!(recovery.recovered, Some(true));
        assert_eq!(offsets(&recovery), [4, 5, 6, 7, 8]);
        // A fresh subscriber gets only what came after the read's position.
        let fed = [6, 7].map(|n| (at("e", n), data(n))).to_vec();
        let (position, recovery) = merge(read(6, 1, &[]), fed, &Replay::Nothing, 100);
        assert_eq!((position, offsets(&recovery)), (Some(at("e", 7)), vec![7]));
    }

    #[test]
    fn incomplete_reads_and_new_epochs_are_not_recovered() {
        let since = Replay::Since(at("e", 1));
        // Trimmed: the oldest kept is 4, so 2 and 3 are gone.
        let (_, recovery) = merge(read(6, 4, &[4, 5, 6]), Vec::new(), &since, 100);
        assert_eq!(
            (recovery.recovered, offsets(&recovery)),
            (Some(false), vec![])
        );
        // More than max missed.
        let (_, recovery) = merge(read(6, 1, &[2, 3, 4]), Vec::new(), &since, 2);
        assert_eq!(recovery.recovered, Some(false));
        // No stream.
        let (position, recovery) = merge(StreamRead::default(), Vec::new(), &since, 100);
        assert_eq!((position, recovery.recovered), (None, Some(false)));
        // The stream restarted during the read.
        let fed = vec![(at("f", 1), data(1))];
        let (position, recovery) = merge(read(6, 1, &[2, 3, 4, 5, 6]), fed, &since, 100);
        assert_eq!(position, Some(at("f", 1)));
        assert_eq!(
            (recovery.recovered, offsets(&recovery)),
            (Some(false), vec![])
        );
    }
}
