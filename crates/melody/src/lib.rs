#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "axum")]
mod axum;
pub mod backplane;
pub mod channels;
mod config;
mod connection;
mod error;
mod frames;
mod handlers;
mod io;
mod melody;
mod message;
mod origin;
mod queue;
mod random;
mod registry;
pub mod router;
pub mod serve;
mod session;
mod shutdown;
#[cfg(feature = "sse")]
#[cfg_attr(docsrs, doc(cfg(feature = "sse")))]
pub mod sse;
mod stats;
mod topics;
mod upgrade;

pub use crate::{
    config::{Config, OverflowPolicy},
    error::Error,
    melody::Melody,
    message::{
        CloseCode, CloseFrame, InvalidClosePayload, InvalidUtf8, MAX_CLOSE_REASON_LEN, Message,
        Text, format_close_message,
    },
    origin::{CheckOrigin, OriginPattern},
    router::Envelope,
    serve::serve,
    session::{JoinError, Keys, ParseSessionIdError, Session, SessionId, Value},
    stats::{Rejections, Stats},
    upgrade::{AuthRejection, LocalAddr, RemoteAddr, UpgradeRejection, UpgradeResponse},
};
pub use bytes::Bytes;
#[doc(no_inline)]
pub use http;
