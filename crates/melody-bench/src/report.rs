//! Turns the JSON results of `bench/compare.sh` into the markdown of `docs/BENCHMARKS.md`.
//!
//! Results are files `<server>-<scenario>.json` in one directory, for the servers `melody`,
//! `floor` and `node`. The table's rows and their order are fixed, so that regenerated files
//! differ only in their figures.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use serde_json::Value;

/// The servers compared, in column order: file prefix and column title.
const SERVERS: [(&str, &str); 3] = [
    ("melody", "melody"),
    ("floor", "floor"),
    ("node", "node ws"),
];

/// Whether a larger or a smaller figure is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Better {
    Higher,
    Lower,
}

/// How a figure is printed.
#[derive(Debug, Clone, Copy)]
enum Unit {
    /// A count or rate, with thousands separators.
    Count,
    /// Microseconds, printed as µs or ms.
    Micros,
    /// Bytes, printed as KiB.
    KiB,
    /// Bytes, printed as MiB.
    MiB,
    /// A percentage.
    Percent,
    /// Seconds, printed as ms below one second.
    Seconds,
}

#[derive(Debug, Clone, Copy)]
struct Row {
    scenario: &'static str,
    label: &'static str,
    pointer: &'static str,
    unit: Unit,
    better: Better,
}

const fn row(
    scenario: &'static str,
    label: &'static str,
    pointer: &'static str,
    unit: Unit,
    better: Better,
) -> Row {
    Row {
        scenario,
        label,
        pointer,
        unit,
        better,
    }
}

