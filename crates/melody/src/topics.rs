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

use crate::{Error, Melody, Message, Session, SessionId};

/// A snapshot of a topic's members.
pub(crate) type Members = Arc<Vec<Session>>;

#[derive(Default)]
pub(crate) struct Topics {
    index: RwLock<HashMap<Arc<str>, Members>>,
}

impl Topics {
    /// Adds `session` to `topic`; `false` when it was already a member.
    pub(crate) fn join(&self, topic: &Arc<str>, session: &Session) -> bool {
        let mut index = self.write();
        let members = index.entry(topic.clone()).or_default();
        if members.iter().any(|m| m.id() == session.id()) {
            return false;
        }
        Arc::make_mut(members).push(session.clone());
        true
    }

    /// Removes `session` from `topic`; `false` when it was not a member. An emptied topic is
    /// forgotten.
    pub(crate) fn leave(&self, topic: &str, session: &Session) -> bool {
        let mut index = self.write();
        let Some(members) = index.get_mut(topic) else {
            return false;
        };
        let Some(position) = members.iter().position(|m| m.id() == session.id()) else {
            return false;
        };
        Arc::make_mut(members).swap_remove(position);
        if members.is_empty() {
            index.remove(topic);
        }
        true
    }

    /// The members of `topic` at this instant (empty when the topic does not exist).
    pub(crate) fn members(&self, topic: &str) -> Members {
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
    fn read(&self) -> RwLockReadGuard<'_, HashMap<Arc<str>, Members>> {
        self.index
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<Arc<str>, Members>> {
        self.index
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Melody {
    /// Sends a message to every session in `topic`. Returns how many it was queued for (0 for a
    /// topic nobody is in).
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
        let members = self.hub().topics.members(topic);
        self.fan_out(&message, |queue| members.iter().for_each(queue))
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
        let members = self.hub().topics.members(topic);
        let except = except.id();
        self.fan_out(&message, |queue| {
            members.iter().filter(|s| s.id() != except).for_each(queue)
        })
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
