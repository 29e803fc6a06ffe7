//! The transport: the HTTP handshake, the socket, the per-connection task, and `melody::serve`.
//! It imports the core and the protocol layer, and is imported by nothing below them.

mod coalesce;
pub(crate) mod connection;
pub(crate) mod handshake;
pub(crate) mod io;
pub mod serve;
