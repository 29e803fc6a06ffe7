//! The plug-in seam: delivery sinks, plug-in state, deliveries from other nodes. The guide is
//! `plugin.md` (the docs of `melody::plugin`).

use std::{
    any::{Any, TypeId},
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex},
};

use arc_swap::ArcSwap;

use http::request::Parts;

use super::{
    admission::UpgradeRejection,
    data::Keys,
    dispatch::{SessionFn, guarded, panic_error},
    error::Closed,
    fanout::Target,
    hub::{Melody, WeakMelody},
    lifecycle::Slot,
    session::{Session, SessionId},
};
use crate::protocol::message::Message;

/// Something that attaches to a hub: [`Melody::plug`] calls [`Plugin::install`] once.
pub trait Plugin {
    /// Registers the plug-in's handlers, sinks and state on `melody`.
    fn install(self, melody: &Melody);
}

/// Where a delivery also goes, after this node's sessions: the SSE subscribers of a topic,
/// the other nodes of a cluster, a history store.
///
/// `deliver` runs on the sending task, after the local fan-out: it must not block (queue and
/// send from a task of your own, as the cluster does).
pub trait Sink: Send + Sync + 'static {
    /// Takes one delivery; says whom it reached.
    fn deliver(&self, delivery: &Delivery<'_>) -> Reach;

    /// The hub has closed: let go of what you hold for it (the SSE sink ends every stream).
    fn closed(&self) {}
}

/// Whom a sink reached with a delivery.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reach {
    /// Recipients on this node (SSE subscribers); added to the count the send returns.
    pub local: usize,
    /// Whether the delivery went on to other nodes.
    pub forwarded: bool,
}

impl Reach {
    /// Reached `local` recipients on this node.
    #[must_use]
    pub fn local(local: usize) -> Self {
        Self {
            local,
            forwarded: false,
        }
    }

    /// Forwarded to other nodes.
    #[must_use]
    pub fn forwarded() -> Self {
        Self {
            local: 0,
            forwarded: true,
        }
    }
}

/// Where a delivery comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// Sent on this node.
    Local,
    /// Received from another node (a cluster sink must not forward it again).
    Peer,
}

/// One send, as a sink sees it.
pub struct Delivery<'a> {
    target: &'a Target,
    message: &'a Message,
    origin: Origin,
    node_only: bool,
    context: Option<&'a (dyn Any + Sync)>,
}

impl<'a> Delivery<'a> {
    pub(crate) fn new(
        target: &'a Target,
        message: &'a Message,
        origin: Origin,
        node_only: bool,
        context: Option<&'a (dyn Any + Sync)>,
    ) -> Self {
        Self {
            target,
            message,
            origin,
            node_only,
            context,
        }
    }

    /// What the sender attached for the sinks with
    /// [`Broadcast::send_with`](crate::fanout::Broadcast::send_with): the SSE plug-in's
    /// `publish` attaches the whole event, so its sink sends that instead of the bare data.
    #[must_use]
    pub fn context(&self) -> Option<&'a (dyn Any + Sync)> {
        self.context
    }

    /// Whom it is for.
    #[must_use]
    pub fn target(&self) -> &'a Target {
        self.target
    }

    /// What it carries.
    #[must_use]
    pub fn message(&self) -> &'a Message {
        self.message
    }

    /// Where it was sent.
    #[must_use]
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// Whether it must stay on this node: sent from another node, or with
    /// [`Broadcast::local`](crate::fanout::Broadcast::local).
    #[must_use]
    pub fn is_node_only(&self) -> bool {
        self.node_only || self.origin == Origin::Peer
    }
}

/// The plug-ins' part of a hub.
#[derive(Default)]
pub(crate) struct PluginTable {
    sinks: ArcSwap<Vec<Arc<dyn Sink>>>,
    disconnect: ArcSwap<Vec<SessionFn>>,
    state: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
}

impl PluginTable {
    /// Hands a delivery to every sink; what they reached in all.
    pub(crate) fn deliver(&self, delivery: &Delivery<'_>) -> Reach {
        let sinks = self.sinks.load();
        let mut reach = Reach::default();
        for sink in sinks.iter() {
            let one = sink.deliver(delivery);
            reach.local += one.local;
            reach.forwarded |= one.forwarded;
        }
        reach
    }

    /// Tells every disconnect observer that `session` is gone (it is out of every topic's
    /// member list, its own list of topics still readable); a panic is reported, not spread.
    pub(crate) fn disconnected(&self, session: &Session) {
        for observer in self.disconnect.load().iter() {
            if let Err(panic) = guarded(|| observer(session)) {
                session
                    .hub()
                    .handlers()
                    .report(session, &panic_error(panic));
            }
        }
    }

