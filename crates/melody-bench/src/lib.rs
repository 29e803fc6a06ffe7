//! Load generators and a reference "floor" server for benchmarking melody.
//!
//! - [`fanout`]: N subscribers, P publishers; deliveries/s, loss, end-to-end latency, bytes on
//!   the wire (permessage-deflate with `--deflate`).
//! - [`echo`]: C connections with D messages in flight; messages/s and round-trip latency.
//! - [`idle`]: N idle connections (compressing ones with `--deflate`); the server's RSS per
//!   connection.
//! - [`churn`]: connect/send/receive/close loops; connects/s, errors, the server's RSS.
//! - [`topics`]: sessions joining and leaving topics, one big room, a mass disconnect.
//! - [`floor`]: the thinnest broadcast/echo server on tokio-websockets, the reference.
//! - [`report`]: the markdown table of `docs/BENCHMARKS.md` from the JSON results.
//! - [`client`]: the connections the generators read, tokio-websockets or the raw
//!   permessage-deflate client; [`payload`]: padded or JSON-like message bodies.
//!
//! The `melody-bench` binary wraps each in a subcommand that prints a summary to stderr and
//! one JSON object to stdout; `bench/compare.sh` runs them against melody's examples and the
//! floor server and writes `docs/BENCHMARKS.md`.

pub mod churn;
pub mod client;
pub mod common;
pub mod echo;
pub mod fanout;
pub mod floor;
pub mod idle;
pub mod live;
pub mod payload;
pub mod report;
pub mod topics;