/// Every row of the table.
const ROWS: &[Row] = &[
    row(
        "fanout-1k",
        "fan-out 1,000 subs × 64 B: deliveries/s",
        "/deliveries_per_sec",
        Unit::Count,
        Better::Higher,
    ),
    row(
        "fanout-1k",
        "fan-out 1,000 subs: latency p99 (saturated)",
        "/latency/p99_us",
        Unit::Micros,
        Better::Lower,
    ),
    row(
        "fanout-1k",
        "fan-out 1,000 subs: lost deliveries",
        "/lost",
        Unit::Count,
        Better::Lower,
    ),
    row(
        "fanout-1k",
        "fan-out 1,000 subs: server CPU",
        "/cpu/server_cpu_pct",
        Unit::Percent,
        Better::Lower,
    ),
    row(
        "fanout-10k",
        "fan-out 10,000 subs × 64 B: deliveries/s",
        "/deliveries_per_sec",
        Unit::Count,
        Better::Higher,
    ),
    row(
        "fanout-10k",
        "fan-out 10,000 subs: latency p99 (saturated)",
        "/latency/p99_us",
        Unit::Micros,
        Better::Lower,
    ),
    row(
        "fanout-10k",
        "fan-out 10,000 subs: lost deliveries",
        "/lost",
        Unit::Count,
        Better::Lower,
    ),
    row(
        "fanout-10k",
        "fan-out 10,000 subs: server CPU",
        "/cpu/server_cpu_pct",
        Unit::Percent,
        Better::Lower,
    ),
    row(
        "fanout-rate",
        "fan-out 10,000 subs @ 20 msg/s: latency p50",
        "/latency/p50_us",
        Unit::Micros,
        Better::Lower,
    ),
    row(
        "fanout-rate",
        "fan-out 10,000 subs @ 20 msg/s: latency p99",
        "/latency/p99_us",
        Unit::Micros,
        Better::Lower,
    ),
    row(
        "fanout-rate",
        "fan-out 10,000 subs @ 20 msg/s: latency p99.9",
        "/latency/p999_us",
        Unit::Micros,
        Better::Lower,
    ),
    row(
        "fanout-rate",
        "fan-out 10,000 subs @ 20 msg/s: latency max",
        "/latency/max_us",
        Unit::Micros,
        Better::Lower,
    ),
    row(
        "fanout-rate",
        "fan-out 10,000 subs @ 20 msg/s: lost deliveries",
        "/lost",
        Unit::Count,
        Better::Lower,
    ),
    row(
        "fanout-rate",
        "fan-out 10,000 subs @ 20 msg/s: server CPU",
        "/cpu/server_cpu_pct",
        Unit::Percent,
        Better::Lower,
    ),
    row(
        "echo-1x32",
        "echo 1 conn × depth 32: msgs/s",
        "/msgs_per_sec",
        Unit::Count,
        Better::Higher,
    ),
    row(
        "echo-1x32",
        "echo 1 conn × depth 32: latency p99",
        "/latency/p99_us",
        Unit::Micros,
        Better::Lower,
    ),
    row(
        "echo-50x4",
        "echo 50 conns × depth 4: msgs/s",
        "/msgs_per_sec",
        Unit::Count,
        Better::Higher,
    ),
    row(
        "echo-50x4",
        "echo 50 conns × depth 4: latency p99",
        "/latency/p99_us",
        Unit::Micros,
        Better::Lower,
    ),
    row(
        "idle",
        "idle: server RSS per connection",
        "/bytes_per_connection",
        Unit::KiB,
        Better::Lower,
    ),
    row(
        "idle",
        "idle: connections open at the end",
        "/open_at_end",
        Unit::Count,
        Better::Higher,
    ),
    row(
        "idle",
        "idle: server RSS after closing all",
        "/rss_after",
        Unit::MiB,
        Better::Lower,
    ),
    row(
        "churn",
        "churn 50 loops: connects/s",
        "/connects_per_sec",
        Unit::Count,
        Better::Higher,
    ),
    row(
        "churn",
        "churn: errors",
        "/error_count",
        Unit::Count,
        Better::Lower,
    ),
    row(
        "churn",
        "churn: server RSS max",
        "/rss_max",
        Unit::MiB,
        Better::Lower,
    ),
    row(
        "churn",
        "churn: server RSS end",
        "/rss_end",
        Unit::MiB,
        Better::Lower,
    ),
    row(
        "topic-churn",
        "topic churn 10k sessions × 1k topics: joins+leaves/s",
        "/ops_per_sec",
        Unit::Count,
        Better::Higher,
    ),
    row(
        "topic-churn",
        "topic churn: 10k sessions join one topic",
        "/join_all_s",
        Unit::Seconds,
        Better::Lower,
    ),
    row(
        "topic-churn",
        "topic churn: leave+join a 10k-member topic/s",
        "/lobby_ops_per_sec",
        Unit::Count,
        Better::Higher,
    ),
    row(
        "topic-churn",
        "topic churn: 10k members disconnect at once",
        "/disconnect_all_s",
        Unit::Seconds,
        Better::Lower,
    ),
    row(
        "topic-churn",
        "topic churn: server RSS, 10k in one topic",
        "/rss_lobby",
        Unit::MiB,
        Better::Lower,
    ),
    row(
        "topic-churn",
        "topic churn: errors",
        "/error_count",
        Unit::Count,
        Better::Lower,
    ),
];

/// What goes above the table.
#[derive(Debug, Clone, Default)]
pub struct Header {
    /// The command that produced the results.
    pub command: String,
    /// When it ran.
    pub date: String,
    /// Extra notes (one markdown paragraph each), e.g. the Node version or why it was skipped.
    pub notes: Vec<String>,
}

fn load(dir: &Path, server: &str, scenario: &str) -> Option<Value> {
    let text = std::fs::read_to_string(dir.join(format!("{server}-{scenario}.json"))).ok()?;
    serde_json::from_str(&text).ok()
}

fn with_commas(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn format_value(v: f64, unit: Unit) -> String {
    match unit {
        Unit::Count => with_commas(v.round() as u64),
        Unit::Micros if v >= 1000.0 => format!("{:.2} ms", v / 1000.0),
        Unit::Micros => format!("{v:.0} µs"),
        Unit::KiB => format!("{:.1} KiB", v / 1024.0),
        Unit::MiB => format!("{:.1} MiB", v / (1024.0 * 1024.0)),
        Unit::Percent => format!("{v:.0}%"),
        Unit::Seconds if v < 1.0 => format!("{:.0} ms", v * 1000.0),
        Unit::Seconds => format!("{v:.2} s"),
    }
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown", |(_, m)| m.trim())
        .to_owned();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".to_owned(), |k| k.trim().to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or_else(
            || "?".to_owned(),
            |kb| format!("{:.1}", kb / (1024.0 * 1024.0)),
        );
    format!("{cpus} CPUs ({model}), {mem_gib} GiB RAM, Linux {kernel}")
}

