//! Topic churn: N sessions move between T topics, then all join one big room and all leave
//! at once; against the `rooms` example's line protocol (`join`, `leave`, `sync`, `count`,
//! `sessions`).
//!
//! Three phases, each measured on its own:
//! 1. **churn**: every session holds `held` topics; in batches it leaves one and joins a
//!    random other, then sends `sync` and checks the server's count of its topics. Reports
//!    join and leave operations per second over all sessions, and the batch round trip.
//! 2. **big room**: every session joins one topic (`lobby`), so it holds all N; reports the
//!    time until every join is acknowledged, and checks `count lobby` = N. Then every session
//!    leaves and rejoins the full lobby `batch` times; reports those operations per second.
//! 3. **mass disconnect**: every session closes at once; reports the time until the server
//!    counts no session but the observer, and checks that `lobby` is empty.
//!
//! Joining or leaving a topic that scans its member list makes phases 2 and 3 quadratic in N;
//! these figures are where that shows (at 10,000 members one scan is cheap next to a
//! WebSocket message, so the full-lobby moves, which do nothing else, show it most).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio_websockets::Message;

use crate::common::{
    Connector, CpuMeter, CpuUsage, ErrorCounts, Latency, SharedHistogram, Ws, connect_many,
    fmt_bytes, rss_bytes,
};

/// The topic every session joins in the big-room phase.
const LOBBY: &str = "lobby";

/// Parameters of a topic-churn run.
#[derive(Debug, Clone)]
pub struct TopicChurnOptions {
    /// Server URL (the `rooms` example).
    pub url: String,
    /// Sessions.
    pub sessions: usize,
    /// Distinct topics the sessions move between.
    pub topics: usize,
    /// Topics each session holds during the churn phase.
    pub held: usize,
    /// Leave-and-join moves per batch (each is two operations).
    pub batch: usize,
    /// Length of the churn phase.
    pub duration: Duration,
    /// Handshakes in flight while connecting.
    pub connect_concurrency: usize,
    /// Bound on each wait (a connect, a batch, a phase).
    pub timeout: Duration,
    /// The server's process id, for CPU and RSS readings.
    pub pid: Option<u32>,
}

impl TopicChurnOptions {
    /// Defaults for `url`: 10,000 sessions over 1,000 topics, 4 held each, batches of 8
    /// moves, 10 s of churn.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            sessions: 10_000,
            topics: 1_000,
            held: 4,
            batch: 8,
            duration: Duration::from_secs(10),
            connect_concurrency: 64,
            timeout: Duration::from_secs(60),
            pid: None,
        }
    }
}

/// The result of a topic-churn run.
#[derive(Debug, Clone, Serialize)]
pub struct TopicChurnReport {
    /// Always `"topic-churn"`.
    pub scenario: &'static str,
    /// Server URL.
    pub url: String,
    /// Server process id.
    pub pid: Option<u32>,
    /// Sessions connected.
    pub sessions: usize,
    /// Distinct topics.
    pub topics: usize,
    /// Topics held per session while churning.
    pub held: usize,
    /// Seconds the churn phase ran.
    pub churn_s: f64,
    /// Joins and leaves acknowledged in the churn phase.
    pub churn_ops: u64,
    /// `churn_ops / churn_s`.
    pub ops_per_sec: f64,
    /// Round trip of one batch (its moves and the `sync` reply).
    pub batch_latency: Latency,
    /// Seconds until all N sessions had joined the lobby.
    pub join_all_s: f64,
    /// Seconds until every session had left and rejoined the full lobby `batch` times.
    pub lobby_churn_s: f64,
    /// Leaves and joins of the full lobby per second.
    pub lobby_ops_per_sec: f64,
    /// Seconds from closing all N sessions until the server counted none.
    pub disconnect_all_s: f64,
    /// Errors by kind (a wrong count is an error too).
    pub errors: std::collections::BTreeMap<String, u64>,
    /// Total errors.
    pub error_count: u64,
    /// Server CPU during the churn phase.
    pub cpu: CpuUsage,
    /// Server RSS with every session in the lobby.
    pub rss_lobby: Option<u64>,
}

impl TopicChurnReport {
    /// A human-readable summary.
    pub fn summary(&self) -> String {
        format!(
            "topic-churn {url}: {n} sessions over {t} topics ({h} held each)\n  \
             churn: {ops:.0} joins+leaves/s ({total} in {d:.1}s), batch {lat}\n  \
             {cpu}\n  all join one topic: {join:.3}s; in and out of it while full: \
             {lobby:.0} ops/s ({lobby_s:.3}s); all disconnect: {leave:.3}s\n  \
             RSS with all in the lobby {rss}\n  {errs} errors {errors:?}",
            url = self.url,
            n = self.sessions,
            t = self.topics,
            h = self.held,
            ops = self.ops_per_sec,
            total = self.churn_ops,
            d = self.churn_s,
            lat = self.batch_latency.line(),
            cpu = self.cpu.line(),
            join = self.join_all_s,
            lobby = self.lobby_ops_per_sec,
            lobby_s = self.lobby_churn_s,
            leave = self.disconnect_all_s,
            rss = self.rss_lobby.map_or_else(|| "n/a".to_owned(), fmt_bytes),
            errs = self.error_count,
            errors = self.errors,
        )
    }
}

