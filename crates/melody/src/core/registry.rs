//! The live sessions of a hub, sharded so that many tasks can broadcast, connect and disconnect
//! at once.
//!
//! A broadcast read-locks one shard at a time and only does non-blocking queue pushes under the
//! lock; user code (filters, error handlers) never runs while a shard is locked.

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
    sync::{
        RwLock, RwLockReadGuard, RwLockWriteGuard,
        atomic::{AtomicUsize, Ordering},
    },
};

use super::session::Session;
use crate::SessionId;

const SHARDS: usize = 32;

/// A map keyed by session id. Ids are random 64-bit numbers chosen by the server, so they are
/// their own hash: no client can pick ids that collide.
pub(crate) type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// Passes a `u64` key through as its hash.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed here; anything else is folded in, never panics.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

pub(crate) struct Registry {
    shards: Box<[RwLock<IdMap<Session>>]>,
    len: AtomicUsize,
}

impl Registry {
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            len: AtomicUsize::new(0),
        }
    }

    fn shard(&self, id: SessionId) -> &RwLock<IdMap<Session>> {
        // The low bits of a random id are as random as any.
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

    pub(crate) fn contains(&self, id: SessionId) -> bool {
        read(self.shard(id)).contains_key(&id.as_u64())
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
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
