//! The topic index: which sessions are in which topic (rooms, groups, channels).
//!
//! Each topic's member list is copy-on-write: a publish takes a snapshot (one reference-count
//! increment under a brief read lock) and queues to the members with no lock held. A join or a
//! leave copies the list only while a publish still holds the previous snapshot. Membership is
//! linearizable: a publish reaches exactly the members the topic had when its snapshot was taken.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard},
};

use bytes::Bytes;

use crate::{Error, Melody, Message, Session, SessionId, backplane::Target};

/// Something that can be in a topic: a WebSocket session or an SSE subscriber.
pub(crate) trait Member: Clone {
    /// Unique among the members of one index.
    fn member_id(&self) -> u64;
}

impl Member for Session {
    fn member_id(&self) -> u64 {
        self.id().as_u64()
    }
}

/// A snapshot of a topic's members.
pub(crate) type Members<M> = Arc<Vec<M>>;

pub(crate) struct Topics<M> {
    index: RwLock<HashMap<Arc<str>, Members<M>>>,
}

impl<M> Default for Topics<M> {
    fn default() -> Self {
        Self {
            index: RwLock::default(),
        }
    }
}

impl<M: Member> Topics<M> {
    /// Adds `member` to `topic`; `false` when it was already in it.
    pub(crate) fn join(&self, topic: &Arc<str>, member: &M) -> bool {
        let mut index = self.write();
        let members = index.entry(topic.clone()).or_default();
        if members.iter().any(|m| m.member_id() == member.member_id()) {
            return false;
        }
        Arc::make_mut(members).push(member.clone());
        true
    }

    /// Removes the member with this id from `topic`; `false` when it was not in it. An emptied topic is
    /// forgotten.
    pub(crate) fn leave(&self, topic: &str, member_id: u64) -> bool {
        let mut index = self.write();
        let Some(members) = index.get_mut(topic) else {
            return false;
        };
        let Some(position) = members.iter().position(|m| m.member_id() == member_id) else {
            return false;
        };
        Arc::make_mut(members).swap_remove(position);
        if members.is_empty() {
            index.remove(topic);
        }
        true
    }

    /// Forgets every topic and member.
    #[cfg_attr(not(feature = "sse"), allow(dead_code))]
    pub(crate) fn clear(&self) {
        self.write().clear();
    }

    /// The members of `topic` at this instant (empty when the topic does not exist).
    pub(crate) fn members(&self, topic: &str) -> Members<M> {
        self.read().get(topic).cloned().unwrap_or_default()
    }

    /// The number of members of `topic`.
    pub(crate) fn len(&self, topic: &str) -> usize {
        self.read().get(topic).map_or(0, |members| members.len())
    }

    /// The names of the topics that have members.
    pub(crate) fn names(&self) -> Vec<String> {
        self.read().keys().map(|name| name.to_string()).collect()
    }

    /// The number of topics that have members.
    pub(crate) fn count(&self) -> usize {
        self.read().len()
    }

    /// The shared name of `topic`, reusing the index's copy when the topic exists.
    pub(crate) fn intern(&self, topic: &str) -> Arc<str> {
        self.read()
            .get_key_value(topic)
            .map_or_else(|| Arc::from(topic), |(name, _)| name.clone())
    }

    // A poisoned lock means a panic elsewhere while it was held; every update above leaves the
    // index consistent, so it stays usable.
    fn read(&self) -> RwLockReadGuard<'_, HashMap<Arc<str>, Members<M>>> {
        self.index
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<Arc<str>, Members<M>>> {
        self.index
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Melody {
    /// Sends a message to every session in `topic`, and a text message also to the topic's SSE
    /// subscribers (feature `sse`), on this node and, with a backplane, on every node. Returns
    /// how many it was queued for on this node (0 for a topic nobody is in here).
    ///
    /// The message is encoded once and its bytes shared; the members are a snapshot taken at the
    /// call, and no lock is held while queuing to them.
    ///
    /// ```no_run
    /// # fn demo(melody: &melody::Melody) -> Result<(), melody::Error> {
    /// melody.publish("room:lobby", "hello, lobby")?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the hub is closed.
    pub fn publish(&self, topic: &str, message: impl Into<Message>) -> Result<usize, Error> {
        let message = message.into();
        let queued = self.publish_local(topic, &message, None)?;
        self.publish_remote(Target::Topic(topic.to_owned()), &message);
        Ok(queued)
    }

    /// Publishes to this node's members of `topic` (and SSE subscribers), but `except`.
    pub(crate) fn publish_local(
        &self,
        topic: &str,
        message: &Message,
        except: Option<SessionId>,
    ) -> Result<usize, Error> {
        let members = self.hub().topics.members(topic);
        let sessions = self.fan_out(message, |queue| {
            members
                .iter()
                .filter(|s| Some(s.id()) != except)
                .for_each(queue);
        })?;
        Ok(sessions + self.publish_to_sse(topic, message)?)
    }

    /// Text published to a topic also reaches its SSE subscribers, as an event of that data.
    #[cfg(feature = "sse")]
    fn publish_to_sse(&self, topic: &str, message: &Message) -> Result<usize, Error> {
        match message.as_str() {
            Some(text) => self.fan_out_sse(topic, || crate::sse::Event::new(text).encode()),
            None => Ok(0),
        }
    }

    #[cfg(not(feature = "sse"))]
    #[allow(clippy::unnecessary_wraps)]
    fn publish_to_sse(&self, _topic: &str, _message: &Message) -> Result<usize, Error> {
        Ok(0)
    }

    /// Sends a binary message to every session in `topic`.
    ///
    /// # Errors
    ///
    /// As [`Melody::publish`].
    pub fn publish_binary(&self, topic: &str, bytes: impl Into<Bytes>) -> Result<usize, Error> {
        self.publish(topic, Message::binary(bytes))
    }

    /// Sends a message to every session in `topic` but `except` (typically the sender).
    ///
    /// # Errors
    ///
    /// As [`Melody::publish`].
    pub fn publish_others(
        &self,
        topic: &str,
        message: impl Into<Message>,
        except: &Session,
    ) -> Result<usize, Error> {
        let message = message.into();
        let queued = self.publish_local(topic, &message, Some(except.id()))?;
        self.publish_remote(Target::TopicExcept(topic.to_owned(), except.id()), &message);
        Ok(queued)
    }

    /// The sessions in `topic` right now.
    #[must_use]
    pub fn members(&self, topic: &str) -> Vec<Session> {
        self.hub().topics.members(topic).to_vec()
    }

    /// The ids of the sessions in `topic` right now.
    #[must_use]
    pub fn member_ids(&self, topic: &str) -> Vec<SessionId> {
        self.hub()
            .topics
            .members(topic)
            .iter()
            .map(Session::id)
            .collect()
    }

    /// The number of sessions in `topic`.
    #[must_use]
    pub fn topic_len(&self, topic: &str) -> usize {
        self.hub().topics.len(topic)
    }

    /// Whether nobody is in `topic`.
    #[must_use]
    pub fn is_topic_empty(&self, topic: &str) -> bool {
        self.topic_len(topic) == 0
    }

    /// The topics that have at least one session.
    #[must_use]
    pub fn topics(&self) -> Vec<String> {
        self.hub().topics.names()
    }

    /// The number of topics that have at least one session.
    #[must_use]
    pub fn topic_count(&self) -> usize {
        self.hub().topics.count()
    }
}