/// One client session and its share of the work.
struct Client {
    ws: Ws,
    held: Vec<usize>,
    rng: u64,
    syncs: u64,
}

impl Client {
    fn next_topic(&mut self, topics: usize) -> usize {
        // xorshift64: cheap, and reproducible per session index.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng % topics as u64) as usize
    }

    /// Sends `commands` then a `sync`, and waits for the reply; returns the server's count of
    /// this session's topics.
    async fn round_trip(&mut self, commands: &[String]) -> Result<usize, &'static str> {
        self.syncs += 1;
        let token = self.syncs.to_string();
        for command in commands {
            self.ws
                .feed(Message::text(command.clone()))
                .await
                .map_err(|_| "send")?;
        }
        self.ws
            .send(Message::text(format!("sync {token}")))
            .await
            .map_err(|_| "send")?;
        while let Some(frame) = self.ws.next().await {
            let frame = frame.map_err(|_| "unexpected_close")?;
            let Some(text) = frame.as_text() else {
                continue;
            };
            if let Some(rest) = text.strip_prefix("sync ") {
                let (got, count) = rest.split_once(' ').ok_or("bad_reply")?;
                if got == token {
                    return count.parse().map_err(|_| "bad_reply");
                }
            } else if text.starts_with("error") {
                return Err("refused");
            }
        }
        Err("unexpected_close")
    }
}

/// Asks the server one question on the observer connection and returns the number in the
/// reply (`count ROOM N`, `sessions N`).
async fn ask(observer: &mut Ws, question: &str, timeout: Duration) -> io::Result<usize> {
    let exchange = async {
        observer
            .send(Message::text(question.to_owned()))
            .await
            .map_err(|_| "observer could not send")?;
        while let Some(frame) = observer.next().await {
            let frame = frame.map_err(|_| "observer connection closed")?;
            if let Some(text) = frame.as_text() {
                return text
                    .rsplit(' ')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .ok_or("reply without a number");
            }
        }
        Err("observer connection closed")
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(n)) => Ok(n),
        Ok(Err(what)) => Err(io::Error::other(format!("{question}: {what}"))),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{question}: no reply in time"),
        )),
    }
}

