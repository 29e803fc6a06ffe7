//! Fan-out: N subscribers, P publishers; every published text message must reach every
//! subscriber (chat semantics: the server broadcasts each text message to everyone).
//!
//! Messages are `"<publisher>:<seq>:<send_nanos>:<body>"`, the body `x` padding or JSON-like
//! chat events ([`Payload`]); warm-ups are `"w:…"` and end-of-stream markers
//! `"f:<publisher>:…"`, both excluded from the statistics (and, at most 64 bytes, never
//! compressed).
//!
//! 1. All subscribers and publishers connect.
//! 2. Publisher 0 sends warm-ups until every subscriber has seen one (the server registers
//!    sessions asynchronously, so "connected" is not "subscribed").
//! 3. Publishers send their messages, either at a fixed total `rate` or, without one, as fast as
//!    a window allows: message `s` is only sent once every live subscriber has received message
//!    `s - window` (or a later one) from that publisher, so the server's per-session queues are
//!    not overrun by a generator that reads slower than the server writes.
//! 4. Each publisher sends an end marker after its last message (repeated until every
//!    subscriber has seen them all); the server keeps each sender's messages in order, so a
//!    subscriber that has every publisher's marker has received all it ever will.
//!
//! Each subscriber tracks, per publisher, the next expected sequence number: a message at or
//! beyond it is a new delivery (a jump over a gap is loss), one before it a duplicate or
//! reordering. Lost deliveries are `messages sent × subscribers − new deliveries`.
//!
//! With `deflate`, subscribers are raw clients ([`crate::client::RawWs`]) that offer
//! permessage-deflate as a browser does and inflate what arrives compressed (`raw`: the same
//! client without the offer); publishers stay on tokio-websockets, uncompressed. Every delivery's payload is counted as received (compressed
//! size) and as sent, for bytes on the wire per delivery and the compression ratio.

mod report;
mod subscriber;

pub use report::FanoutReport;

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_websockets::Message;

use self::report::per_delivery;
use self::subscriber::{SubStats, subscriber};
use crate::client::{Client, RawOptions};
use crate::common::{
    Connector, CpuMeter, Latency, SharedHistogram, Ws, connect_clients, connect_many, padded,
};
use crate::payload::Payload;

/// Parameters of a fan-out run.
#[derive(Debug, Clone)]
pub struct FanoutOptions {
    /// Server URL, e.g. `ws://127.0.0.1:5000/ws`.
    pub url: String,
    /// Subscriber connections.
    pub subscribers: usize,
    /// Publisher connections (they also receive every broadcast, which is drained).
    pub publishers: usize,
    /// Messages in total, split evenly over the publishers.
    pub messages: u64,
    /// Total messages per second over all publishers; `None` or 0 for as fast as the window
    /// allows.
    pub rate: Option<f64>,
    /// Message size in bytes (at least the header).
    pub size: usize,
    /// What fills each message after its header.
    pub payload: Payload,
    /// Subscribers offer permessage-deflate (the raw client) and inflate what comes
    /// compressed.
    pub deflate: bool,
    /// Subscribers use the raw client even without `deflate` (not offering it): the
    /// uncompressed twin of a `deflate` run, read by the same code.
    pub raw: bool,
    /// With `deflate`: look a payload identical to one just inflated up in the generator's
    /// cache instead of inflating it again (see [`crate::client::inflate`]); `false` inflates
    /// every delivery.
    pub inflate_cache: bool,
    /// Messages a publisher may have ahead of the slowest subscriber (unlimited mode).
    pub window: u64,
    /// Stop publishing after this long even if not all messages were sent.
    pub duration: Option<Duration>,
    /// Handshakes in flight while connecting.
    pub connect_concurrency: usize,
    /// Bound on the warm-up and drain phases.
    pub timeout: Duration,
    /// The server's process id, for its CPU use.
    pub pid: Option<u32>,
}

