//! Live topics (docs/PROTOCOL.md) against melody's `live` example: what a publication costs
//! with history on or off, and how long a crowd of clients takes to come back and recover.
//!
//! 1. N subscribers and one publisher connect (`?name=bench`) and subscribe to one room; the
//!    presence events this causes (N² `join`s) are drained before anything is measured.
//! 2. **Publish**: the publisher sends `say` requests, at most `window` unanswered; every
//!    subscriber must receive every publication (`pub`), in order. Reports deliveries/s and
//!    the server's CPU per delivery, the figure to compare between history on and off.
//! 3. **Recover** (history on): every subscriber disconnects at once; the publisher publishes
//!    `missed` more; then all reconnect at once and subscribe `since` their last position.
//!    Reports the time from the first reconnect to the last subscribe reply, and checks that
//!    each got exactly the publications it missed with `recovered: true`.
//!
//! Subscribers read `pub` envelopes with a byte scan (type, then `"offset":`), not a JSON
//! parser, so that the generator's cost per delivery stays near the server's.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::stream::SplitStream;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use tokio_websockets::Message;

use crate::common::{Connector, CpuMeter, CpuUsage, Ws, connect_many};

/// Parameters of a live run.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// The `live` example's WebSocket URL with a name, e.g. `ws://127.0.0.1:5000/ws?name=bench`.
    pub url: String,
    /// Subscriber connections.
    pub subscribers: usize,
    /// Publications in the publish phase.
    pub messages: u64,
    /// `say` requests the publisher may have unanswered.
    pub window: u64,
    /// Publications made while the subscribers are away (0: no recovery phase).
    pub missed: u64,
    /// The room.
    pub topic: String,
    /// Bound on each phase.
    pub timeout: Duration,
    /// The server's process id, for its CPU use.
    pub pid: Option<u32>,
}

impl LiveOptions {
    /// Defaults: 1,000 subscribers, 20,000 publications, window 64, 100 missed.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            subscribers: 1000,
            messages: 20_000,
            window: 64,
            missed: 100,
            topic: "room:bench".to_owned(),
            timeout: Duration::from_secs(60),
            pid: None,
        }
    }
}

/// The result of a live run.
#[derive(Debug, Clone, Serialize)]
pub struct LiveReport {
    /// Always `"live"`.
    pub scenario: &'static str,
    /// Server URL.
    pub url: String,
    /// Subscribers that subscribed.
    pub subscribers: usize,
    /// Whether the room keeps history (its subscribe reply carries an epoch).
    pub history: bool,
    /// Publications made in the publish phase.
    pub messages: u64,
    /// Deliveries expected minus deliveries made, in the publish phase.
    pub lost: u64,
    /// Publications a subscriber received twice or out of order.
    pub out_of_order: u64,
    /// Deliveries per second in the publish phase.
    pub deliveries_per_sec: f64,
    /// CPU use in the publish phase.
    pub cpu: CpuUsage,
    /// Server CPU per delivery in the publish phase, in µs.
    pub server_cpu_us_per_delivery: Option<f64>,
    /// Recovery phase: from the first reconnect to the last subscribe reply, in seconds.
    pub recovery_s: Option<f64>,
    /// Recovery phase: subscribers told `recovered: true` with exactly what they missed.
    pub recovered: Option<usize>,
}

impl LiveReport {
    /// One line for people.
    pub fn summary(&self) -> String {
        let recovery = match (self.recovery_s, self.recovered) {
            (Some(s), Some(n)) => format!(
                "; {n} of {} recovered in {:.0} ms",
                self.subscribers,
                s * 1e3
            ),
            _ => String::new(),
        };
        format!(
            "live: {} subscribers, history {}: {:.0} deliveries/s, {} lost, {} out of order, server {:.3} µs/delivery{recovery}",
            self.subscribers,
            self.history,
            self.deliveries_per_sec,
            self.lost,
            self.out_of_order,
            self.server_cpu_us_per_delivery.unwrap_or(f64::NAN),
        )
    }
}

/// One subscriber's view: the last offset (or sequence) seen and how many it got.
#[derive(Default)]
struct Seen {
    last: AtomicU64,
    count: AtomicU64,
    out_of_order: AtomicU64,
}

