//! `melody-bench`: load generators (fanout, echo, idle, churn, topic-churn) and the floor server.
//!
//! Each load subcommand prints a human summary to stderr and one JSON object to stdout (or to
//! `--json FILE`).

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use melody_bench::{churn, common, echo, fanout, floor, idle, live, payload, report, topics};

/// mimalloc rather than the system allocator: it hands memory back to the system after a
/// wave of connections has closed (glibc keeps it for reuse), and the benchmarks
/// (`bench/compare.sh`) run every server with it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Load generator and reference server for melody.
#[derive(Debug, Parser)]
#[command(name = "melody-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// N subscribers, P publishers: every message must reach every subscriber.
    Fanout(FanoutArgs),
    /// C connections, each with D messages in flight, against an echo server.
    Echo(EchoArgs),
    /// Hold N idle connections and watch the server's RSS.
    Idle(IdleArgs),
    /// Connect/send/receive/close loops.
    Churn(ChurnArgs),
    /// Sessions joining and leaving topics, one big room, a mass disconnect (`rooms` example).
    TopicChurn(TopicChurnArgs),
    /// Live topics (`live` example): publish cost with history on or off, recovery after a
    /// crowd reconnects.
    Live(LiveArgs),
    /// The thinnest broadcast (or echo) server on tokio-websockets.
    FloorServer(FloorArgs),
    /// Write the markdown table of `docs/BENCHMARKS.md` from a directory of JSON results.
    Report(ReportArgs),
    /// Wait until the machine is quiet (other processes use little CPU), bounded in time.
    WaitQuiet(WaitQuietArgs),
}

#[derive(Debug, Args)]
struct WaitQuietArgs {
    /// Largest busy CPU, as % of one core over one second, that counts as quiet.
    #[arg(long, default_value_t = 25.0)]
    max_busy: f64,
    /// Give up (and go on) after this many seconds.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
}

