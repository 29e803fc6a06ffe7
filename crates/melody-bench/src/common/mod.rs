//! Pieces shared by the load generators: connecting from many loopback source addresses
//! ([`connect`]), reading a process's RSS and CPU time, latency histograms and error
//! classification.

use std::collections::BTreeMap;
use std::io;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

pub mod connect;

pub use connect::{
    CONNECTIONS_PER_SOURCE, ConnectErrorKind, Connector, Ws, connect_clients, connect_many,
    raise_nofile_limit, source_address,
};

/// The resident set size of process `pid` in bytes (`VmRSS` in `/proc/PID/status`).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU time (user + system) consumed so far by process `pid`, or by this process when `None`,
/// in seconds (from `/proc/PID/stat`; Linux reports it in units of 1/100 s).
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = pid.map_or_else(
        || "/proc/self/stat".to_owned(),
        |p| format!("/proc/{p}/stat"),
    );
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may contain spaces) start at field 3 (state).
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// CPU seconds all processes on the machine have used so far (busy time in `/proc/stat`).
pub fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4).copied().unwrap_or(0);
    Some((total - idle) as f64 / 100.0)
}

/// CPU use of the server and of the generator over a measurement.
#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct CpuUsage {
    /// Wall-clock seconds measured.
    pub wall_s: f64,
    /// Server CPU seconds (when its pid is known).
    pub server_cpu_s: Option<f64>,
    /// Server CPU as a percentage of one core.
    pub server_cpu_pct: Option<f64>,
    /// Generator CPU seconds.
    pub generator_cpu_s: Option<f64>,
    /// Generator CPU as a percentage of one core.
    pub generator_cpu_pct: Option<f64>,
    /// CPU used by every other process on the machine, as a percentage of one core: high
    /// values mean the run competed with other work and its figures are unreliable.
    pub others_cpu_pct: Option<f64>,
}

impl CpuUsage {
    /// `server N% / generator M% of a core`.
    pub fn line(&self) -> String {
        let pct = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.0}%"));
        format!(
            "cpu: server {} / generator {} of a core; other processes {}",
            pct(self.server_cpu_pct),
            pct(self.generator_cpu_pct),
            pct(self.others_cpu_pct)
        )
    }
}

/// Measures CPU use between [`CpuMeter::start`] and [`CpuMeter::stop`].
#[derive(Debug, Clone, Copy)]
pub struct CpuMeter {
    pid: Option<u32>,
    at: Instant,
    server: Option<f64>,
    generator: Option<f64>,
    machine: Option<f64>,
}

impl CpuMeter {
    /// Starts measuring (the server's use only when `pid` is given).
    pub fn start(pid: Option<u32>) -> Self {
        Self {
            pid,
            at: Instant::now(),
            server: pid.and_then(|p| cpu_seconds(Some(p))),
            generator: cpu_seconds(None),
            machine: machine_busy_seconds(),
        }
    }

    /// The use since [`CpuMeter::start`].
    pub fn stop(&self) -> CpuUsage {
        let wall_s = self.at.elapsed().as_secs_f64();
        let diff = |before: Option<f64>, now: Option<f64>| Some(now? - before?);
        let server_cpu_s = diff(self.server, self.pid.and_then(|p| cpu_seconds(Some(p))));
        let generator_cpu_s = diff(self.generator, cpu_seconds(None));
        let machine_s = diff(self.machine, machine_busy_seconds());
        let others_s = match (machine_s, server_cpu_s, generator_cpu_s) {
            (Some(m), s, Some(g)) => Some((m - s.unwrap_or(0.0) - g).max(0.0)),
            _ => None,
        };
        let pct = |v: Option<f64>| v.map(|v| 100.0 * v / wall_s.max(1e-9));
        CpuUsage {
            others_cpu_pct: pct(others_s),
            wall_s,
            server_cpu_s,
            server_cpu_pct: pct(server_cpu_s),
            generator_cpu_s,
            generator_cpu_pct: pct(generator_cpu_s),
        }
    }
}

/// Polls the RSS of `pid` every 250 ms until it has not moved in `direction` by more than 1%
/// (or 64 KiB) over one second, or `bound` passes; returns the last reading.
pub async fn settle_rss(pid: u32, growing: bool, bound: Duration) -> Option<u64> {
    let deadline = Instant::now() + bound;
    let mut history: Vec<u64> = vec![rss_bytes(pid)?];
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = rss_bytes(pid)?;
        history.push(now);
        if history.len() >= 5 {
            let then = history[history.len() - 5];
            let slack = (then / 100).max(64 * 1024);
            let moved = if growing {
                now > then + slack
            } else {
                now + slack < then
            };
            if !moved {
                return Some(now);
            }
        }
        if Instant::now() >= deadline {
            return Some(now);
        }
    }
}