/// Renders the markdown for the results in `dir`.
pub fn render(dir: &Path, header: &Header) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Generated by `bench/compare.sh`; do not edit by hand. Rerun it to refresh every figure.\n"
    );
    let _ = writeln!(md, "- Machine: {}", machine());
    let _ = writeln!(md, "- Command: `{}`", header.command);
    let _ = writeln!(md, "- Date: {}", header.date);
    let _ = writeln!(
        md,
        "- Servers: **melody** = `crates/melody/examples/chat.rs` (broadcast) and `echo.rs` \
         (echo) and `rooms.rs` (topic churn; melody only), release build, default config (chat: 512-byte limit, 256-message queue per \
         session, drop on overflow); **floor** = `melody-bench floor-server` (tokio-websockets \
         with a 256-message queue per connection and nothing else); **node ws** = the `ws` npm \
         package, broadcast to `wss.clients` (unbounded buffering, no queue limit).\n"
    );
    for note in &header.notes {
        let _ = writeln!(md, "{note}\n");
    }
    let scenarios = [
        "fanout-1k",
        "fanout-10k",
        "fanout-rate",
        "echo-1x32",
        "echo-50x4",
        "idle",
        "churn",
        "topic-churn",
    ];
    let others: Vec<f64> = SERVERS
        .iter()
        .flat_map(|(server, _)| scenarios.iter().map(move |s| load(dir, server, s)))
        .flatten()
        .filter_map(|v| v.pointer("/cpu/others_cpu_pct")?.as_f64())
        .collect();
    let busy = others.iter().filter(|&&o| o > 50.0).count();
    if busy > 0 {
        let _ = writeln!(
            md,
            "**Warning: {busy} of {} runs competed with other processes using more than half a \
             core** (see \"Load generator CPU and other load\" below); those figures are not \
             reliable. Rerun on an otherwise idle machine.\n",
            others.len()
        );
    }
    let _ = writeln!(md, "| scenario | melody | floor | ratio | node ws |");
    let _ = writeln!(md, "|---|---:|---:|---:|---:|");
    for r in ROWS {
        let values: Vec<Option<f64>> = SERVERS
            .iter()
            .map(|(server, _)| {
                load(dir, server, r.scenario).and_then(|v| v.pointer(r.pointer)?.as_f64())
            })
            .collect();
        let cell = |v: Option<f64>| v.map_or_else(|| "—".to_owned(), |v| format_value(v, r.unit));
        let ratio = match (values[0], values[1]) {
            (Some(m), Some(f)) if f != 0.0 => format!("{:.2}", m / f),
            (Some(m), Some(_)) if m.abs() < f64::EPSILON => "=".to_owned(),
            _ => "—".to_owned(),
        };
        let arrow = match r.better {
            Better::Higher => "↑",
            Better::Lower => "↓",
        };
        let _ = writeln!(
            md,
            "| {} {arrow} | {} | {} | {ratio} | {} |",
            r.label,
            cell(values[0]),
            cell(values[1]),
            cell(values[2])
        );
    }
    let _ = writeln!(
        md,
        "\n↑ higher is better, ↓ lower is better; ratio = melody ÷ floor. \"—\": not measured \
         (the run failed or the server was skipped).\n"
    );
    let _ = writeln!(md, "## Load generator CPU and other load\n");
    let _ = writeln!(
        md,
        "Generator CPU / CPU of all other processes on the machine, each as % of one core, \
         during the measurement. The generator runs on one core: near 100% the figure above \
         is the generator's limit, not the server's. Where other processes used much CPU, the \
         run competed with them and its figures are unreliable.\n"
    );
    let _ = writeln!(md, "| scenario | melody | floor | node ws |");
    let _ = writeln!(md, "|---|---:|---:|---:|");
    for scenario in [
        "fanout-1k",
        "fanout-10k",
        "fanout-rate",
        "echo-1x32",
        "echo-50x4",
        "churn",
        "topic-churn",
    ] {
        let cells: Vec<String> = SERVERS
            .iter()
            .map(|(server, _)| {
                let v = load(dir, server, scenario);
                let pct = |p: &str| {
                    v.as_ref()
                        .and_then(|v| v.pointer(p)?.as_f64())
                        .map_or_else(|| "—".to_owned(), |v| format!("{v:.0}%"))
                };
                if v.is_none() {
                    return "—".to_owned();
                }
                format!(
                    "{} / {}",
                    pct("/cpu/generator_cpu_pct"),
                    pct("/cpu/others_cpu_pct")
                )
            })
            .collect();
        let _ = writeln!(
            md,
            "| {scenario} | {} | {} | {} |",
            cells[0], cells[1], cells[2]
        );
    }
    let _ = writeln!(md, "\n## Scenarios\n");
    let _ = writeln!(
        md,
        "- **fanout-1k / fanout-10k**: 1,000 / 10,000 subscribers and 1 publisher; each 64-byte \
         text message must reach every subscriber. The publisher runs at most 64 messages ahead \
         of the slowest subscriber, so server queues are not overrun; deliveries/s = deliveries \
         ÷ (last delivery − first send). Latency at saturation is mostly time spent in that \
         window.\n\
         - **fanout-rate**: 10,000 subscribers, 20 messages/s offered (200,000 deliveries/s); \
         end-to-end latency from send to receive.\n\
         - **echo-1x32 / echo-50x4**: connections each keeping 32 / 4 messages of 64 bytes in \
         flight against an echo server (melody's `echo` example, `floor-server --mode echo`).\n\
         - **idle**: connections held open (reading, so pings are answered); RSS per \
         connection = (largest RSS during the hold − RSS before) ÷ connections.\n\
         - **churn**: 50 loops of connect → send → receive own message → close handshake.\n\
         - **topic-churn** (`melody-bench topic-churn` against the `rooms` example): 10,000 \
         sessions each hold 4 of 1,000 topics and, in batches of 8, leave one and join another \
         (then `sync`, which checks the server's count); then all join one topic, leave and \
         rejoin it 8 times while it holds all 10,000, and disconnect at once. A topic that \
         scans its member list makes the last three quadratic.\n\
         \n\
         Raw JSON of every run: `target/bench-results/` after running the script."
    );
    md
}

