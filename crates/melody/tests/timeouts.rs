//! Automatic pings, the pong deadline and the write wait, on paused time: the clock advances
//! only when every task waits, straight to the next timer, so minutes of liveness timers run in
//! milliseconds and no test depends on how fast the machine is.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use melody::{Config, Melody};
use tokio::io::AsyncReadExt;

/// How long a test on paused time waits for an event: the clock jumps to the earliest timer,
/// so this bound must lie beyond the liveness timers under test, and costs no wall time.
const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(start_paused = true)]
async fn pings_are_sent_and_pongs_reach_the_pong_handler() {
    let config = Config::default()
        .ping_period(Duration::from_secs(50))
        .pong_wait(Duration::from_secs(60));
    let melody = Melody::with_config(config);
    let (events, mut log) = events();
    melody.on_pong(move |_| events.push("pong"));
    let (disconnect, mut disconnects) = common::events();
    melody.on_disconnect(move |_| disconnect.push("disconnect"));
    let addr = spawn_app(&melody).await;

    let mut client = connect(addr).await;
    // Keep polling so the client answers pings; count pings seen.
    let pings = tokio::spawn(async move {
        let mut pings = 0;
        while let Some(Ok(message)) = client.next().await {
            if message.is_ping() {
                pings += 1;
                if pings == 15 {
                    return (pings, client);
                }
            }
        }
        panic!("connection ended after {pings} pings");
    });
    // Fifteen pings at 50 s span 750 s: far longer than the pong wait, so the session only
    // survives because each pong extends the deadline.
    let (pings, _client) = pings.await.unwrap();
    assert_eq!(pings, 15);
    log.wait_for("pong").await;
    assert!(disconnects.drain().is_empty());
    assert_eq!(melody.all().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_never_pongs_is_disconnected_once() {
    let config = Config::default()
        .ping_period(Duration::from_secs(54))
        .pong_wait(Duration::from_secs(60));
    let melody = Melody::with_config(config);
    let (events, mut log) = events();
    let (on_error, on_disconnect) = (events.clone(), events.clone());
    melody.on_error(move |_, error| on_error.push(error.to_string()));
    melody.on_disconnect(move |_| on_disconnect.push("disconnect"));
    let addr = spawn_app(&melody).await;

    // A raw connection reads nothing and so answers no ping.
    let mut raw = Raw::connect(addr).await;
    let started = tokio::time::Instant::now();
    assert_eq!(log.next_within(HOUR).await, "no pong within 60s");
    assert_eq!(started.elapsed().as_secs(), 60, "exactly at the deadline");
    assert_eq!(log.next().await, "disconnect");
    assert_eq!(melody.all().len(), 0);
    // The server dropped the connection: reading reaches the end of the stream.
    let mut rest = Vec::new();
    raw.stream.read_to_end(&mut rest).await.unwrap();
    assert!(log.drain().is_empty(), "disconnect must run exactly once");
}

#[tokio::test(start_paused = true)]
async fn a_write_stalled_past_the_write_wait_disconnects_once() {
    let config = Config::default()
        .write_wait(Duration::from_secs(10))
        .message_buffer_size(1024);
    let melody = Melody::with_config(config);
    let (events, mut log) = events();
    let (on_error, on_disconnect) = (events.clone(), events.clone());
    melody.on_error(move |_, error| on_error.push(error.to_string()));
    melody.on_disconnect(move |_| on_disconnect.push("disconnect"));
    let (sessions_tx, mut sessions) = tokio::sync::mpsc::unbounded_channel();
    melody.on_connect(move |s| {
        let _ = sessions_tx.send(s.clone());
    });
    let addr = spawn_app(&melody).await;

    // The raw client never reads: once the socket buffers are full, writes stall.
    let _raw = Raw::connect(addr).await;
    let session = sessions.recv().await.unwrap();
    let big = "x".repeat(256 * 1024);
    let writer = tokio::spawn(async move {
        // 64 MiB in all, far more than any loopback socket buffer.
        for _ in 0..256 {
            if session.send_async(big.clone()).await.is_err() {
                break;
            }
        }
    });
    let before = log.wait_for_within("disconnect", HOUR).await;
    assert_eq!(before, ["write did not complete within 10s"]);
    writer.await.unwrap();
    assert!(log.drain().is_empty(), "disconnect must run exactly once");
    assert_eq!(melody.all().len(), 0);
}
