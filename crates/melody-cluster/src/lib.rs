//! The melody chat example as a cluster, and the scale-out guide's code.
//!
//! This crate is not published. It holds the `cluster` example (`examples/cluster.rs`: the chat
//! example run as several processes that share one Redis or one NATS server), its headless
//! Chromium test across two nodes (`tests/browser.rs`), and compiles every Rust snippet of the
//! scale-out guide, `docs/SCALE_OUT.md`, as a doc test (`cargo test -p melody-cluster --doc`),
//! so that the guide cannot drift from the API.

#[cfg(doctest)]
#[doc = include_str!("../../../docs/SCALE_OUT.md")]
struct ScaleOutGuide;