impl FanoutOptions {
    /// Defaults for `url`: 100 subscribers, 1 publisher, 10,000 messages of 64 bytes.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            subscribers: 100,
            publishers: 1,
            messages: 10_000,
            rate: None,
            size: 64,
            payload: Payload::Padded,
            deflate: false,
            raw: false,
            inflate_cache: true,
            window: 64,
            duration: None,
            connect_concurrency: 64,
            timeout: Duration::from_secs(60),
            pid: None,
        }
    }
}

/// Per-publisher flow-control state: `slots[s % window]` counts the subscribers that have
/// received message `s` or a later one.
#[derive(Debug)]
struct Progress {
    slots: Box<[AtomicUsize]>,
    notify: Notify,
}

#[derive(Debug)]
struct Shared {
    base: Instant,
    publishers: usize,
    windowed: bool,
    window: u64,
    hist: SharedHistogram,
    live: AtomicUsize,
    ready: AtomicUsize,
    ready_notify: Notify,
    done: AtomicUsize,
    done_notify: Notify,
    stop: Notify,
    progress: Vec<Progress>,
}

impl Shared {
    fn nanos(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    fn wake_all(&self) {
        self.ready_notify.notify_one();
        self.done_notify.notify_one();
        for p in &self.progress {
            p.notify.notify_one();
        }
    }
}

/// Runs a fan-out measurement.
///
/// # Errors
///
/// Fails when the URL is invalid, no publisher can connect, or no subscriber can connect.
pub async fn run(opts: &FanoutOptions) -> io::Result<FanoutReport> {
    let publishers = opts.publishers.max(1);
    let window = opts.window.max(1);
    let rate = opts.rate.filter(|r| *r > 0.0);
    let connector = Arc::new(Connector::new(&opts.url)?);
    let shared = Arc::new(Shared {
        base: Instant::now(),
        publishers,
        windowed: rate.is_none(),
        window,
        hist: SharedHistogram::new(16),
        live: AtomicUsize::new(0),
        ready: AtomicUsize::new(0),
        ready_notify: Notify::new(),
        done: AtomicUsize::new(0),
        done_notify: Notify::new(),
        stop: Notify::new(),
        progress: (0..publishers)
            .map(|_| Progress {
                slots: (0..window).map(|_| AtomicUsize::new(0)).collect(),
                notify: Notify::new(),
            })
            .collect(),
    });

    // 1. Connect subscribers (their tasks start reading at once) and publishers.
    let connect_start = Instant::now();
    let mut subs: Vec<JoinHandle<(SubStats, Option<Client>)>> =
        Vec::with_capacity(opts.subscribers);
    let raw = (opts.deflate || opts.raw).then_some(RawOptions {
        offer_deflate: opts.deflate,
        inflate_cache: opts.inflate_cache,
    });
    let mut connect_errors = connect_clients(
        &connector,
        opts.subscribers,
        opts.connect_concurrency,
        Duration::from_secs(10),
        raw,
        |i, ws| {
            shared.live.fetch_add(1, Ordering::SeqCst);
            subs.push(tokio::spawn(subscriber(i, ws, shared.clone())));
        },
    )
    .await;
    let mut pub_ws = Vec::with_capacity(publishers);
    let pub_errors = connect_many(
        &connector,
        publishers,
        publishers,
        Duration::from_secs(10),
        |_, ws| {
            pub_ws.push(ws);
        },
    )
    .await;
    for (k, v) in pub_errors {
        *connect_errors.entry(k).or_default() += v;
    }
    let connect_seconds = connect_start.elapsed().as_secs_f64();
    if subs.is_empty() || pub_ws.len() < publishers {
        shared.stop.notify_waiters();
        return Err(io::Error::other(format!(
            "fanout: could not connect (subscribers {}/{}, publishers {}/{}, errors {:?})",
            subs.len(),
            opts.subscribers,
            pub_ws.len(),
            publishers,
            connect_errors
        )));
    }
    let mut sinks = Vec::with_capacity(publishers);
    let mut drains = Vec::with_capacity(publishers);
    for ws in pub_ws {
        let (sink, stream) = ws.split();
        sinks.push(sink);
        drains.push(tokio::spawn(drain(stream)));
    }

    // 2. Warm up until every live subscriber has seen a broadcast.
    let warm_start = Instant::now();
    let warm_deadline = warm_start + opts.timeout;
    let warm_msg = Message::text(padded("w:", opts.size.min(64)));
    let mut warmup_complete = false;
    while Instant::now() < warm_deadline {
        if shared.ready.load(Ordering::SeqCst) >= shared.live.load(Ordering::SeqCst) {
            warmup_complete = true;
            break;
        }
        sinks[0]
            .send(warm_msg.clone())
            .await
            .map_err(io::Error::other)?;
        let _ =
            tokio::time::timeout(Duration::from_millis(100), shared.ready_notify.notified()).await;
    }
    let warmup_seconds = warm_start.elapsed().as_secs_f64();

    // 3. Publish.
    let start = Instant::now() + Duration::from_millis(5);
    let cpu = CpuMeter::start(opts.pid);
    let stop_at = opts.duration.map(|d| start + d);
    let mut pubs = Vec::with_capacity(publishers);
    for (p, sink) in sinks.into_iter().enumerate() {
        let plan = opts.messages / publishers as u64
            + u64::from((p as u64) < opts.messages % publishers as u64);
        let interval = rate.map(|r| Duration::from_secs_f64(publishers as f64 / r));
        let offset = rate
            .map(|r| Duration::from_secs_f64(p as f64 / r))
            .unwrap_or_default();
        pubs.push(tokio::spawn(publisher(
            p,
            sink,
            shared.clone(),
            plan,
            opts.size,
            opts.payload,
            start + offset,
            interval,
            stop_at,
        )));
    }
    let mut sinks = Vec::with_capacity(publishers);
    let mut sent = 0;
    let mut stalls = 0;
    let mut first_send = u64::MAX;
    let mut last_send = 0;
    for handle in pubs {
        let r = handle.await.map_err(io::Error::other)?;
        sent += r.sent;
        stalls += r.stalls;
        first_send = first_send.min(r.first_send_ns);
        last_send = last_send.max(r.last_send_ns);
        sinks.push((r.p, r.sink));
    }

    // 4. Repeat the end markers until every live subscriber has seen all of them.
    let drain_deadline = Instant::now() + opts.timeout;
    let mut drain_complete = false;
    loop {
        if shared.done.load(Ordering::SeqCst) >= shared.live.load(Ordering::SeqCst) {
            drain_complete = true;
            break;
        }
        if Instant::now() >= drain_deadline {
            break;
        }
        let _ =
            tokio::time::timeout(Duration::from_millis(200), shared.done_notify.notified()).await;
        if shared.done.load(Ordering::SeqCst) < shared.live.load(Ordering::SeqCst) {
            for (p, sink) in &mut sinks {
                let _ = sink.send(fin_message(*p, opts.size)).await;
            }
        }
    }
    let cpu = cpu.stop();
    shared.stop.notify_waiters();

    let mut stats = SubStats::default();
    let mut disconnected = 0;
    let mut compressed_subscribers = 0;
    let mut keep = Vec::with_capacity(subs.len());
    let subscribers = subs.len();
    for handle in subs {
        let (s, ws) = handle.await.map_err(io::Error::other)?;
        stats.add(&s);
        disconnected += usize::from(s.disconnected);
        compressed_subscribers += usize::from(s.compressed_session);
        keep.push(ws);
    }
    for d in drains {
        d.abort();
    }
    drop(keep);
    drop(sinks);

    let expected = sent * subscribers as u64;
    let publish_seconds = if sent > 0 {
        (last_send.saturating_sub(first_send)) as f64 / 1e9
    } else {
        0.0
    };
    let delivery_seconds = if stats.new > 0 {
        stats.last_delivery_ns.saturating_sub(first_send) as f64 / 1e9
    } else {
        0.0
    };
    Ok(FanoutReport {
        scenario: "fanout",
        url: opts.url.clone(),
        subscribers_requested: opts.subscribers,
        subscribers,
        publishers,
        connect_errors,
        connect_seconds,
        warmup_seconds,
        warmup_complete,
        size: opts.size,
        payload: opts.payload.name(),
        client: if opts.deflate || opts.raw {
            "raw"
        } else {
            "tokio-websockets"
        },
        deflate: opts.deflate,
        compressed_subscribers,
        rate_offered: rate,
        window,
        messages_planned: opts.messages,
        messages_sent: sent,
        window_stalls: stalls,
        publish_seconds,
        send_rate: per_sec(sent, publish_seconds),
        expected_deliveries: expected,
        deliveries: stats.new,
        lost: expected.saturating_sub(stats.new),
        duplicated: stats.duplicated,
        disconnected_subscribers: disconnected,
        drain_complete,
        delivery_seconds,
        deliveries_per_sec: per_sec(stats.new, delivery_seconds),
        compressed_deliveries: stats.compressed,
        wire_bytes: stats.wire_bytes,
        message_bytes: stats.message_bytes,
        wire_bytes_per_delivery: per_delivery(stats.wire_bytes, stats.new),
        compression_ratio: (opts.deflate && stats.wire_bytes > 0)
            .then(|| stats.message_bytes as f64 / stats.wire_bytes as f64),
        inflations: stats.inflate.inflated,
        inflate_cache_hits: stats.inflate.cache_hits,
        latency: Latency::from_histogram(&shared.hist.merged()),
        server_cpu_us_per_delivery: cpu
            .server_cpu_s
            .filter(|_| stats.new > 0)
            .map(|s| 1e6 * s / stats.new as f64),
        generator_cpu_us_per_delivery: cpu
            .generator_cpu_s
            .filter(|_| stats.new > 0)
            .map(|s| 1e6 * s / stats.new as f64),
        cpu,
    })
}

fn per_sec(n: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        n as f64 / seconds
    } else {
        0.0
    }
}

