//! Idle: open N connections, hold them (reading, so pings are answered), and watch the server's
//! resident memory before, during and after; reports bytes per idle connection.
//!
//! With `deflate`, the connections are raw clients that offer permessage-deflate as a browser
//! does ([`crate::client::RawWs`]): the RSS per idle *compressing* session, to compare with an
//! uncompressed run against the same server.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Notify;

use crate::client::{Client, RawOptions};
use crate::common::{
    Connector, CpuMeter, CpuUsage, connect_clients, fmt_bytes, rss_bytes, settle_rss,
};

/// Parameters of an idle run.
#[derive(Debug, Clone)]
pub struct IdleOptions {
    /// Server URL.
    pub url: String,
    /// Connections to hold.
    pub connections: usize,
    /// How long to hold them once connected.
    pub hold: Duration,
    /// The server's process id, for RSS readings.
    pub pid: Option<u32>,
    /// Handshakes in flight while connecting.
    pub connect_concurrency: usize,
    /// Interval between RSS samples during the hold.
    pub sample_every: Duration,
    /// Offer permessage-deflate (raw clients) instead of connecting with tokio-websockets.
    pub deflate: bool,
}

impl IdleOptions {
    /// Defaults for `url`: 1,000 connections held 10 s.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            connections: 1000,
            hold: Duration::from_secs(10),
            pid: None,
            connect_concurrency: 64,
            sample_every: Duration::from_secs(2),
            deflate: false,
        }
    }
}

/// The result of an idle run.
#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    /// Always `"idle"`.
    pub scenario: &'static str,
    /// Server URL.
    pub url: String,
    /// Server process id.
    pub pid: Option<u32>,
    /// Connections asked for.
    pub connections_requested: usize,
    /// Connections made.
    pub connected: usize,
    /// Whether the connections offered permessage-deflate.
    pub deflate: bool,
    /// Connections whose handshake agreed to permessage-deflate.
    pub compressed_connections: usize,
    /// Failed connection attempts by kind.
    pub connect_errors: BTreeMap<String, u64>,
    /// Seconds to connect them all.
    pub connect_seconds: f64,
    /// Seconds held.
    pub hold_s: f64,
    /// Connections still open at the end of the hold.
    pub open_at_end: usize,
    /// Pings received from the server (each answered).
    pub pings_received: u64,
    /// Server RSS before connecting.
    pub rss_before: Option<u64>,
    /// Server RSS once all were connected and it settled.
    pub rss_connected: Option<u64>,
    /// Server RSS samples during the hold.
    pub rss_during: Vec<u64>,
    /// Largest sample during the hold.
    pub rss_during_max: Option<u64>,
    /// Server RSS after all closed and it settled.
    pub rss_after: Option<u64>,
    /// `(rss_during_max − rss_before) / connected`.
    pub bytes_per_connection: Option<f64>,
    /// CPU use during the hold.
    pub cpu: CpuUsage,
}

impl IdleReport {
    /// A human-readable summary.
    pub fn summary(&self) -> String {
        let rss = |v: Option<u64>| v.map_or_else(|| "n/a".to_owned(), fmt_bytes);
        format!(
            "idle {url}: {conn}/{req} connected{deflate} in {ct:.1}s ({errs} errors), held {hold:.0}s, {open} still open, {pings} pings\n  \
             server RSS before {b}, connected {c}, during max {d}, after {a}; {per} per connection\n  {cpu}",
            url = self.url,
            conn = self.connected,
            req = self.connections_requested,
            deflate = if self.deflate {
                format!(" ({} with permessage-deflate)", self.compressed_connections)
            } else {
                String::new()
            },
            ct = self.connect_seconds,
            errs = self.connect_errors.values().sum::<u64>(),
            hold = self.hold_s,
            open = self.open_at_end,
            pings = self.pings_received,
            b = rss(self.rss_before),
            c = rss(self.rss_connected),
            d = rss(self.rss_during_max),
            a = rss(self.rss_after),
            per = self
                .bytes_per_connection
                .map_or_else(|| "n/a".to_owned(), |b| format!("{:.1} KiB", b / 1024.0)),
            cpu = self.cpu.line(),
        )
    }
}

