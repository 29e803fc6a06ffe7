//! The history store seam: where topics' histories live when several nodes share them (Redis in
//! `melody-redis`), and the [`Feed`] through which a store hands every node the publications in
//! the store's order.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, Weak},
};

use serde_json::value::RawValue;

use super::{
    history::{History, StreamPosition},
    state::LiveState,
};
use crate::core::hub::WeakMelody;

/// A store's error: any error, boxed.
pub type StoreError = Box<dyn std::error::Error + Send + Sync>;

/// A boxed future, as store methods return them.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// What a subscriber asks a store for.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadFrom {
    /// The publications after this offset, oldest first.
    After(u64),
    /// The latest publications, oldest first.
    Latest,
}

/// A topic's stream as a store read it.
#[derive(Clone, Debug, Default)]
pub struct StreamRead {
    /// The stream's epoch and last offset; `None` when the topic has no stream (never
    /// published to, or expired).
    pub position: Option<StreamPosition>,
    /// The offset of the oldest publication still kept (not trimmed, not older than the ttl);
    /// `None` when nothing is kept.
    pub oldest: Option<u64>,
    /// The publications asked for, oldest first, each with its offset and its JSON.
    pub publications: Vec<(u64, Arc<RawValue>)>,
}

/// Keeps topics' histories for every node of a cluster: orders each topic's publications
/// (one order, the store's, whichever node publishes), keeps them as [`History`] says, and
/// hands each to every node's [`Feed`] in that order.
///
/// Plug one in with [`Live::store`](super::Live::store); without one, histories live in each
/// node's memory.
pub trait HistoryStore: Send + Sync + 'static {
    /// Starts handing every node's publications to `feed`, each topic's in offset order. Called
    /// once, when the live topics are plugged in; the store must already receive (subscribe in
    /// its constructor) so that nothing published after this returns is missed.
    fn start(&self, feed: Feed);

    /// Appends `data` (JSON) to `topic`'s stream, kept as `history` says, and hands it to every
    /// node's feed; its position. A topic with no stream (never published to, or expired)
    /// starts one with a new epoch.
    fn append<'a>(
        &'a self,
        topic: &'a str,
        data: &'a RawValue,
        history: History,
    ) -> StoreFuture<'a, StreamPosition>;

    /// Reads `topic`'s stream (starting one, with a new epoch, when there is none): its
    /// position, its oldest kept offset, and at most `count` publications from `from`. Then
    /// hands [`Feed::marker`]`(topic, marker)` to this node's feed after every publication the
    /// read saw: the feed may lag behind the store, and the subscriber joins the topic's
    /// deliveries only once its feed has caught up with what its reply told it.
    fn read<'a>(
        &'a self,
        topic: &'a str,
        from: ReadFrom,
        count: usize,
        history: History,
        marker: u64,
    ) -> StoreFuture<'a, StreamRead>;
}

/// A store's way to hand publications to one node: [`HistoryStore::start`] gets one.
#[derive(Clone)]
pub struct Feed {
    pub(crate) state: Weak<LiveState>,
    pub(crate) melody: WeakMelody,
}

impl Feed {
    /// Delivers a publication to this node's subscribers of `topic`, in the order the store
    /// calls it for that topic (its offsets must increase).
    pub fn publication(&self, topic: &str, position: StreamPosition, data: Arc<RawValue>) {
        if let (Some(state), Some(melody)) = (self.state.upgrade(), self.melody.upgrade()) {
            state.fed(&melody, topic, position, data);
        }
    }

    /// The marker of a read ([`HistoryStore::read`]) reached this node's feed: every
    /// publication that read saw has been delivered.
    pub fn marker(&self, topic: &str, marker: u64) {
        if let Some(state) = self.state.upgrade() {
            state.caught_up(topic, marker);
        }
    }

    /// The feed lost publications (its connection to the store was down): subscribers waiting
    /// for a marker stop waiting.
    pub fn lost(&self) {
        if let Some(state) = self.state.upgrade() {
            state.feed_lost();
        }
    }

    /// Whether the hub still exists; a store can stop its tasks when not.
    #[must_use]
    pub fn is_attached(&self) -> bool {
        self.state.strong_count() > 0 && self.melody.upgrade().is_some()
    }
}

impl fmt::Debug for Feed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Feed")
            .field("attached", &self.is_attached())
            .finish()
    }
}