/// A new latency histogram in nanoseconds (1 ns to 10 minutes, 3 significant digits).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("valid histogram bounds")
}

/// Latency histograms sharded so that many tasks can record without contending (and without
/// one histogram per connection, which would cost ~100 KiB each).
#[derive(Debug)]
pub struct SharedHistogram {
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl SharedHistogram {
    /// `shards` histograms (at least one).
    pub fn new(shards: usize) -> Self {
        Self {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(new_histogram()))
                .collect(),
        }
    }

    /// Records `nanos` into the shard for `key` (e.g. a connection index).
    pub fn record(&self, key: usize, nanos: u64) {
        let shard = &self.shards[key % self.shards.len()];
        let mut h = shard.lock().unwrap_or_else(|e| e.into_inner());
        h.saturating_record(nanos.max(1));
    }

    /// All shards merged.
    pub fn merged(&self) -> Histogram<u64> {
        let mut out = new_histogram();
        for shard in &self.shards {
            let h = shard.lock().unwrap_or_else(|e| e.into_inner());
            let _ = out.add(&*h);
        }
        out
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct Latency {
    /// Number of samples.
    pub count: u64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Maximum.
    pub max_us: f64,
}

impl Latency {
    /// Summarises a nanosecond histogram.
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Self {
            count: h.len(),
            mean_us: h.mean() / 1000.0,
            p50_us: us(h.value_at_quantile(0.50)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
        }
    }

    /// `p50 … / p99 … / p99.9 … / max …` for summaries.
    pub fn line(&self) -> String {
        format!(
            "p50 {} / p99 {} / p99.9 {} / max {}",
            fmt_us(self.p50_us),
            fmt_us(self.p99_us),
            fmt_us(self.p999_us),
            fmt_us(self.max_us)
        )
    }
}

/// Formats microseconds as µs or ms.
pub fn fmt_us(us: f64) -> String {
    if us >= 10_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

/// Formats a byte count as KiB/MiB.
pub fn fmt_bytes(b: u64) -> String {
    if b >= 10 * 1024 * 1024 {
        format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
    } else {
        format!("{:.1} KiB", b as f64 / 1024.0)
    }
}

/// Error counters by kind name.
#[derive(Debug, Default)]
pub struct ErrorCounts {
    counts: Mutex<BTreeMap<&'static str, u64>>,
}

impl ErrorCounts {
    /// Counts one error of `kind`.
    pub fn add(&self, kind: &'static str) {
        let mut m = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(kind).or_default() += 1;
    }

    /// A snapshot.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        let m = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        m.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }
}

/// Writes `value` as JSON to `path`, or to stdout when `path` is `None`.
///
/// # Errors
///
/// Fails when the file cannot be written.
pub fn write_json<T: Serialize>(value: &T, path: Option<&std::path::Path>) -> io::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(io::Error::other)?;
    match path {
        Some(p) => std::fs::write(p, text + "\n"),
        None => {
            use std::io::Write;
            let mut out = io::stdout().lock();
            writeln!(out, "{text}")?;
            out.flush()
        }
    }
}

/// Builds a text payload of `size` bytes (at least `head`), padding `head` with `x`.
pub fn padded(head: &str, size: usize) -> String {
    let mut s = String::with_capacity(size.max(head.len()));
    s.push_str(head);
    while s.len() < size {
        s.push('x');
    }
    s
}

/// Parses the leading decimal number of `bytes` up to the next `:`; returns it and the rest
/// after the colon.
pub fn parse_field(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut v: u64 = 0;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'0'..=b'9' => v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?,
            b':' if i > 0 => return Some((v, &bytes[i + 1..])),
            _ => return None,
        }
    }
    if bytes.is_empty() {
        None
    } else {
        Some((v, &[]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_parse() {
        assert_eq!(parse_field(b"12:34:x"), Some((12, &b"34:x"[..])));
        assert_eq!(parse_field(b"7"), Some((7, &b""[..])));
        assert_eq!(parse_field(b":1"), None);
        assert_eq!(parse_field(b"w:1"), None);
        assert_eq!(padded("ab", 5), "abxxx");
        assert_eq!(padded("abcdef", 3), "abcdef");
    }
}
