//! The live sessions of a hub, sharded so that many tasks can broadcast, connect and disconnect
//! at once.
//!
//! A broadcast read-locks one shard at a time and only does non-blocking queue pushes under the
//! lock; user code (filters, error handlers) never runs while a shard is locked.

use std::{
    collections::HashMap,
    sync::{
        RwLock, RwLockReadGuard, RwLockWriteGuard,
        atomic::{AtomicUsize, Ordering},
    },
};

use crate::{Session, session::SessionId};

const SHARDS: usize = 32;

type Shard = HashMap<u64, Session>;

pub(crate) struct Registry {
    shards: Box<[RwLock<Shard>]>,
    len: AtomicUsize,
}

impl Registry {
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            len: AtomicUsize::new(0),
        }
    }

    fn shard(&self, id: SessionId) -> &RwLock<Shard> {
        &self.shards[(id.as_u64() as usize) % SHARDS]
    }

    pub(crate) fn insert(&self, session: Session) {
        let id = session.id();
        if write(self.shard(id)).insert(id.as_u64(), session).is_none() {
            self.len.fetch_add(1, Ordering::AcqRel);
        }
    }

    pub(crate) fn remove(&self, id: SessionId) -> Option<Session> {
        let removed = write(self.shard(id)).remove(&id.as_u64());
        if removed.is_some() {
            self.len.fetch_sub(1, Ordering::AcqRel);
        }
        removed
    }

    pub(crate) fn get(&self, id: SessionId) -> Option<Session> {
        read(self.shard(id)).get(&id.as_u64()).cloned()
    }

    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Calls `f` on every session, one shard read-locked at a time. `f` must not block and must
    /// not call user code.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&Session)) {
        for shard in self.shards.iter() {
            for session in read(shard).values() {
                f(session);
            }
        }
    }

    /// A copy of every live session handle, taken shard by shard.
    pub(crate) fn snapshot(&self) -> Vec<Session> {
        let mut all = Vec::with_capacity(self.len());
        self.for_each(|s| all.push(s.clone()));
        all
    }
}

// A poisoned shard only means a panic happened elsewhere while it was held; the map itself is
// always left consistent (single insert/remove calls), so keep using it.
fn read(lock: &RwLock<Shard>) -> RwLockReadGuard<'_, Shard> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write(lock: &RwLock<Shard>) -> RwLockWriteGuard<'_, Shard> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