/// Renders the results in `dir` into `out`.
///
/// # Errors
///
/// Fails when `out` cannot be written.
pub fn write(dir: &Path, header: &Header, out: &Path) -> io::Result<()> {
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(out, render(dir, header))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_format() {
        assert_eq!(with_commas(0), "0");
        assert_eq!(with_commas(999), "999");
        assert_eq!(with_commas(1000), "1,000");
        assert_eq!(with_commas(2_122_976), "2,122,976");
        assert_eq!(format_value(1500.0, Unit::Micros), "1.50 ms");
        assert_eq!(format_value(15.4, Unit::Micros), "15 µs");
        assert_eq!(format_value(2048.0, Unit::KiB), "2.0 KiB");
    }

    #[test]
    fn missing_results_render_as_dashes() {
        let dir = std::env::temp_dir().join(format!("melody-bench-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("melody-echo-1x32.json"),
            r#"{"msgs_per_sec": 2000.0}"#,
        )
        .unwrap();
        std::fs::write(
            dir.join("floor-echo-1x32.json"),
            r#"{"msgs_per_sec": 4000.0}"#,
        )
        .unwrap();
        let md = render(&dir, &Header::default());
        assert!(
            md.contains("| echo 1 conn × depth 32: msgs/s ↑ | 2,000 | 4,000 | 0.50 | — |"),
            "{md}"
        );
        assert!(md.contains("| idle: server RSS per connection ↓ | — | — | — | — |"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
