//! The topic index: which sessions are in which topic (rooms, groups, channels).
//!
//! Topics are spread over shards by name, so joins, leaves and publishes to different topics
//! never wait on one lock. Each topic keeps its members in a list with a position index: a join
//! appends, a leave swaps the last member into the hole, both O(1) however big the topic (a mass
//! disconnect from a room of n sessions costs O(n), not O(n²)). A publish read-locks its topic
//! and queues to each member with non-blocking pushes only; joins and leaves of that topic wait
//! for it, other topics do not. Membership is linearizable: a publish reaches exactly the members
//! the topic had while it held the lock.

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard},
};

use super::{registry::IdMap, session::Session};
use crate::SessionId;

const SHARDS: usize = 64;

type Shard = HashMap<Arc<str>, Arc<Topic>>;

pub(crate) struct Topics {
    shards: Box<[RwLock<Shard>]>,
    hasher: RandomState,
}

struct Topic {
    name: Arc<str>,
    members: RwLock<Members>,
}

#[derive(Default)]
struct Members {
    list: Vec<Session>,
    position: IdMap<usize>,
    /// Removed from the index: a join that still holds it must look the topic up again.
    dead: bool,
}

impl Default for Topics {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl Topics {
    fn shard(&self, topic: &str) -> &RwLock<Shard> {
        &self.shards[(self.hasher.hash_one(topic) as usize) % SHARDS]
    }

    fn get(&self, topic: &str) -> Option<Arc<Topic>> {
        read(self.shard(topic)).get(topic).cloned()
    }

    fn get_or_insert(&self, topic: &str) -> Arc<Topic> {
        if let Some(found) = self.get(topic) {
            return found;
        }
        write(self.shard(topic))
            .entry(Arc::from(topic))
            .or_insert_with_key(|name| {
                Arc::new(Topic {
                    name: name.clone(),
                    members: RwLock::default(),
                })
            })
            .clone()
    }

    /// Adds `session` to `topic`: the topic's shared name, and whether it joined (`false` when
    /// it was already in).
    pub(crate) fn join(&self, topic: &str, session: &Session) -> (Arc<str>, bool) {
        loop {
            let found = self.get_or_insert(topic);
            let mut members = write(&found.members);
            if members.dead {
                continue;
            }
            let id = session.id();
            if members.position.contains_key(&id.as_u64()) {
                return (found.name.clone(), false);
            }
            let at = members.list.len();
            members.position.insert(id.as_u64(), at);
            members.list.push(session.clone());
            return (found.name.clone(), true);
        }
    }

    /// Removes the session with this id from `topic`; `false` when it was not in it. An emptied
    /// topic is forgotten.
    pub(crate) fn leave(&self, topic: &str, id: SessionId) -> bool {
        let Some(found) = self.get(topic) else {
            return false;
        };
        let emptied = {
            let mut members = write(&found.members);
            let Some(at) = members.position.remove(&id.as_u64()) else {
                return false;
            };
            members.list.swap_remove(at);
            if let Some(moved) = members.list.get(at).map(Session::id) {
                members.position.insert(moved.as_u64(), at);
            }
            members.list.is_empty()
        };
        if emptied {
            let mut shard = write(self.shard(topic));
            let mut members = write(&found.members);
            let current = shard.get(topic).is_some_and(|t| Arc::ptr_eq(t, &found));
            if members.list.is_empty() && current {
                members.dead = true;
                shard.remove(topic);
            }
        }
        true
    }

    /// Calls `f` on each member of `topic` with the topic read-locked. `f` must not block and
    /// must not run user code.
    pub(crate) fn for_each(&self, topic: &str, mut f: impl FnMut(&Session)) {
        if let Some(found) = self.get(topic) {
            read(&found.members).list.iter().for_each(&mut f);
        }
    }

    /// The number of members of `topic`.
    pub(crate) fn len(&self, topic: &str) -> usize {
        self.get(topic)
            .map_or(0, |found| read(&found.members).list.len())
    }

    /// The names of the topics that have members.
    pub(crate) fn names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for shard in self.shards.iter() {
            names.extend(read(shard).keys().map(|name| name.to_string()));
        }
        names
    }

    /// Every topic with the ids of its members, for presence snapshots.
    pub(crate) fn snapshot(&self) -> Vec<(String, Vec<SessionId>)> {
        let mut topics = Vec::new();
        for shard in self.shards.iter() {
            let shard = read(shard);
            for (name, topic) in shard.iter() {
                let ids = read(&topic.members).list.iter().map(Session::id).collect();
                topics.push((name.to_string(), ids));
            }
        }
        topics
    }
}

// A poisoned lock means a panic elsewhere while it was held; every update above leaves the
// index consistent (no user code runs under these locks), so it stays usable.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