#[derive(Debug, Args)]
struct ReportArgs {
    /// Directory holding `<server>-<scenario>.json` files.
    #[arg(long)]
    dir: PathBuf,
    /// Markdown file to write.
    #[arg(long)]
    out: PathBuf,
    /// The command that produced the results.
    #[arg(long, default_value = "bash bench/compare.sh")]
    command: String,
    /// When the results were produced.
    #[arg(long, default_value = "")]
    date: String,
    /// A note paragraph to include (repeatable).
    #[arg(long)]
    note: Vec<String>,
    /// Also draw the SVG charts (CPU per delivery, deliveries/s, latency, idle memory) into
    /// this directory.
    #[arg(long)]
    charts: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct Common {
    /// Server URL, e.g. ws://127.0.0.1:5000/ws.
    #[arg(long)]
    url: String,
    /// Write the JSON result to this file instead of stdout.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Tokio worker threads for the generator (1 = a current-thread runtime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

#[derive(Debug, Args)]
struct FanoutArgs {
    #[command(flatten)]
    common: Common,
    /// Subscriber connections.
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// Publisher connections.
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// Messages in total, split over the publishers.
    #[arg(long, default_value_t = 10_000)]
    messages: u64,
    /// Total messages per second over all publishers (0 = as fast as the window allows).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Message size in bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// What fills a message after its header: `x` padding, or JSON-like chat events (which
    /// compress like real traffic).
    #[arg(long, value_enum, default_value_t = payload::Payload::Padded)]
    payload: payload::Payload,
    /// Subscribers offer permessage-deflate as browsers do (a raw client that inflates what
    /// arrives compressed); publishers stay uncompressed.
    #[arg(long)]
    deflate: bool,
    /// Subscribers use the raw client of --deflate without offering compression: the
    /// uncompressed twin of a --deflate run, read by the same code.
    #[arg(long, conflicts_with = "deflate")]
    raw: bool,
    /// With --deflate: inflate every delivery, as a browser does, instead of looking a payload
    /// identical to one just inflated (the same broadcast) up in the generator's cache.
    #[arg(long, requires = "deflate")]
    inflate_every: bool,
    /// Messages a publisher may run ahead of the slowest subscriber (unlimited mode).
    #[arg(long, default_value_t = 64)]
    window: u64,
    /// Stop publishing after this many seconds even if not all messages were sent.
    #[arg(long)]
    duration: Option<f64>,
    /// Bound, in seconds, on the warm-up and drain phases.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// Handshakes in flight while connecting.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// The server's process id (for its CPU use).
    #[arg(long)]
    pid: Option<u32>,
}

#[derive(Debug, Args)]
struct EchoArgs {
    #[command(flatten)]
    common: Common,
    /// Connections.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Message size in bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Messages in flight per connection.
    #[arg(long, default_value_t = 1)]
    depth: usize,
    /// Seconds to measure.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// The server's process id (for its CPU use).
    #[arg(long)]
    pid: Option<u32>,
}

#[derive(Debug, Args)]
struct IdleArgs {
    #[command(flatten)]
    common: Common,
    /// Connections to hold.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Seconds to hold them.
    #[arg(long, default_value_t = 10.0)]
    hold: f64,
    /// The server's process id (for RSS readings).
    #[arg(long)]
    pid: Option<u32>,
    /// Handshakes in flight while connecting.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// Offer permessage-deflate as browsers do (raw clients): RSS per idle compressing session.
    #[arg(long)]
    deflate: bool,
}

#[derive(Debug, Args)]
struct ChurnArgs {
    #[command(flatten)]
    common: Common,
    /// Concurrent loops.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// The server's process id (for RSS readings).
    #[arg(long)]
    pid: Option<u32>,
}

#[derive(Debug, Args)]
struct TopicChurnArgs {
    #[command(flatten)]
    common: Common,
    /// Sessions.
    #[arg(long, default_value_t = 10_000)]
    sessions: usize,
    /// Distinct topics.
    #[arg(long, default_value_t = 1_000)]
    topics: usize,
    /// Topics each session holds while churning.
    #[arg(long, default_value_t = 4)]
    held: usize,
    /// Leave-and-join moves per batch.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Seconds of churn.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Handshakes in flight while connecting.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// Bound, in seconds, on each connect, batch and phase.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// The server's process id (for CPU and RSS).
    #[arg(long)]
    pid: Option<u32>,
}

#[derive(Debug, Args)]
struct LiveArgs {
    #[command(flatten)]
    common: Common,
    /// Subscriber connections.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Publications in the publish phase.
    #[arg(long, default_value_t = 20_000)]
    messages: u64,
    /// `say` requests the publisher may have unanswered.
    #[arg(long, default_value_t = 64)]
    window: u64,
    /// Publications made while the subscribers are away (0: no recovery phase).
    #[arg(long, default_value_t = 100)]
    missed: u64,
    /// The room.
    #[arg(long, default_value = "room:bench")]
    topic: String,
    /// Bound, in seconds, on each phase.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// The server's process id (for CPU).
    #[arg(long)]
    pid: Option<u32>,
}

#[derive(Debug, Args)]
struct FloorArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:5000", env = "ADDR")]
    addr: String,
    /// Broadcast every text message to everyone, or echo it back.
    #[arg(long, value_enum, default_value_t = floor::Mode::Broadcast)]
    mode: floor::Mode,
    /// Tokio worker threads (default: one per available CPU).
    #[arg(long)]
    threads: Option<usize>,
}

fn runtime(threads: usize) -> io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

fn emit<T: serde::Serialize>(
    summary: String,
    report: &T,
    json: Option<&std::path::Path>,
) -> io::Result<()> {
    eprintln!("{summary}");
    common::write_json(report, json)
}

fn main() -> io::Result<()> {
    let cli = Cli::parse();
    if let Err(e) = common::raise_nofile_limit() {
        eprintln!("melody-bench: could not raise the open-files limit: {e}");
    }
    match cli.command {
        Command::Fanout(a) => {
            let opts = fanout::FanoutOptions {
                url: a.common.url.clone(),
                subscribers: a.subscribers,
                publishers: a.publishers,
                messages: a.messages,
                rate: (a.rate > 0.0).then_some(a.rate),
                size: a.size,
                payload: a.payload,
                deflate: a.deflate,
                raw: a.raw,
                inflate_cache: !a.inflate_every,
                window: a.window,
                duration: a.duration.map(secs),
                connect_concurrency: a.connect_concurrency,
                timeout: secs(a.timeout),
                pid: a.pid,
            };
            let report = runtime(a.common.threads)?.block_on(fanout::run(&opts))?;
            emit(report.summary(), &report, a.common.json.as_deref())
        }
        Command::Echo(a) => {
            let mut opts = echo::EchoOptions::new(a.common.url.clone());
            opts.connections = a.connections;
            opts.size = a.size;
            opts.depth = a.depth;
            opts.duration = secs(a.duration);
            opts.pid = a.pid;
            let report = runtime(a.common.threads)?.block_on(echo::run(&opts))?;
            emit(report.summary(), &report, a.common.json.as_deref())
        }
        Command::Idle(a) => {
            let mut opts = idle::IdleOptions::new(a.common.url.clone());
            opts.connections = a.connections;
            opts.hold = secs(a.hold);
            opts.pid = a.pid;
            opts.connect_concurrency = a.connect_concurrency;
            opts.deflate = a.deflate;
            let report = runtime(a.common.threads)?.block_on(idle::run(&opts))?;
            emit(report.summary(), &report, a.common.json.as_deref())
        }
        Command::Churn(a) => {
            let mut opts = churn::ChurnOptions::new(a.common.url.clone());
            opts.concurrency = a.concurrency;
            opts.duration = secs(a.duration);
            opts.pid = a.pid;
            let report = runtime(a.common.threads)?.block_on(churn::run(&opts))?;
            emit(report.summary(), &report, a.common.json.as_deref())
        }
        Command::TopicChurn(a) => {
            let mut opts = topics::TopicChurnOptions::new(a.common.url.clone());
            opts.sessions = a.sessions;
            opts.topics = a.topics;
            opts.held = a.held;
            opts.batch = a.batch;
            opts.duration = secs(a.duration);
            opts.connect_concurrency = a.connect_concurrency;
            opts.timeout = secs(a.timeout);
            opts.pid = a.pid;
            let report = runtime(a.common.threads)?.block_on(topics::run(&opts))?;
            emit(report.summary(), &report, a.common.json.as_deref())
        }
        Command::Live(a) => {
            let mut opts = live::LiveOptions::new(a.common.url.clone());
            opts.subscribers = a.subscribers;
            opts.messages = a.messages;
            opts.window = a.window.max(1);
            opts.missed = a.missed;
            opts.topic = a.topic;
            opts.timeout = secs(a.timeout);
            opts.pid = a.pid;
            let report = runtime(a.common.threads)?.block_on(live::run(&opts))?;
            emit(report.summary(), &report, a.common.json.as_deref())
        }
        Command::WaitQuiet(a) => {
            let deadline = std::time::Instant::now() + secs(a.timeout);
            loop {
                let before = common::machine_busy_seconds();
                std::thread::sleep(Duration::from_secs(1));
                let busy = match (before, common::machine_busy_seconds()) {
                    (Some(b), Some(a)) => 100.0 * (a - b),
                    _ => 0.0,
                };
                if busy <= a.max_busy {
                    return Ok(());
                }
                if std::time::Instant::now() >= deadline {
                    eprintln!("melody-bench: machine still busy ({busy:.0}% of a core); going on");
                    return Ok(());
                }
                eprintln!("melody-bench: waiting for a quiet machine ({busy:.0}% of a core busy)");
            }
        }
        Command::Report(a) => {
            let header = report::Header {
                command: a.command,
                date: a.date,
                notes: a.note,
            };
            report::write(&a.dir, &header, &a.out)?;
            if let Some(charts) = &a.charts {
                for file in report::charts::write(&a.dir, charts)? {
                    eprintln!("melody-bench: drew {}", charts.join(file).display());
                }
            }
            Ok(())
        }
        Command::FloorServer(a) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if let Some(n) = a.threads {
                builder.worker_threads(n.max(1));
            }
            builder.enable_all().build()?.block_on(async move {
                let listener = tokio::net::TcpListener::bind(&a.addr).await?;
                let mut out = io::stdout().lock();
                writeln!(
                    out,
                    "floor-server: listening on ws://{}/",
                    listener.local_addr()?
                )?;
                out.flush()?;
                drop(out);
                floor::serve(listener, a.mode, None).await
            })
        }
    }
}
