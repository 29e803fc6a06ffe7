//! The protocol layer: what travels on a WebSocket (messages, close codes) and the frame reader
//! that parses it. No I/O, and no import from any other layer.

pub(crate) mod close;
pub(crate) mod deflate;
pub(crate) mod frames;
pub(crate) mod message;
