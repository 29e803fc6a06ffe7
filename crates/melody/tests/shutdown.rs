//! Graceful shutdown: refuse new upgrades, drain queued messages, close with 1001, run every
//! disconnect handler exactly once, and bound the wait.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use melody::{Config, Melody};

#[tokio::test]
async fn shutdown_drains_queued_messages_then_closes_with_1001() {
    let melody = Melody::with_config(Config::default().message_buffer_size(4096));
    let (events, mut log) = events();
    melody.on_disconnect(move |s| events.push(format!("disconnect {}", s.id())));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    melody.on_connect(move |s| {
        let _ = tx.send(s.clone());
    });
    let addr = spawn_app(&melody).await;

    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(connect(addr).await);
        let session = tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap()
            .unwrap();
        // Queued but not yet written when the shutdown starts.
        for i in 0..1000 {
            session.send(format!("{i:>64}")).unwrap();
        }
    }
    let shutdown = tokio::spawn({
        let melody = melody.clone();
        async move { melody.shutdown(Duration::from_secs(5)).await }
    });
    for client in &mut clients {
        for i in 0..1000 {
            assert_eq!(
                recv_text(client).await.trim_start(),
                i.to_string(),
                "message lost"
            );
        }
        assert_eq!(recv_close(client).await.0, 1001);
    }
    assert_eq!(shutdown.await.unwrap(), 0, "every session drained in time");
    // Every disconnect handler has run, exactly once, by the time shutdown returns.
    let mut disconnected = log.drain();
    disconnected.sort();
    disconnected.dedup();
    assert_eq!(disconnected.len(), 3);
    assert_eq!(melody.all().len(), 0);
    // New upgrades are refused.
    assert_eq!(http_request(addr, &upgrade_request("")).await.0, 503);
}

#[tokio::test]
async fn sessions_that_do_not_drain_in_time_are_dropped_when_the_drain_ends() {
    let melody = Melody::new();
    let (events, mut log) = events();
    melody.on_disconnect(move |_| events.push("disconnect"));
    let addr = spawn_app(&melody).await;
    // A client that never reads nor answers the close.
    let _silent = Raw::connect(addr).await;
    let mut polite = connect(addr).await;
    eventually(|| melody.all().len() == 2).await;

    let answer = tokio::spawn(async move {
        // Read until the stream ends: this answers the close like a browser.
        while polite.next().await.is_some() {}
    });
    let started = Instant::now();
    let dropped = melody.shutdown(Duration::from_millis(200)).await;
    assert_eq!(dropped, 1, "only the silent client was left");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the drain bounds the wait"
    );
    assert_eq!(log.drain(), ["disconnect", "disconnect"]);
    assert_eq!(melody.all().len(), 0);
    answer.await.unwrap();
}

#[tokio::test]
async fn shutdown_of_an_idle_hub_returns_at_once_and_twice_is_fine() {
    let melody = Melody::new();
    assert_eq!(melody.shutdown(Duration::from_secs(5)).await, 0);
    assert!(melody.is_closed());
    assert_eq!(melody.shutdown(Duration::from_secs(5)).await, 0);
}
