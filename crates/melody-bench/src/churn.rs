//! Churn: K concurrent loops of connect → send one text → wait for it to come back → close,
//! for a fixed time; reports connects per second, errors by kind and the server's RSS.
//!
//! Works against a broadcast server (each loop also receives the others' messages; its own is
//! recognised by a unique id) and against an echo server.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio_websockets::Message;

use crate::common::{
    Connector, CpuMeter, CpuUsage, ErrorCounts, Latency, SharedHistogram, fmt_bytes, rss_bytes,
    settle_rss,
};

/// Parameters of a churn run.
#[derive(Debug, Clone)]
pub struct ChurnOptions {
    /// Server URL.
    pub url: String,
    /// Concurrent loops.
    pub concurrency: usize,
    /// How long to run.
    pub duration: Duration,
    /// The server's process id, for RSS readings.
    pub pid: Option<u32>,
    /// Bound on each step (connect, round trip, close).
    pub step_timeout: Duration,
}

impl ChurnOptions {
    /// Defaults for `url`: 50 loops for 10 s.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            concurrency: 50,
            duration: Duration::from_secs(10),
            pid: None,
            step_timeout: Duration::from_secs(5),
        }
    }
}

/// The result of a churn run.
#[derive(Debug, Clone, Serialize)]
pub struct ChurnReport {
    /// Always `"churn"`.
    pub scenario: &'static str,
    /// Server URL.
    pub url: String,
    /// Server process id.
    pub pid: Option<u32>,
    /// Concurrent loops.
    pub concurrency: usize,
    /// Seconds run.
    pub duration_s: f64,
    /// Successful connects (handshake done).
    pub connects: u64,
    /// Complete connect/send/receive/close cycles.
    pub cycles: u64,
    /// `cycles / duration_s`.
    pub connects_per_sec: f64,
    /// Errors by kind.
    pub errors: BTreeMap<String, u64>,
    /// Total errors.
    pub error_count: u64,
    /// Time for one full cycle.
    pub cycle_latency: Latency,
    /// CPU use during the run.
    pub cpu: CpuUsage,
    /// Server RSS at the start.
    pub rss_start: Option<u64>,
    /// Largest server RSS sampled (every second) during the run.
    pub rss_max: Option<u64>,
    /// Server RSS after the run, once it settled.
    pub rss_end: Option<u64>,
}

impl ChurnReport {
    /// A human-readable summary.
    pub fn summary(&self) -> String {
        let rss = |v: Option<u64>| v.map_or_else(|| "n/a".to_owned(), fmt_bytes);
        format!(
            "churn {url}: {k} loops for {d:.1}s: {cps:.0} connects/s ({cycles} cycles, {connects} connects), {errs} errors {errors:?}\n  \
             cycle {lat}\n  {cpu}\n  server RSS start {s}, max {m}, end {e}",
            url = self.url,
            k = self.concurrency,
            d = self.duration_s,
            cps = self.connects_per_sec,
            cycles = self.cycles,
            connects = self.connects,
            errs = self.error_count,
            errors = self.errors,
            lat = self.cycle_latency.line(),
            cpu = self.cpu.line(),
            s = rss(self.rss_start),
            m = rss(self.rss_max),
            e = rss(self.rss_end),
        )
    }
}

#[derive(Debug, Default)]
struct Shared {
    connects: AtomicU64,
    cycles: AtomicU64,
    errors: ErrorCounts,
    stopped: AtomicBool,
}

