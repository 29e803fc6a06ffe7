//! The core: sessions, topics, the handler table, fan-out to a target, the hub's lifecycle, and
//! the plug-in seam. It names no plug-in and no transport; everything above imports it, it
//! imports only the protocol layer.

pub(crate) mod addrs;
pub(crate) mod admission;
pub(crate) mod compression;
pub(crate) mod config;
pub(crate) mod data;
pub(crate) mod dispatch;
pub(crate) mod error;
pub(crate) mod fanout;
pub(crate) mod hub;
pub(crate) mod id;
pub(crate) mod lifecycle;
#[cfg(feature = "metrics")]
pub(crate) mod metrics;
pub(crate) mod origin;
pub(crate) mod outbox;
pub(crate) mod plugin;
pub(crate) mod random;
pub(crate) mod registry;
pub(crate) mod request_head;
pub(crate) mod session;
pub(crate) mod stats;
pub(crate) mod striped;
pub(crate) mod topics;
