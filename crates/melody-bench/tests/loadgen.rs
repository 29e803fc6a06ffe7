//! The load generators count correctly against the floor server, honest and lossy.

use std::net::SocketAddr;
use std::time::Duration;

use melody_bench::{churn, echo, fanout, floor, idle};
use tokio::net::TcpListener;

/// Starts the floor server on an ephemeral port; returns its address.
async fn start_floor(mode: floor::Mode, drop_every: Option<u64>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(floor::serve(listener, mode, drop_every));
    addr
}

/// Runs `f` with a generous bound so a hang fails instead of blocking CI.
async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("load generator run timed out")
}

fn fanout_opts(addr: SocketAddr) -> fanout::FanoutOptions {
    let mut opts = fanout::FanoutOptions::new(format!("ws://{addr}/"));
    opts.subscribers = 20;
    opts.publishers = 2;
    opts.messages = 200;
    opts.timeout = Duration::from_secs(20);
    opts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_honest_server_loses_nothing() {
    let addr = start_floor(floor::Mode::Broadcast, None).await;
    let report = bounded(fanout::run(&fanout_opts(addr))).await.unwrap();
    assert_eq!(report.subscribers, 20, "{}", report.summary());
    assert!(
        report.warmup_complete && report.drain_complete,
        "{}",
        report.summary()
    );
    assert_eq!(report.messages_sent, 200);
    assert_eq!(report.expected_deliveries, 4000);
    assert_eq!(report.deliveries, 4000, "{}", report.summary());
    assert_eq!(report.lost, 0);
    assert_eq!(report.duplicated, 0);
    assert_eq!(report.latency.count, 4000);
    assert!(report.deliveries_per_sec > 0.0);
    assert!(report.latency.p50_us > 0.0 && report.latency.max_us >= report.latency.p99_us);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_dropping_server_shows_lost_deliveries() {
    let addr = start_floor(floor::Mode::Broadcast, Some(100)).await;
    let report = bounded(fanout::run(&fanout_opts(addr))).await.unwrap();
    assert_eq!(report.messages_sent, 200);
    assert_eq!(report.duplicated, 0);
    assert_eq!(report.lost + report.deliveries, report.expected_deliveries);
    // Every 100th enqueue is skipped: about 1% of the 4,000 deliveries.
    let share = report.lost as f64 / report.expected_deliveries as f64;
    assert!(
        (0.005..=0.02).contains(&share),
        "lost share {share}: {}",
        report.summary()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_at_a_fixed_rate_loses_nothing() {
    let addr = start_floor(floor::Mode::Broadcast, None).await;
    let mut opts = fanout_opts(addr);
    opts.publishers = 1;
    opts.messages = 50;
    opts.rate = Some(500.0);
    let report = bounded(fanout::run(&opts)).await.unwrap();
    assert_eq!(report.deliveries, 1000, "{}", report.summary());
    assert_eq!(report.lost, 0);
    // 50 messages at 500/s take about 0.1 s to send.
    assert!(report.publish_seconds >= 0.09, "{}", report.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_counts_every_round_trip() {
    let addr = start_floor(floor::Mode::Echo, None).await;
    let mut opts = echo::EchoOptions::new(format!("ws://{addr}/"));
    opts.connections = 4;
    opts.depth = 8;
    opts.duration = Duration::from_millis(500);
    let report = bounded(echo::run(&opts)).await.unwrap();
    assert_eq!(report.connections, 4);
    assert!(report.received_in_window > 0, "{}", report.summary());
    assert_eq!(report.sent, report.received, "{}", report.summary());
    assert_eq!(report.lost, 0);
    assert_eq!(report.disconnected, 0);
    assert_eq!(report.latency.count, report.received);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_cycles_without_errors() {
    let addr = start_floor(floor::Mode::Broadcast, None).await;
    let mut opts = churn::ChurnOptions::new(format!("ws://{addr}/"));
    opts.concurrency = 4;
    opts.duration = Duration::from_secs(1);
    opts.pid = Some(std::process::id());
    let report = bounded(churn::run(&opts)).await.unwrap();
    assert!(report.cycles > 0, "{}", report.summary());
    assert_eq!(report.error_count, 0, "{}", report.summary());
    assert!(report.rss_start.is_some() && report.rss_max.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_stay_open() {
    let addr = start_floor(floor::Mode::Broadcast, None).await;
    let mut opts = idle::IdleOptions::new(format!("ws://{addr}/"));
    opts.connections = 50;
    opts.hold = Duration::from_millis(300);
    opts.sample_every = Duration::from_millis(100);
    opts.pid = Some(std::process::id());
    let report = bounded(idle::run(&opts)).await.unwrap();
    assert_eq!(report.connected, 50, "{}", report.summary());
    assert_eq!(report.open_at_end, 50);
    assert!(report.bytes_per_connection.is_some());
    assert!(!report.rss_during.is_empty());
}

#[tokio::test]
async fn connection_refused_is_counted_not_fatal() {
    // Bind and drop a listener to find a port nobody listens on.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let mut opts = churn::ChurnOptions::new(format!("ws://{addr}/"));
    opts.concurrency = 1;
    opts.duration = Duration::from_millis(200);
    let report = bounded(churn::run(&opts)).await.unwrap();
    assert_eq!(report.cycles, 0);
    assert!(
        report.errors.get("connect_refused").copied().unwrap_or(0) > 0,
        "{:?}",
        report.errors
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deflate_declined_reads_uncompressed() {
    // The floor server does not answer the offer: the raw client reads plain frames.
    let addr = start_floor(floor::Mode::Broadcast, None).await;
    let mut opts = fanout_opts(addr);
    opts.deflate = true;
    opts.size = 1024;
    let report = bounded(fanout::run(&opts)).await.unwrap();
    assert_eq!(report.compressed_subscribers, 0, "{}", report.summary());
    assert_eq!(report.deliveries, 4000, "{}", report.summary());
    assert_eq!(report.lost, 0);
    assert_eq!(report.wire_bytes_per_delivery, 1024.0);
    assert_eq!(report.compression_ratio, Some(1.0));
}