/// Runs a churn measurement.
///
/// # Errors
///
/// Fails when the URL is invalid.
pub async fn run(opts: &ChurnOptions) -> io::Result<ChurnReport> {
    let connector = Arc::new(Connector::new(&opts.url)?);
    let shared = Arc::new(Shared::default());
    let hist = Arc::new(SharedHistogram::new(8));
    let rss_start = opts.pid.and_then(rss_bytes);
    let start = Instant::now();
    let cpu = CpuMeter::start(opts.pid);
    let end = start + opts.duration;
    let loops: Vec<_> = (0..opts.concurrency.max(1))
        .map(|k| {
            tokio::spawn(churn_loop(
                k,
                connector.clone(),
                shared.clone(),
                hist.clone(),
                end,
                opts.step_timeout,
            ))
        })
        .collect();
    let sampler = opts.pid.map(|pid| {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut max = rss_bytes(pid).unwrap_or(0);
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            while !shared.stopped.load(Ordering::SeqCst) {
                tick.tick().await;
                max = max.max(rss_bytes(pid).unwrap_or(0));
            }
            max
        })
    });
    for l in loops {
        let _ = l.await;
    }
    let cpu = cpu.stop();
    let duration_s = start
        .elapsed()
        .as_secs_f64()
        .min(opts.duration.as_secs_f64())
        .max(1e-9);
    shared.stopped.store(true, Ordering::SeqCst);
    let mut rss_max = match sampler {
        Some(s) => s.await.ok(),
        None => None,
    };
    let rss_end = match opts.pid {
        Some(pid) => settle_rss(pid, false, Duration::from_secs(5)).await,
        None => None,
    };
    if let (Some(m), Some(e)) = (rss_max.as_mut(), rss_end) {
        *m = (*m).max(e);
    }
    let errors = shared.errors.snapshot();
    let cycles = shared.cycles.load(Ordering::SeqCst);
    Ok(ChurnReport {
        scenario: "churn",
        url: opts.url.clone(),
        pid: opts.pid,
        concurrency: opts.concurrency.max(1),
        duration_s,
        connects: shared.connects.load(Ordering::SeqCst),
        cycles,
        connects_per_sec: cycles as f64 / duration_s,
        error_count: errors.values().sum(),
        errors,
        cycle_latency: Latency::from_histogram(&hist.merged()),
        cpu,
        rss_start,
        rss_max,
        rss_end,
    })
}

async fn churn_loop(
    k: usize,
    connector: Arc<Connector>,
    shared: Arc<Shared>,
    hist: Arc<SharedHistogram>,
    end: Instant,
    step_timeout: Duration,
) {
    let mut iteration = 0u64;
    while Instant::now() < end {
        iteration += 1;
        let began = Instant::now();
        let mut ws = match connector.connect(step_timeout).await {
            Ok(ws) => ws,
            Err(kind) => {
                shared.errors.add(kind.name());
                // Do not spin on a refusing server.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        shared.connects.fetch_add(1, Ordering::Relaxed);
        let id = format!("c:{k}:{iteration}");
        if ws.send(Message::text(id.clone())).await.is_err() {
            shared.errors.add("send");
            continue;
        }
        let round_trip = async {
            while let Some(item) = ws.next().await {
                match item {
                    Ok(msg) if msg.as_text() == Some(id.as_str()) => return Ok(()),
                    Ok(_) => {}
                    Err(_) => return Err("unexpected_close"),
                }
            }
            Err("unexpected_close")
        };
        match tokio::time::timeout(step_timeout, round_trip).await {
            Ok(Ok(())) => {}
            Ok(Err(kind)) => {
                shared.errors.add(kind);
                continue;
            }
            Err(_) => {
                shared.errors.add("timeout");
                continue;
            }
        }
        // Close handshake: send a close frame, then read until the server's close arrives
        // and the stream ends.
        let closing = async {
            ws.close().await.map_err(|_| "close")?;
            while let Some(item) = ws.next().await {
                if item.is_err() {
                    return Err("close");
                }
            }
            Ok::<(), &'static str>(())
        };
        match tokio::time::timeout(step_timeout, closing).await {
            Ok(Ok(())) => {
                shared.cycles.fetch_add(1, Ordering::Relaxed);
                hist.record(k, began.elapsed().as_nanos() as u64);
            }
            Ok(Err(kind)) => shared.errors.add(kind),
            Err(_) => shared.errors.add("close_timeout"),
        }
    }
}
