//! Echo: C connections each keep D messages in flight (send D, then one more per echo) for a
//! fixed time; reports messages per second and round-trip latency.
//!
//! Messages are text, `"<seq>:<send_nanos>:<padding>"`.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, SinkExt, StreamExt};
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_websockets::Message;

use crate::common::{
    Connector, CpuMeter, CpuUsage, Latency, SharedHistogram, Ws, connect_many, padded, parse_field,
};

/// Parameters of an echo run.
#[derive(Debug, Clone)]
pub struct EchoOptions {
    /// Server URL.
    pub url: String,
    /// Connections.
    pub connections: usize,
    /// Message size in bytes.
    pub size: usize,
    /// Messages in flight per connection.
    pub depth: usize,
    /// How long to measure.
    pub duration: Duration,
    /// Handshakes in flight while connecting.
    pub connect_concurrency: usize,
    /// How long to wait for outstanding echoes after the measurement.
    pub drain_timeout: Duration,
    /// The server's process id, for its CPU use.
    pub pid: Option<u32>,
}

impl EchoOptions {
    /// Defaults for `url`: 1 connection, 64 bytes, depth 1, 5 s.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            connections: 1,
            size: 64,
            depth: 1,
            duration: Duration::from_secs(5),
            connect_concurrency: 64,
            drain_timeout: Duration::from_secs(5),
            pid: None,
        }
    }
}

/// The result of an echo run.
#[derive(Debug, Clone, Serialize)]
pub struct EchoReport {
    /// Always `"echo"`.
    pub scenario: &'static str,
    /// Server URL.
    pub url: String,
    /// Connections asked for.
    pub connections_requested: usize,
    /// Connections made.
    pub connections: usize,
    /// Failed connection attempts by kind.
    pub connect_errors: BTreeMap<String, u64>,
    /// Message size in bytes.
    pub size: usize,
    /// Messages in flight per connection.
    pub depth: usize,
    /// Measured seconds.
    pub duration_s: f64,
    /// Messages sent.
    pub sent: u64,
    /// Echoes received (in total, including the drain after the measurement).
    pub received: u64,
    /// Echoes received during the measurement.
    pub received_in_window: u64,
    /// Sent messages whose echo never came back.
    pub lost: u64,
    /// Connections that ended early.
    pub disconnected: usize,
    /// `received_in_window / duration_s`.
    pub msgs_per_sec: f64,
    /// Round-trip latency.
    pub latency: Latency,
    /// CPU use during the measurement (and drain).
    pub cpu: CpuUsage,
}

impl EchoReport {
    /// A human-readable summary.
    pub fn summary(&self) -> String {
        format!(
            "echo {url}: {c} connections × depth {d}, {size} B, {dur:.1}s\n  \
             {rate:.0} msg/s; sent {sent}, received {recv}, lost {lost}, disconnected {disc}\n  \
             latency {lat}\n  {cpu}",
            url = self.url,
            c = self.connections,
            d = self.depth,
            size = self.size,
            dur = self.duration_s,
            rate = self.msgs_per_sec,
            sent = self.sent,
            recv = self.received,
            lost = self.lost,
            disc = self.disconnected,
            lat = self.latency.line(),
            cpu = self.cpu.line(),
        )
    }
}

#[derive(Debug, Default)]
struct ConnStats {
    sent: u64,
    received: u64,
    received_in_window: u64,
    disconnected: bool,
}