/// Runs the three phases.
///
/// # Errors
///
/// Fails when the URL is invalid, the observer cannot connect, or a phase does not finish
/// within the timeout.
pub async fn run(opts: &TopicChurnOptions) -> io::Result<TopicChurnReport> {
    let timed_out = |what: &str| io::Error::new(io::ErrorKind::TimedOut, what.to_owned());
    let connector = Arc::new(Connector::new(&opts.url)?);
    let errors = Arc::new(ErrorCounts::default());
    let mut observer = connector
        .connect(opts.timeout)
        .await
        .map_err(|kind| io::Error::other(format!("observer: {}", kind.name())))?;

    let mut clients = Vec::with_capacity(opts.sessions);
    let connect_errors = connect_many(
        &connector,
        opts.sessions,
        opts.connect_concurrency,
        opts.timeout,
        |i, ws| {
            clients.push(Client {
                ws,
                held: Vec::new(),
                rng: 0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1),
                syncs: 0,
            });
        },
    )
    .await;
    let sessions = clients.len();

    // Phase 1: churn.
    let ops = Arc::new(AtomicU64::new(0));
    let hist = Arc::new(SharedHistogram::new(8));
    let cpu = CpuMeter::start(opts.pid);
    let started = Instant::now();
    let end = started + opts.duration;
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(k, client)| {
            let (ops, hist, errors, opts) =
                (ops.clone(), hist.clone(), errors.clone(), opts.clone());
            tokio::spawn(churn(k, client, end, opts, ops, hist, errors))
        })
        .collect();
    let mut clients = Vec::with_capacity(sessions);
    for task in tasks {
        if let Ok(Some(client)) = task.await {
            clients.push(client);
        }
    }
    let churn_s = started.elapsed().as_secs_f64().max(1e-9);
    let cpu = cpu.stop();
    let churn_ops = ops.load(Ordering::SeqCst);

    // Phase 2: everyone joins the lobby, then moves in and out of it while it is full.
    let join = [format!("join {LOBBY}")];
    let (clients, join_all_s) = everyone(clients, &join, 1, &errors).await;
    if ask(&mut observer, &format!("count {LOBBY}"), opts.timeout).await? != clients.len() {
        errors.add("wrong_lobby_count");
    }
    let moves: Vec<String> = (0..opts.batch)
        .flat_map(|_| [format!("leave {LOBBY}"), format!("join {LOBBY}")])
        .collect();
    let (clients, lobby_churn_s) = everyone(clients, &moves, 1, &errors).await;
    let lobby_ops = (clients.len() * moves.len()) as u64;
    let rss_lobby = opts.pid.and_then(rss_bytes);

    // Phase 3: everyone closes at once; the observer counts until only it is left.
    let started = Instant::now();
    let closing: Vec<_> = clients
        .into_iter()
        .map(|mut client| tokio::spawn(async move { client.ws.close().await }))
        .collect();
    for task in closing {
        if !matches!(task.await, Ok(Ok(()))) {
            errors.add("close");
        }
    }
    let deadline = started + opts.timeout;
    loop {
        if ask(&mut observer, "sessions", opts.timeout).await? <= 1 {
            break;
        }
        if Instant::now() > deadline {
            return Err(timed_out("sessions did not all disconnect in time"));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let disconnect_all_s = started.elapsed().as_secs_f64();
    if ask(&mut observer, &format!("count {LOBBY}"), opts.timeout).await? != 0 {
        errors.add("lobby_not_empty");
    }

    let mut errors = errors.snapshot();
    for (kind, count) in connect_errors {
        *errors.entry(kind).or_default() += count;
    }
    Ok(TopicChurnReport {
        scenario: "topic-churn",
        url: opts.url.clone(),
        pid: opts.pid,
        sessions,
        topics: opts.topics,
        held: opts.held,
        churn_s,
        churn_ops,
        ops_per_sec: churn_ops as f64 / churn_s,
        batch_latency: Latency::from_histogram(&hist.merged()),
        join_all_s,
        lobby_churn_s,
        lobby_ops_per_sec: lobby_ops as f64 / lobby_churn_s.max(1e-9),
        disconnect_all_s,
        error_count: errors.values().sum(),
        errors,
        cpu,
        rss_lobby,
    })
}

/// Every client sends `commands` and a `sync` at once; returns the clients and the seconds
/// until all replies arrived. A reply counting other than `added` more topics than the client
/// holds is an error.
async fn everyone(
    clients: Vec<Client>,
    commands: &[String],
    added: usize,
    errors: &Arc<ErrorCounts>,
) -> (Vec<Client>, f64) {
    let started = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            let (commands, errors) = (commands.to_vec(), errors.clone());
            tokio::spawn(async move {
                let expected = client.held.len() + added;
                match client.round_trip(&commands).await {
                    Ok(count) if count == expected => {}
                    Ok(_) => errors.add("wrong_count"),
                    Err(kind) => errors.add(kind),
                }
                client
            })
        })
        .collect();
    let mut clients = Vec::with_capacity(tasks.len());
    for task in tasks {
        if let Ok(client) = task.await {
            clients.push(client);
        }
    }
    (clients, started.elapsed().as_secs_f64())
}

/// One session's churn: takes up `held` topics, then moves between topics in batches until
/// `end`, checking the server's count after each. Returns the client unless it failed.
async fn churn(
    k: usize,
    mut client: Client,
    end: Instant,
    opts: TopicChurnOptions,
    ops: Arc<AtomicU64>,
    hist: Arc<SharedHistogram>,
    errors: Arc<ErrorCounts>,
) -> Option<Client> {
    let mut commands = Vec::with_capacity(opts.held.max(2 * opts.batch));
    while client.held.len() < opts.held.min(opts.topics) {
        let topic = client.next_topic(opts.topics);
        if !client.held.contains(&topic) {
            client.held.push(topic);
            commands.push(format!("join t{topic}"));
        }
    }
    let mut first = true;
    loop {
        let began = Instant::now();
        let result = tokio::time::timeout(opts.timeout, client.round_trip(&commands)).await;
        match result {
            Ok(Ok(count)) if count == client.held.len() => {
                if !first {
                    ops.fetch_add(commands.len() as u64, Ordering::Relaxed);
                    hist.record(k, began.elapsed().as_nanos() as u64);
                }
            }
            Ok(Ok(_)) => errors.add("wrong_count"),
            Ok(Err(kind)) => {
                errors.add(kind);
                return None;
            }
            Err(_) => {
                errors.add("timeout");
                return None;
            }
        }
        first = false;
        if Instant::now() >= end || client.held.is_empty() {
            return Some(client);
        }
        commands.clear();
        for _ in 0..opts.batch {
            let slot = client.next_topic(client.held.len());
            let topic = client.next_topic(opts.topics);
            if client.held.contains(&topic) {
                continue;
            }
            commands.push(format!("leave t{}", client.held[slot]));
            commands.push(format!("join t{topic}"));
            client.held[slot] = topic;
        }
    }
}
