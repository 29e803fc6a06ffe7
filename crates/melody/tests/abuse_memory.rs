//! Memory a peer can make the server hold without sending it: a frame header may announce a
//! payload up to the message size limit, and the server must not reserve room for bytes that
//! have not arrived (hardening review, finding 8).
//!
//! A binary of its own, because it counts the heap with its own global allocator.

mod common;

use std::alloc::System;

use common::{Raw, spawn_app};
use melody::{Config, Melody};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Heap bytes in use by the whole process (server and clients).
fn in_use() -> isize {
    let stats = GLOBAL.stats();
    stats.bytes_allocated as isize - stats.bytes_deallocated as isize + stats.bytes_reallocated
}

#[tokio::test]
async fn an_announced_frame_holds_only_the_bytes_that_arrived() {
    const CLIENTS: usize = 50;
    let melody = Melody::with_config(Config::default().max_message_size(16 * 1024 * 1024));
    let addr = spawn_app(&melody).await;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(Raw::connect(addr).await);
    }
    common::eventually(|| melody.all().len() == CLIENTS).await;
    let before = in_use();
    for client in &mut clients {
        // A ping, then a binary frame announcing 16 MiB of which 15 bytes come, in one write:
        // when the pong is back, the server has read the partial frame too.
        let mut bytes = vec![0x89, 0x80, 0, 0, 0, 0];
        bytes.extend_from_slice(&[0x82, 0x80 | 127]);
        bytes.extend_from_slice(&(16u64 * 1024 * 1024).to_be_bytes());
        bytes.extend_from_slice(&[0, 0, 0, 0]);
        bytes.extend_from_slice(&[7u8; 15]);
        tokio::io::AsyncWriteExt::write_all(&mut client.stream, &bytes)
            .await
            .unwrap();
        let (opcode, _) = client.read_frame().await;
        assert_eq!(opcode, 0xA, "expected the pong");
    }
    let grown = in_use() - before;
    let per_client = grown / CLIENTS as isize;
    // Before the fix each of these reserved 64 KiB ahead of the data.
    assert!(
        per_client < 4 * 1024,
        "each stalled frame holds {per_client} bytes"
    );
}