#[derive(Debug, Default)]
struct Shared {
    open: AtomicUsize,
    pings: AtomicU64,
    stopped: AtomicBool,
    stop: Notify,
}

/// Runs an idle measurement.
///
/// # Errors
///
/// Fails when the URL is invalid.
pub async fn run(opts: &IdleOptions) -> io::Result<IdleReport> {
    let connector = Arc::new(Connector::new(&opts.url)?);
    let shared = Arc::new(Shared::default());
    let rss_before = opts.pid.and_then(rss_bytes);

    let connect_start = Instant::now();
    let mut tasks = Vec::with_capacity(opts.connections);
    let mut compressed_connections = 0;
    let raw = opts.deflate.then_some(RawOptions {
        offer_deflate: true,
        inflate_cache: false,
    });
    let connect_errors = connect_clients(
        &connector,
        opts.connections,
        opts.connect_concurrency,
        Duration::from_secs(10),
        raw,
        |_, ws| {
            shared.open.fetch_add(1, Ordering::SeqCst);
            compressed_connections += usize::from(ws.compressed());
            tasks.push(tokio::spawn(hold(ws, shared.clone())));
        },
    )
    .await;
    let connect_seconds = connect_start.elapsed().as_secs_f64();
    let connected = tasks.len();

    let hold_start = Instant::now();
    let cpu = CpuMeter::start(opts.pid);
    let rss_connected = match opts.pid {
        Some(pid) => settle_rss(pid, true, Duration::from_secs(10).min(opts.hold)).await,
        None => None,
    };
    let mut rss_during = Vec::new();
    let hold_end = hold_start + opts.hold;
    loop {
        if let Some(r) = opts.pid.and_then(rss_bytes) {
            rss_during.push(r);
        }
        let now = Instant::now();
        if now >= hold_end {
            break;
        }
        tokio::time::sleep(opts.sample_every.min(hold_end - now)).await;
    }
    let open_at_end = shared.open.load(Ordering::SeqCst);
    let hold_s = hold_start.elapsed().as_secs_f64();
    let cpu = cpu.stop();

    shared.stopped.store(true, Ordering::SeqCst);
    shared.stop.notify_waiters();
    for t in tasks {
        let _ = t.await;
    }
    let rss_after = match opts.pid {
        Some(pid) => settle_rss(pid, false, Duration::from_secs(10)).await,
        None => None,
    };
    let rss_during_max = rss_during.iter().copied().max();
    let bytes_per_connection = match (rss_before, rss_during_max) {
        (Some(b), Some(d)) if connected > 0 => Some(d.saturating_sub(b) as f64 / connected as f64),
        _ => None,
    };
    Ok(IdleReport {
        scenario: "idle",
        url: opts.url.clone(),
        pid: opts.pid,
        connections_requested: opts.connections,
        connected,
        deflate: opts.deflate,
        compressed_connections,
        connect_errors,
        connect_seconds,
        hold_s,
        open_at_end,
        pings_received: shared.pings.load(Ordering::SeqCst),
        rss_before,
        rss_connected,
        rss_during,
        rss_during_max,
        rss_after,
        bytes_per_connection,
        cpu,
    })
}

/// Keeps reading one connection (both clients answer pings while polled) until the server
/// closes it or the run stops; then drops it.
async fn hold(mut ws: Client, shared: Arc<Shared>) {
    let stop = shared.stop.notified();
    tokio::pin!(stop);
    stop.as_mut().enable();
    if shared.stopped.load(Ordering::SeqCst) {
        return;
    }
    loop {
        tokio::select! {
            item = ws.next() => match item {
                Some(Ok(msg)) => {
                    if msg.is_ping() {
                        shared.pings.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Some(Err(_)) | None => {
                    shared.open.fetch_sub(1, Ordering::SeqCst);
                    return;
                }
            },
            () = &mut stop => return,
        }
    }
}
