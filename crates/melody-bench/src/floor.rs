//! The floor server: the thinnest broadcast (or echo) server written directly on
//! tokio-websockets, without a framework. Melody is measured against it.
//!
//! One task per connection selects over the socket and a bounded queue (256 messages) of
//! [`Message`]s; a broadcast clones the message (a shared `Bytes` payload, no copy) into every
//! queue with `try_send`, dropping it for a recipient whose queue is full.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_websockets::{Limits, Message, ServerBuilder};

/// Capacity of each connection's outbound queue, as in melody's default config.
pub const QUEUE_CAPACITY: usize = 256;

/// Largest accepted message payload.
pub const MAX_PAYLOAD: usize = 16 * 1024 * 1024;

/// Most queued messages written before one flush.
const WRITE_BATCH: usize = 64;

/// What the floor server does with an inbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Every text message goes to every connection (including the sender), like `chat`.
    Broadcast,
    /// Every text and binary message goes back to its sender, like the `echo` example.
    Echo,
}

#[derive(Debug)]
struct Shared {
    registry: RwLock<HashMap<u64, mpsc::Sender<Message>>>,
    next_id: AtomicU64,
    /// Test hook: skip every `n`th enqueue of a broadcast (counted over all recipients).
    drop_every: Option<u64>,
    enqueued: AtomicU64,
}

impl Shared {
    fn broadcast(&self, msg: &Message) {
        let registry = self.registry.read().unwrap_or_else(|e| e.into_inner());
        for tx in registry.values() {
            if let Some(n) = self.drop_every {
                if self.enqueued.fetch_add(1, Ordering::Relaxed) % n == n - 1 {
                    continue;
                }
            }
            // A full queue drops the message for that recipient, as melody's default does.
            let _ = tx.try_send(msg.clone());
        }
    }
}

/// Serves WebSocket connections on `listener` (any path) until an unrecoverable accept error.
///
/// `drop_every` is a test hook: `Some(n)` silently skips every `n`th delivery of a broadcast,
/// so that a load generator's loss accounting can be checked.
///
/// # Errors
///
/// Never returns under normal operation; accept errors such as running out of file descriptors
/// are retried after a short pause.
pub async fn serve(listener: TcpListener, mode: Mode, drop_every: Option<u64>) -> io::Result<()> {
    let shared = Arc::new(Shared {
        registry: RwLock::new(HashMap::new()),
        next_id: AtomicU64::new(0),
        drop_every: drop_every.filter(|&n| n > 0),
        enqueued: AtomicU64::new(0),
    });
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    match mode {
                        Mode::Broadcast => broadcast_connection(stream, shared).await,
                        Mode::Echo => echo_connection(stream).await,
                    }
                });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

fn builder() -> ServerBuilder {
    ServerBuilder::new().limits(Limits::default().max_payload_len(Some(MAX_PAYLOAD)))
}

async fn broadcast_connection(stream: TcpStream, shared: Arc<Shared>) {
    let Ok((_request, mut ws)) = builder().accept(stream).await else {
        return;
    };
    let (tx, mut rx) = mpsc::channel::<Message>(QUEUE_CAPACITY);
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    shared
        .registry
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, tx);
    loop {
        tokio::select! {
            inbound = ws.next() => match inbound {
                Some(Ok(msg)) if msg.is_text() => shared.broadcast(&msg),
                // Pings are answered and closes acknowledged by tokio-websockets itself.
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
            Some(out) = rx.recv() => {
                if ws.feed(out).await.is_err() {
                    break;
                }
                let mut written = 1;
                while written < WRITE_BATCH {
                    let Ok(out) = rx.try_recv() else { break };
                    if ws.feed(out).await.is_err() {
                        break;
                    }
                    written += 1;
                }
                if ws.flush().await.is_err() {
                    break;
                }
            }
        }
    }
    shared
        .registry
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id);
}

async fn echo_connection(stream: TcpStream) {
    let Ok((_request, mut ws)) = builder().accept(stream).await else {
        return;
    };
    let mut batch = Vec::new();
    while let Some(Ok(msg)) = ws.next().await {
        // Take whatever else has already arrived, then echo it all with one flush. (Polling the
        // stream while replies are queued would make tokio-websockets flush after each one.)
        batch.push(msg);
        while let Some(Some(Ok(msg))) = ws.next().now_or_never() {
            batch.push(msg);
        }
        for msg in batch.drain(..) {
            if (msg.is_text() || msg.is_binary()) && ws.feed(msg).await.is_err() {
                return;
            }
        }
        if ws.flush().await.is_err() {
            return;
        }
    }
}
