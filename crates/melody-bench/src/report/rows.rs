//! The rows of the main table (scenario, label, JSON pointer, unit, direction) and the types
//! that describe a figure.

/// Whether a larger or a smaller figure is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Better {
    Higher,
    Lower,
}

/// How a figure is printed.
#[derive(Debug, Clone, Copy)]
pub(super) enum Unit {
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
    /// Microseconds below one, printed with three decimals (CPU time per delivery).
    MicrosFine,
    /// Bytes, printed as a count of bytes.
    Bytes,
}

/// One row: which result file, what to call it, where the figure is, how to print it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Row {
    pub(super) scenario: &'static str,
    pub(super) label: &'static str,
    pub(super) pointer: &'static str,
    pub(super) unit: Unit,
    pub(super) better: Better,
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
pub(super) const ROWS: &[Row] = &[
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
        "fanout-1k",
        "fan-out 1,000 subs: server CPU per delivery",
        "/server_cpu_us_per_delivery",
        Unit::MicrosFine,
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
        "fanout-10k",
        "fan-out 10,000 subs: server CPU per delivery",
        "/server_cpu_us_per_delivery",
        Unit::MicrosFine,
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
    row(
        "live-plain",
        "live topic 1,000 subs, presence, no history: server CPU per delivery",
        "/server_cpu_us_per_delivery",
        Unit::MicrosFine,
        Better::Lower,
    ),
    row(
        "live-history",
        "live topic 1,000 subs, presence and history: server CPU per delivery",
        "/server_cpu_us_per_delivery",
        Unit::MicrosFine,
        Better::Lower,
    ),
    row(
        "live-history",
        "live topic: 1,000 clients reconnect at once, recover 100 each",
        "/recovery_s",
        Unit::Seconds,
        Better::Lower,
    ),
    row(
        "live-history",
        "live topic: clients that recovered exactly",
        "/recovered",
        Unit::Count,
        Better::Higher,
    ),
    row(
        "live-history",
        "live topic: lost deliveries",
        "/lost",
        Unit::Count,
        Better::Lower,
    ),
];
