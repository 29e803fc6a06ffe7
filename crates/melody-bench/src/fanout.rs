//! Fan-out: N subscribers, P publishers; every published text message must reach every
//! subscriber (chat semantics: the server broadcasts each text message to everyone).
//!
//! Messages are `"<publisher>:<seq>:<send_nanos>:<padding>"`; warm-ups are `"w:…"` and
//! end-of-stream markers `"f:<publisher>:…"`, both excluded from the statistics.
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

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_websockets::Message;

use crate::common::{
    Connector, CpuMeter, CpuUsage, Latency, SharedHistogram, Ws, connect_many, padded, parse_field,
};

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
            window: 64,
            duration: None,
            connect_concurrency: 64,
            timeout: Duration::from_secs(60),
            pid: None,
        }
    }
}

/// The result of a fan-out run.
#[derive(Debug, Clone, Serialize)]
pub struct FanoutReport {
    /// Always `"fanout"`.
    pub scenario: &'static str,
    /// Server URL.
    pub url: String,
    /// Subscribers asked for.
    pub subscribers_requested: usize,
    /// Subscribers connected.
    pub subscribers: usize,
    /// Publishers connected.
    pub publishers: usize,
    /// Failed connection attempts by kind.
    pub connect_errors: BTreeMap<String, u64>,
    /// Seconds to connect everyone.
    pub connect_seconds: f64,
    /// Seconds until every subscriber had seen a warm-up.
    pub warmup_seconds: f64,
    /// Whether every subscriber saw a warm-up within the timeout.
    pub warmup_complete: bool,
    /// Message size in bytes.
    pub size: usize,
    /// Offered total rate (messages/s), `None` when unlimited.
    pub rate_offered: Option<f64>,
    /// Window in unlimited mode.
    pub window: u64,
    /// Messages asked for.
    pub messages_planned: u64,
    /// Messages actually sent.
    pub messages_sent: u64,
    /// Times a publisher gave up waiting for the window (a subscriber stalled for 5 s).
    pub window_stalls: u64,
    /// Seconds from the first to the last send.
    pub publish_seconds: f64,
    /// Messages sent per second.
    pub send_rate: f64,
    /// `messages_sent × subscribers`.
    pub expected_deliveries: u64,
    /// New (first-time, in-order) deliveries.
    pub deliveries: u64,
    /// `expected_deliveries − deliveries`.
    pub lost: u64,
    /// Deliveries of a sequence number at or below one already received.
    pub duplicated: u64,
    /// Subscribers whose connection ended before the run did.
    pub disconnected_subscribers: usize,
    /// Whether every subscriber saw every end marker within the timeout.
    pub drain_complete: bool,
    /// Seconds from the first send to the last delivery.
    pub delivery_seconds: f64,
    /// `deliveries / delivery_seconds`.
    pub deliveries_per_sec: f64,
    /// End-to-end latency (send to receive).
    pub latency: Latency,
    /// CPU use from the first send to the last end marker seen.
    pub cpu: CpuUsage,
}

impl FanoutReport {
    /// A human-readable summary.
    pub fn summary(&self) -> String {
        let rate = match self.rate_offered {
            Some(r) => format!("{r:.0} msg/s offered"),
            None => format!("unlimited, window {}", self.window),
        };
        format!(
            "fanout {url}: {subs} subscribers ({errs} connect errors, {ct:.1}s), {pubs} publishers, {size} B, {rate}\n  \
             sent {sent} msgs in {ps:.2}s ({sr:.0} msg/s); deliveries {del} of {exp} in {ds:.2}s = {dps:.0}/s\n  \
             lost {lost}, duplicated {dup}, disconnected {disc}, window stalls {stalls}{drain}\n  \
             latency {lat}\n  {cpu}",
            url = self.url,
            subs = self.subscribers,
            errs = self.connect_errors.values().sum::<u64>(),
            ct = self.connect_seconds,
            pubs = self.publishers,
            size = self.size,
            sent = self.messages_sent,
            ps = self.publish_seconds,
            sr = self.send_rate,
            del = self.deliveries,
            exp = self.expected_deliveries,
            ds = self.delivery_seconds,
            dps = self.deliveries_per_sec,
            lost = self.lost,
            dup = self.duplicated,
            disc = self.disconnected_subscribers,
            stalls = self.window_stalls,
            drain = if self.drain_complete {
                ""
            } else {
                " (drain timed out)"
            },
            lat = self.latency.line(),
            cpu = self.cpu.line(),
        )
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

#[derive(Debug, Default)]
struct SubStats {
    new: u64,
    duplicated: u64,
    last_delivery_ns: u64,
    disconnected: bool,
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
    let mut subs: Vec<JoinHandle<(SubStats, Option<Ws>)>> = Vec::with_capacity(opts.subscribers);
    let mut connect_errors = connect_many(
        &connector,
        opts.subscribers,
        opts.connect_concurrency,
        Duration::from_secs(10),
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
    let mut keep = Vec::with_capacity(subs.len());
    let subscribers = subs.len();
    for handle in subs {
        let (s, ws) = handle.await.map_err(io::Error::other)?;
        stats.new += s.new;
        stats.duplicated += s.duplicated;
        stats.last_delivery_ns = stats.last_delivery_ns.max(s.last_delivery_ns);
        disconnected += usize::from(s.disconnected);
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
        latency: Latency::from_histogram(&shared.hist.merged()),
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
        let text = padded(&format!("{p}:{s}:{now}:"), size);
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
    fn handle(&mut self, msg: &Message, now: u64) -> bool {
        if !msg.is_text() {
            return false;
        }
        let bytes: &[u8] = msg.as_payload();
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

async fn subscriber(idx: usize, mut ws: Ws, shared: Arc<Shared>) -> (SubStats, Option<Ws>) {
    let mut sub = Subscriber {
        idx,
        next: vec![0; shared.publishers],
        fins: vec![false; shared.publishers],
        fins_seen: 0,
        ready: false,
        stats: SubStats::default(),
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
        return (sub.stats, Some(ws));
    }
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
