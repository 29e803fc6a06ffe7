#![doc = include_str!("../README.md")]
#![doc = ""]
// Links to what a feature may leave out: to the item when it is built, to docs.rs otherwise.
#![cfg_attr(feature = "router", doc = "[`router`]: crate::router")]
#![cfg_attr(
    not(feature = "router"),
    doc = "[`router`]: https://docs.rs/melody-ws/latest/melody/router/index.html"
)]
#![cfg_attr(feature = "sse", doc = "[`sse`]: crate::sse")]
#![cfg_attr(
    not(feature = "sse"),
    doc = "[`sse`]: https://docs.rs/melody-ws/latest/melody/sse/index.html"
)]
#![cfg_attr(feature = "channels", doc = "[`channels`]: crate::channels")]
#![cfg_attr(
    not(feature = "channels"),
    doc = "[`channels`]: https://docs.rs/melody-ws/latest/melody/channels/index.html"
)]
#![cfg_attr(feature = "testing", doc = "[`testing`]: crate::testing")]
#![cfg_attr(
    not(feature = "testing"),
    doc = "[`testing`]: https://docs.rs/melody-ws/latest/melody/testing/index.html"
)]
#![cfg_attr(feature = "axum", doc = "[`Melody::handler`]: crate::Melody::handler")]
#![cfg_attr(
    not(feature = "axum"),
    doc = "[`Melody::handler`]: https://docs.rs/melody-ws/latest/melody/struct.Melody.html#method.handler"
)]
#![cfg_attr(
    feature = "axum",
    doc = "[`Melody::handler_with`]: crate::Melody::handler_with"
)]
#![cfg_attr(
    not(feature = "axum"),
    doc = "[`Melody::handler_with`]: https://docs.rs/melody-ws/latest/melody/struct.Melody.html#method.handler_with"
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// Layers, each importing only those below it (checked by `../shared/tools/module-graph`):
// facade (this file, `melody`, `compat`) > plug-ins built on plug-ins (`live`, on the router)
// > plug-ins (`axum`, `router`, `sse`, `channels`, `cluster`) > `transport` > `core` >
// `protocol`. See docs/ARCHITECTURE.md.
#[cfg(feature = "axum")]
mod axum;
#[cfg(feature = "channels")]
#[cfg_attr(docsrs, doc(cfg(feature = "channels")))]
pub mod channels;
pub mod cluster;
pub mod compat;
mod core;
#[cfg(feature = "__fuzz")]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "live")]
#[cfg_attr(docsrs, doc(cfg(feature = "live")))]
pub mod live;
mod melody;
mod protocol;
#[cfg(feature = "router")]
#[cfg_attr(docsrs, doc(cfg(feature = "router")))]
pub mod router;
#[cfg(feature = "sse")]
#[cfg_attr(docsrs, doc(cfg(feature = "sse")))]
pub mod sse;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
mod transport;

pub use crate::{
    core::{
        admission::{AuthRejection, UpgradeRejection, UpgradeResponse},
        compression::Compression,
        config::{Config, OverflowPolicy},
        data::{AsKey, Key, Keys, Value},
        error::{
            CloseError, Closed, DataError, Error, JoinError, SendError, SendToError, TrySendError,
        },
        hub::Melody,
        id::ParseSessionIdError,
        lifecycle::Slot,
        origin::{CheckOrigin, OriginPattern},
        session::{Session, SessionId},
        stats::{Rejections, Stats},
    },
    protocol::{
        close::{
            CloseCode, CloseFrame, InvalidClosePayload, MAX_CLOSE_REASON_LEN, format_close_message,
        },
        frames::ProtocolError,
        message::{InvalidUtf8, Message, Text},
    },
    transport::{
        handshake::{LocalAddr, RemoteAddr},
        serve::{self, serve},
    },
};
pub use bytes::Bytes;
#[doc(no_inline)]
pub use http;

/// The guides in `docs/` and the project README, compiled as doc tests (`cargo test
/// --all-features`) so that their snippets cannot drift from the API.
#[cfg(all(
    doctest,
    feature = "router",
    feature = "live",
    feature = "sse",
    feature = "channels",
    feature = "metrics",
    feature = "testing"
))]
mod guides {
    #[doc = include_str!("../../../README.md")]
    struct ProjectReadme;
    #[doc = include_str!("../../../docs/TOPICS_AND_ROUTING.md")]
    struct TopicsAndRouting;
    #[doc = include_str!("../../../docs/SECURITY.md")]
    struct Security;
    #[doc = include_str!("../../../docs/MELODY_PARITY.md")]
    struct MelodyParity;
    #[doc = include_str!("../../../docs/PERFORMANCE_NOTES.md")]
    struct PerformanceNotes;
    #[doc = include_str!("../../../docs/BENCHMARKS.md")]
    struct Benchmarks;
    #[doc = include_str!("../../../docs/ARCHITECTURE.md")]
    struct Architecture;
    #[doc = include_str!("../../../docs/PROTOCOL.md")]
    struct Protocol;
}

/// The send path: selections of sessions and the [`Target`](fanout::Target)s they stand for.
pub mod fanout {
    pub use crate::core::fanout::{Broadcast, Each, Filtered, Reached, Target, ToSession};
}

/// The plug-in seam: how SSE, the cluster and the typed router attach to a hub, and how your
/// own plug-in can.
pub mod plugin {
    #![doc = include_str!("core/plugin.md")]
    pub use crate::core::plugin::{Delivery, Origin, Plugin, Plugins, Reach, Sink};
}