/// Runs the scenario.
///
/// # Errors
///
/// Fails when the URL is invalid, a connection or subscription fails, or a phase times out.
pub async fn run(options: &LiveOptions) -> io::Result<LiveReport> {
    let connector = Arc::new(Connector::new(&options.url)?);
    let timeout = options.timeout;
    let fail = |what: String| io::Error::new(io::ErrorKind::TimedOut, what);

    let mut publisher = connector
        .connect(timeout)
        .await
        .map_err(|e| fail(format!("publisher: {}", e.name())))?;
    let first = subscribe(&mut publisher, &options.topic, None).await?;
    let history = first.get("epoch").is_some();
    let epoch = first["epoch"].clone();

    let mut sockets = Vec::with_capacity(options.subscribers);
    let errors = connect_many(&connector, options.subscribers, 64, timeout, |_, ws| {
        sockets.push(ws);
    })
    .await;
    if !errors.is_empty() {
        return Err(fail(format!("subscribers did not connect: {errors:?}")));
    }
    // Each subscriber reads from the moment it is subscribed: the presence events of the
    // crowd arriving (N² joins) are read and skipped, not left to fill its queue.
    let seen: Arc<Vec<Seen>> = Arc::new((0..sockets.len()).map(|_| Seen::default()).collect());
    let mut writers = Vec::new();
    let mut readers = Vec::new();
    for (index, mut ws) in sockets.into_iter().enumerate() {
        let reply = subscribe(&mut ws, &options.topic, None).await?;
        seen[index]
            .last
            .store(reply["offset"].as_u64().unwrap_or(0), Ordering::Relaxed);
        let (write, read) = ws.split();
        writers.push(write);
        readers.push(tokio::spawn(read_pubs(read, seen.clone(), index, history)));
    }

    // Publish phase.
    let meter = CpuMeter::start(options.pid);
    let started = Instant::now();
    let slowest = || {
        seen.iter()
            .map(|s| s.count.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    };
    publish(
        &mut publisher,
        &options.topic,
        options.messages,
        options.window,
        0,
        slowest,
    )
    .await?;
    let expected = options.messages;
    // Polled: a wake-up per delivery would cost the generator more than the server.
    let all_there = async {
        let mut tick = tokio::time::interval(Duration::from_millis(2));
        while !seen
            .iter()
            .all(|s| s.count.load(Ordering::Relaxed) >= expected)
        {
            tick.tick().await;
        }
    };
    let complete = tokio::time::timeout(timeout, all_there).await.is_ok();
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = meter.stop();
    let delivered: u64 = seen.iter().map(|s| s.count.load(Ordering::Relaxed)).sum();
    let lost = (expected * seen.len() as u64).saturating_sub(delivered);
    let out_of_order = seen
        .iter()
        .map(|s| s.out_of_order.load(Ordering::Relaxed))
        .sum();
    let deliveries_per_sec = delivered as f64 / elapsed.max(1e-9);
    let server_cpu_us_per_delivery = cpu
        .server_cpu_s
        .map(|s| 1e6 * s / (delivered.max(1) as f64));
    if !complete {
        eprintln!("live: not every publication arrived within {timeout:?}");
    }

    // Recovery phase.
    let (mut recovery_s, mut recovered) = (None, None);
    if history && options.missed > 0 {
        for reader in &readers {
            reader.abort();
        }
        for mut writer in writers {
            let _ = writer.close().await;
        }
        publish(
            &mut publisher,
            &options.topic,
            options.missed,
            options.window,
            options.messages,
            || u64::MAX,
        )
        .await?;
        let lasts: Vec<u64> = seen
            .iter()
            .map(|s| s.last.load(Ordering::Relaxed))
            .collect();
        let began = Instant::now();
        let tasks: Vec<_> = lasts
            .into_iter()
            .map(|last| {
                let (connector, topic, epoch) =
                    (connector.clone(), options.topic.clone(), epoch.clone());
                tokio::spawn(async move {
                    let mut ws = connector.connect(timeout).await.ok()?;
                    let since = json!({ "epoch": epoch, "offset": last });
                    let reply = subscribe(&mut ws, &topic, Some(since)).await.ok()?;
                    let got = reply["publications"].as_array().map_or(0, Vec::len) as u64;
                    let last_now = reply["offset"].as_u64()?;
                    Some(reply["recovered"] == true && got == last_now - last)
                })
            })
            .collect();
        let mut ok = 0;
        for task in tasks {
            if matches!(task.await, Ok(Some(true))) {
                ok += 1;
            }
        }
        recovery_s = Some(began.elapsed().as_secs_f64());
        recovered = Some(ok);
    }

    let report = LiveReport {
        scenario: "live",
        url: options.url.clone(),
        subscribers: seen.len(),
        history,
        messages: options.messages,
        lost,
        out_of_order,
        deliveries_per_sec,
        cpu,
        server_cpu_us_per_delivery,
        recovery_s,
        recovered,
    };
    Ok(report)
}

/// Sends `subscribe` and waits for its reply (skipping whatever comes before it).
async fn subscribe(ws: &mut Ws, topic: &str, since: Option<Value>) -> io::Result<Value> {
    let mut data = json!({ "topic": topic });
    if let Some(since) = since {
        data["since"] = since;
    }
    let request = json!({ "type": "subscribe", "id": 1, "data": data });
    ws.send(Message::text(request.to_string()))
        .await
        .map_err(io::Error::other)?;
    loop {
        let message = ws
            .next()
            .await
            .ok_or_else(|| io::Error::other("closed before the subscribe reply"))?
            .map_err(io::Error::other)?;
        let Some(text) = message.as_text() else {
            continue;
        };
        if !(text.starts_with("{\"type\":\"reply\",\"id\":1,")
            || text.starts_with("{\"type\":\"error\",\"id\":1,"))
        {
            continue;
        }
        let reply: Value = serde_json::from_str(text).map_err(io::Error::other)?;
        if reply["type"] != "reply" {
            return Err(io::Error::other(format!("subscribe refused: {reply}")));
        }
        return Ok(reply["data"].clone());
    }
}

/// Publishes `count` messages by `say` requests with at most `window` unanswered, and at most
/// `window` ahead of the slowest subscriber (`delivered()`: the fewest publications any has
/// received), so that no session's queue overflows; the publisher's own copies of the
/// publications are skipped.
async fn publish(
    ws: &mut Ws,
    topic: &str,
    count: u64,
    window: u64,
    first: u64,
    delivered: impl Fn() -> u64,
) -> io::Result<()> {
    let (mut sent, mut answered) = (0u64, 0u64);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    while answered < count {
        let mut fed = false;
        while sent < count && sent - answered < window && sent < delivered().saturating_add(window)
        {
            let id = first + sent + 2;
            let text = (first + sent).to_string();
            let request =
                json!({ "type": "say", "id": id, "data": { "room": topic, "text": text } });
            ws.feed(Message::text(request.to_string()))
                .await
                .map_err(io::Error::other)?;
            sent += 1;
            fed = true;
        }
        if fed {
            ws.flush().await.map_err(io::Error::other)?;
        }
        if answered == sent {
            // Waiting for the subscribers, not for the server.
            tick.tick().await;
            continue;
        }
        let message = ws
            .next()
            .await
            .ok_or_else(|| io::Error::other("publisher closed"))?
            .map_err(io::Error::other)?;
        if let Some(text) = message.as_text() {
            if text.starts_with("{\"type\":\"reply\"") {
                answered += 1;
            } else if text.starts_with("{\"type\":\"error\"") {
                return Err(io::Error::other(format!("say refused: {text}")));
            }
        }
    }
    Ok(())
}

/// Counts the `pub` envelopes a subscriber receives, checking their order by offset (history
/// on) or by the publisher's sequence in the text (history off).
async fn read_pubs(mut read: SplitStream<Ws>, seen: Arc<Vec<Seen>>, index: usize, history: bool) {
    let me = &seen[index];
    let mut last = if history {
        me.last.load(Ordering::Relaxed)
    } else {
        0
    };
    let mut first = true;
    while let Some(Ok(message)) = read.next().await {
        let Some(text) = message.as_text() else {
            continue;
        };
        if !text.starts_with("{\"type\":\"pub\"") {
            continue;
        }
        let key = if history {
            "\"offset\":"
        } else {
            "\"text\":\""
        };
        let Some(at) = text.find(key) else {
            continue;
        };
        let digits: String = text[at + key.len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let Ok(value) = digits.parse::<u64>() else {
            continue;
        };
        let in_order = if history || !first {
            value == last + 1
        } else {
            true
        };
        if !in_order {
            me.out_of_order.fetch_add(1, Ordering::Relaxed);
        }
        first = false;
        last = value;
        me.last.store(value, Ordering::Relaxed);
        me.count.fetch_add(1, Ordering::Relaxed);
    }
}
