//! The hub: the state every session and every [`Melody`] handle share. It names no plug-in and
//! no transport: sessions, topics, handlers, counters, lifecycle, and the plug-in seam.

use std::{
    fmt,
    sync::{Arc, Weak},
};

use arc_swap::ArcSwap;

use super::{
    config::Config, dispatch::Handlers, lifecycle::Lifecycle, plugin::PluginTable,
    registry::Registry, session::SessionId, stats::Counters, topics::Topics,
};

/// A hub of WebSocket sessions.
///
/// Create one, set its handlers, mount it on a route ([`Melody::handler`] for axum,
/// [`Melody::upgrade`] for any hyper-based server), and send to sessions from anywhere.
/// `Melody` is a cheap handle: clone it freely; all clones are the same hub.
///
/// ```
/// use axum::{Router, routing::get};
/// use melody::Melody;
///
/// let melody = Melody::new();
/// melody.on_text(|session, text| {
///     // Every text message goes to every session; the bytes are shared, not copied.
///     let _ = session.melody().all().send(text);
/// });
/// let app: Router = Router::new().route("/ws", get(melody.handler()));
/// ```
#[derive(Clone)]
pub struct Melody {
    pub(crate) hub: Arc<Hub>,
}

/// The shared state behind every `Melody` handle and every session.
pub(crate) struct Hub {
    pub(crate) config: Config,
    pub(crate) handlers: ArcSwap<Handlers>,
    pub(crate) registry: Registry,
    pub(crate) topics: Topics,
    pub(crate) counters: Counters,
    pub(crate) lifecycle: Lifecycle,
    pub(crate) plugins: PluginTable,
}

impl Hub {
    pub(crate) fn new(config: Config) -> Self {
        Self {
            config,
            handlers: ArcSwap::from_pointee(Handlers::default()),
            registry: Registry::new(),
            topics: Topics::default(),
            counters: Counters::new(),
            lifecycle: Lifecycle::default(),
            plugins: PluginTable::default(),
        }
    }

    /// The handler table, borrowed (one atomic load, no reference count): this runs for every
    /// message.
    pub(crate) fn handlers(&self) -> arc_swap::Guard<Arc<Handlers>> {
        self.handlers.load()
    }

    /// The handler table as an owned handle, for holding across an await.
    pub(crate) fn handlers_full(&self) -> Arc<Handlers> {
        self.handlers.load_full()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lifecycle.is_closed()
    }

    /// A random id that no connected session of this hub has.
    pub(crate) fn next_id(&self) -> SessionId {
        loop {
            let id = SessionId::random();
            if !self.registry.contains(id) {
                return id;
            }
        }
    }
}

impl Melody {
    pub(crate) fn from_hub(hub: Arc<Hub>) -> Self {
        Self { hub }
    }

    /// Replaces the handler table with a copy changed by `set`.
    pub(crate) fn set_handler(&self, set: impl Fn(&mut Handlers)) -> &Self {
        self.hub.handlers.rcu(|current| {
            let mut next = Handlers::clone(current);
            set(&mut next);
            next
        });
        self
    }
}

/// A handle that does not keep its hub alive: for what the hub itself owns (a plug-in's driver)
/// and must reach back into it without a reference cycle. From
/// [`Plugins::downgrade`](crate::plugin::Plugins::downgrade).
#[derive(Clone)]
pub struct WeakMelody(Weak<Hub>);

impl WeakMelody {
    /// The hub, if it still exists.
    #[must_use]
    pub fn upgrade(&self) -> Option<Melody> {
        self.0.upgrade().map(Melody::from_hub)
    }
}

impl fmt::Debug for WeakMelody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WeakMelody")
    }
}

impl Melody {
    pub(crate) fn downgrade(&self) -> WeakMelody {
        WeakMelody(Arc::downgrade(&self.hub))
    }
}

impl Default for Melody {
    fn default() -> Self {
        Self::from_hub(Arc::new(Hub::new(Config::default())))
    }
}

impl fmt::Debug for Melody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Melody")
            .field("sessions", &self.hub.registry.len())
            .field("closed", &self.hub.is_closed())
            .field("config", &self.hub.config)
            .finish_non_exhaustive()
    }
}