fn fin_message(p: usize, size: usize) -> Message {
    Message::text(padded(&format!("f:{p}:"), size.min(64)))
}

/// Reads (and so answers pings on) a publisher's connection, discarding the broadcasts.
async fn drain(mut stream: SplitStream<Ws>) {
    while let Some(Ok(_)) = stream.next().await {}
}

struct PublisherResult {
    p: usize,
    sink: SplitSink<Ws, Message>,
    sent: u64,
    stalls: u64,
    first_send_ns: u64,
    last_send_ns: u64,
}

#[allow(clippy::too_many_arguments)]
async fn publisher(
    p: usize,
    mut sink: SplitSink<Ws, Message>,
    shared: Arc<Shared>,
    plan: u64,
    size: usize,
    payload: Payload,
    start: Instant,
    interval: Option<Duration>,
    stop_at: Option<Instant>,
) -> PublisherResult {
    let progress = &shared.progress[p];
    let mut sent = 0;
    let mut stalls = 0;
    let mut first_send_ns = u64::MAX;
    let mut last_send_ns = 0;
    tokio::time::sleep_until(start.into()).await;
    for s in 0..plan {
        if let Some(interval) = interval {
            let at = start + interval.saturating_mul(u32::try_from(s).unwrap_or(u32::MAX));
            tokio::time::sleep_until(at.into()).await;
        } else if s >= shared.window {
            let slot = &progress.slots[(s % shared.window) as usize];
            let stall_deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            loop {
                let notified = progress.notify.notified();
                if slot.load(Ordering::SeqCst) >= shared.live.load(Ordering::SeqCst) {
                    break;
                }
                if tokio::time::timeout_at(stall_deadline, notified)
                    .await
                    .is_err()
                {
                    stalls += 1;
                    break;
                }
            }
            slot.store(0, Ordering::SeqCst);
        }
        if stop_at.is_some_and(|t| Instant::now() >= t) {
            break;
        }
        let now = shared.nanos();
        let seed = ((p as u64) << 40) ^ s;
        let text = payload.message(&format!("{p}:{s}:{now}:"), seed, size);
        if sink.send(Message::text(text)).await.is_err() {
            break;
        }
        first_send_ns = first_send_ns.min(now);
        last_send_ns = now;
        sent += 1;
    }
    let _ = sink.send(fin_message(p, size)).await;
    PublisherResult {
        p,
        sink,
        sent,
        stalls,
        first_send_ns,
        last_send_ns,
    }
}
