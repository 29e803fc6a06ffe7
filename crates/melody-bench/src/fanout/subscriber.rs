//! One fan-out subscriber: reads every broadcast, checks sequence numbers per publisher,
//! records latency, counts bytes as received and as sent, and advances the publishers' window.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::FutureExt;

use super::Shared;
use crate::client::{Client, Incoming, RawCounters};
use crate::common::parse_field;

/// What one subscriber saw.
#[derive(Debug, Default)]
pub(super) struct SubStats {
    /// New (in-order, first-time) deliveries.
    pub(super) new: u64,
    pub(super) duplicated: u64,
    pub(super) last_delivery_ns: u64,
    pub(super) disconnected: bool,
    /// Whether the session agreed to permessage-deflate.
    pub(super) compressed_session: bool,
    /// Of the new deliveries: how many arrived compressed, their payload bytes as received,
    /// and as sent.
    pub(super) compressed: u64,
    pub(super) wire_bytes: u64,
    pub(super) message_bytes: u64,
    pub(super) inflate: RawCounters,
}

impl SubStats {
    /// Adds another subscriber's figures (the flags count in the caller).
    pub(super) fn add(&mut self, other: &Self) {
        self.new += other.new;
        self.duplicated += other.duplicated;
        self.last_delivery_ns = self.last_delivery_ns.max(other.last_delivery_ns);
        self.compressed += other.compressed;
        self.wire_bytes += other.wire_bytes;
        self.message_bytes += other.message_bytes;
        self.inflate.inflated += other.inflate.inflated;
        self.inflate.cache_hits += other.inflate.cache_hits;
    }
}

/// One subscriber's view of the run.
struct Subscriber {
    idx: usize,
    shared: Arc<Shared>,
    next: Vec<u64>,
    fins: Vec<bool>,
    fins_seen: usize,
    ready: bool,
    stats: SubStats,
}

impl Subscriber {
    /// Handles one message received at `now`; returns whether every end marker has arrived.
    fn handle(&mut self, msg: &Incoming, now: u64) -> bool {
        let Some(bytes) = msg.text() else {
            return false;
        };
        let shared = &*self.shared;
        match bytes.first() {
            Some(b'0'..=b'9') => {
                let Some((p, rest)) = parse_field(bytes) else {
                    return false;
                };
                let Some((s, rest)) = parse_field(rest) else {
                    return false;
                };
                let Some((sent_ns, _)) = parse_field(rest) else {
                    return false;
                };
                let p = p as usize;
                if p >= shared.publishers {
                    return false;
                }
                let expected = self.next[p];
                if s < expected {
                    self.stats.duplicated += 1;
                    return false;
                }
                if shared.windowed {
                    // Count this subscriber as past every sequence number up to `s`.
                    let progress = &shared.progress[p];
                    let from = expected.max((s + 1).saturating_sub(shared.window));
                    let live = shared.live.load(Ordering::Relaxed);
                    for k in from..=s {
                        let slot = &progress.slots[(k % shared.window) as usize];
                        if slot.fetch_add(1, Ordering::SeqCst) + 1 == live {
                            progress.notify.notify_one();
                        }
                    }
                }
                self.next[p] = s + 1;
                self.stats.new += 1;
                self.stats.last_delivery_ns = now;
                self.stats.wire_bytes += msg.wire_len() as u64;
                self.stats.message_bytes += bytes.len() as u64;
                self.stats.compressed += u64::from(msg.compressed());
                shared.hist.record(self.idx, now.saturating_sub(sent_ns));
                false
            }
            Some(b'w') => {
                if !self.ready {
                    self.ready = true;
                    if shared.ready.fetch_add(1, Ordering::SeqCst) + 1
                        >= shared.live.load(Ordering::SeqCst)
                    {
                        shared.ready_notify.notify_one();
                    }
                }
                false
            }
            Some(b'f') => {
                let Some((p, _)) = bytes.get(2..).and_then(parse_field) else {
                    return false;
                };
                let p = p as usize;
                if p >= shared.publishers || self.fins[p] {
                    return false;
                }
                self.fins[p] = true;
                self.fins_seen += 1;
                if self.fins_seen < shared.publishers {
                    return false;
                }
                if shared.done.fetch_add(1, Ordering::SeqCst) + 1
                    >= shared.live.load(Ordering::SeqCst)
                {
                    shared.done_notify.notify_one();
                }
                true
            }
            _ => false,
        }
    }
}

/// Reads subscriber `idx`'s connection until it has every end marker and the run stops (or
/// its connection ends); returns what it saw and the connection, still open, if it is.
pub(super) async fn subscriber(
    idx: usize,
    mut ws: Client,
    shared: Arc<Shared>,
) -> (SubStats, Option<Client>) {
    let mut sub = Subscriber {
        idx,
        next: vec![0; shared.publishers],
        fins: vec![false; shared.publishers],
        fins_seen: 0,
        ready: false,
        stats: SubStats {
            compressed_session: ws.compressed(),
            ..SubStats::default()
        },
        shared,
    };
    let shared = sub.shared.clone();
    let stop = shared.stop.notified();
    tokio::pin!(stop);
    stop.as_mut().enable();
    let mut done = false;
    'read: while !done {
        let mut item = tokio::select! {
            biased;
            item = ws.next() => item,
            () = &mut stop => break,
        };
        // One clock reading for everything that is already readable: reading the clock is a
        // noticeable share of the generator's work at millions of deliveries per second.
        let now = shared.nanos();
        loop {
            match item {
                Some(Ok(msg)) => done = sub.handle(&msg, now),
                Some(Err(_)) | None => {
                    sub.stats.disconnected = true;
                    break 'read;
                }
            }
            if done {
                break;
            }
            match ws.next().now_or_never() {
                Some(next) => item = next,
                None => break,
            }
        }
    }
    if done {
        // Keep the connection open (and answering pings) until everyone is done.
        tokio::select! {
            () = &mut stop => {},
            () = async { while let Some(Ok(_)) = ws.next().await {} } => {},
        }
        sub.stats.inflate = ws.counters();
        return (sub.stats, Some(ws));
    }
    sub.stats.inflate = ws.counters();
    if sub.stats.disconnected {
        shared.live.fetch_sub(1, Ordering::SeqCst);
        if sub.ready {
            shared.ready.fetch_sub(1, Ordering::SeqCst);
        }
        shared.wake_all();
        return (sub.stats, None);
    }
    (sub.stats, Some(ws))
}