    /// The state of type `T`, made by `make` if there is none yet (for the crate's own
    /// per-hub services).
    pub(crate) fn state_or_insert_with<T: Any + Send + Sync>(
        &self,
        make: impl FnOnce() -> Arc<T>,
    ) -> Arc<T> {
        let mut state = lock(&self.state);
        let found = state.get(&TypeId::of::<T>()).cloned();
        if let Some(found) = found.and_then(|found| found.downcast().ok()) {
            return found;
        }
        let made = make();
        state.insert(TypeId::of::<T>(), made.clone());
        made
    }

    /// Tells every sink that the hub closed.
    pub(crate) fn closed(&self) {
        for sink in self.sinks.load().iter() {
            sink.closed();
        }
    }
}

/// The plug-in seam of a hub, from [`Melody::plugins`].
#[derive(Clone, Copy)]
pub struct Plugins<'a> {
    melody: &'a Melody,
}

impl<'a> Plugins<'a> {
    pub(crate) fn new(melody: &'a Melody) -> Self {
        Self { melody }
    }

    fn table(&self) -> &'a PluginTable {
        &self.melody.hub.plugins
    }

    /// Adds a delivery sink: from now on every send is handed to it after the local fan-out.
    pub fn add_sink(&self, sink: impl Sink) {
        let sink: Arc<dyn Sink> = Arc::new(sink);
        append(&self.table().sinks, sink);
    }

    /// Runs `observer` for every session that disconnects, before the application's
    /// [`Melody::on_disconnect`] handler, beside any other plug-in's: the session is out of
    /// every topic's member list already (nothing sent to a topic reaches it), and
    /// [`Session::topics`] still says which topics it was in.
    pub fn on_disconnect(&self, observer: impl Fn(&Session) + Send + Sync + 'static) {
        let observer: SessionFn = Arc::new(observer);
        append(&self.table().disconnect, observer);
    }

    /// Keeps a plug-in's state on the hub, one value per type; returns the previous one.
    pub fn insert<T: Any + Send + Sync>(&self, state: Arc<T>) -> Option<Arc<T>> {
        let previous = lock(&self.table().state).insert(TypeId::of::<T>(), state);
        previous.and_then(|previous| previous.downcast().ok())
    }

    /// The plug-in state of type `T`, if a plug-in put one there.
    #[must_use]
    pub fn get<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let state = lock(&self.table().state).get(&TypeId::of::<T>()).cloned()?;
        state.downcast().ok()
    }

    /// A handle to the hub that does not keep it alive, for what the hub owns (a cluster's
    /// driver) and must reach back into it.
    #[must_use]
    pub fn downgrade(&self) -> WeakMelody {
        self.melody.downgrade()
    }

    /// Delivers what another node sent: to this node's sessions and to the sinks, marked
    /// [`Origin::Peer`] so that nothing sends it on again. Returns how many it reached here.
    ///
    /// # Errors
    ///
    /// [`Closed`] when the hub is closed.
    pub fn deliver(&self, target: &Target, message: &Message) -> Result<usize, Closed> {
        self.melody
            .dispatch(target, message, Origin::Peer, true, None)
    }

    /// Takes a connection slot under [`Config::max_connections`](crate::Config), for a
    /// connection that is not a session (an SSE stream); `None` when the hub is full. The slot
    /// is given back when dropped.
    #[must_use]
    pub fn acquire_slot(&self) -> Option<Slot> {
        Slot::acquire(&self.melody.hub)
    }

    /// Runs the hub's auth hook on a request that is not an upgrade (an SSE request): the keys
    /// it grants, or its refusal (also when it does not answer within
    /// [`Config::auth_timeout`](crate::Config::auth_timeout)).
    ///
    /// # Errors
    ///
    /// The hook's refusal, as an [`UpgradeRejection`].
    pub async fn authorize(&self, request: &Parts) -> Result<Keys, UpgradeRejection> {
        self.melody.hub.authorize(request).await
    }

    /// Counts a connection refused because the hub was full, in [`Stats`](crate::Stats).
    pub fn count_full(&self) {
        self.melody
            .hub
            .counters
            .rejected(super::stats::Reason::MaxConnections);
    }

    /// Every topic of this node with the ids of its members, at one moment per topic.
    #[must_use]
    pub fn topic_members(&self) -> Vec<(String, Vec<SessionId>)> {
        self.melody.hub.topics.snapshot()
    }

    /// Reports an error of `session` to the hub's error handler.
    pub fn report(&self, session: &Session, error: &super::error::Error) {
        self.melody.hub.handlers().report(session, error);
    }
}

impl fmt::Debug for Delivery<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("target", &self.target)
            .field("message", &self.message)
            .field("origin", &self.origin)
            .field("node_only", &self.node_only)
            .field("context", &self.context.is_some())
            .finish()
    }
}

impl fmt::Debug for Plugins<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugins")
            .field("sinks", &self.table().sinks.load().len())
            .finish_non_exhaustive()
    }
}

/// Adds `item` to a copy-on-write list: readers keep the list they loaded.
fn append<T: Clone>(list: &ArcSwap<Vec<T>>, item: T) {
    list.rcu(|items| {
        let mut next = Vec::clone(items);
        next.push(item.clone());
        next
    });
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