/// Runs an echo measurement.
///
/// # Errors
///
/// Fails when the URL is invalid or no connection can be made.
pub async fn run(opts: &EchoOptions) -> io::Result<EchoReport> {
    let connector = Arc::new(Connector::new(&opts.url)?);
    let mut conns = Vec::with_capacity(opts.connections);
    let connect_errors = connect_many(
        &connector,
        opts.connections,
        opts.connect_concurrency,
        Duration::from_secs(10),
        |_, ws| conns.push(ws),
    )
    .await;
    if conns.is_empty() {
        return Err(io::Error::other(format!(
            "echo: no connection ({connect_errors:?})"
        )));
    }
    let base = Instant::now();
    let hist = Arc::new(SharedHistogram::new(16));
    let start = Instant::now();
    let cpu = CpuMeter::start(opts.pid);
    let end = start + opts.duration;
    let connections = conns.len();
    let tasks: Vec<JoinHandle<ConnStats>> = conns
        .into_iter()
        .enumerate()
        .map(|(i, ws)| {
            tokio::spawn(connection(
                i,
                ws,
                base,
                hist.clone(),
                opts.depth.max(1),
                opts.size,
                end,
                opts.drain_timeout,
            ))
        })
        .collect();
    let mut total = ConnStats::default();
    let mut disconnected = 0;
    for t in tasks {
        let s = t.await.map_err(io::Error::other)?;
        total.sent += s.sent;
        total.received += s.received;
        total.received_in_window += s.received_in_window;
        disconnected += usize::from(s.disconnected);
    }
    let cpu = cpu.stop();
    let duration_s = opts.duration.as_secs_f64();
    Ok(EchoReport {
        scenario: "echo",
        url: opts.url.clone(),
        connections_requested: opts.connections,
        connections,
        connect_errors,
        size: opts.size,
        depth: opts.depth.max(1),
        duration_s,
        sent: total.sent,
        received: total.received,
        received_in_window: total.received_in_window,
        lost: total.sent.saturating_sub(total.received),
        disconnected,
        msgs_per_sec: total.received_in_window as f64 / duration_s.max(1e-9),
        latency: Latency::from_histogram(&hist.merged()),
        cpu,
    })
}

#[allow(clippy::too_many_arguments)]
async fn connection(
    idx: usize,
    mut ws: Ws,
    base: Instant,
    hist: Arc<SharedHistogram>,
    depth: usize,
    size: usize,
    end: Instant,
    drain_timeout: Duration,
) -> ConnStats {
    let mut stats = ConnStats::default();
    let message = |seq: u64| {
        let now = base.elapsed().as_nanos() as u64;
        Message::text(padded(&format!("{seq}:{now}:"), size))
    };
    if !send_burst(&mut ws, depth as u64, &mut stats, &message).await {
        return stats;
    }
    let deadline = tokio::time::sleep_until(end.into());
    tokio::pin!(deadline);
    let mut sending = true;
    loop {
        let item = if sending {
            tokio::select! {
                biased;
                item = ws.next() => item,
                () = &mut deadline => {
                    sending = false;
                    deadline.as_mut().reset((Instant::now() + drain_timeout).into());
                    continue;
                }
            }
        } else {
            if stats.received >= stats.sent {
                break;
            }
            tokio::select! {
                biased;
                item = ws.next() => item,
                () = &mut deadline => break,
            }
        };
        let Some(Ok(msg)) = item else {
            stats.disconnected = true;
            break;
        };
        let mut echoes = u64::from(record(idx, &msg, base, &hist));
        // Take every echo that has already arrived before replying, so that one flush carries
        // all the replacements.
        while let Some(Some(Ok(msg))) = ws.next().now_or_never() {
            echoes += u64::from(record(idx, &msg, base, &hist));
        }
        stats.received += echoes;
        if Instant::now() < end {
            stats.received_in_window += echoes;
        }
        if sending && echoes > 0 && !send_burst(&mut ws, echoes, &mut stats, &message).await {
            return stats;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close()).await;
    stats
}

/// Sends `count` numbered messages with one flush. `false` (and `stats.disconnected`) when the
/// connection failed.
async fn send_burst(
    ws: &mut Ws,
    count: u64,
    stats: &mut ConnStats,
    message: &impl Fn(u64) -> Message,
) -> bool {
    for _ in 0..count {
        if ws.feed(message(stats.sent)).await.is_err() {
            stats.disconnected = true;
            return false;
        }
        stats.sent += 1;
    }
    if ws.flush().await.is_err() {
        stats.disconnected = true;
        return false;
    }
    true
}

/// Records the latency of one echo; returns whether it was one.
fn record(idx: usize, msg: &Message, base: Instant, hist: &SharedHistogram) -> bool {
    if !(msg.is_text() || msg.is_binary()) {
        return false;
    }
    let now = base.elapsed().as_nanos() as u64;
    let Some((_, rest)) = parse_field(msg.as_payload()) else {
        return false;
    };
    let Some((sent_ns, _)) = parse_field(rest) else {
        return false;
    };
    hist.record(idx, now.saturating_sub(sent_ns));
    true
}
