//! The chat example as a cluster: run it as several processes that share one Redis (or one
//! NATS server) and every message typed in a page on any node appears in every page on every
//! node.
//!
//! Two nodes on one machine, with a local Redis (`redis-server` on its default port 6379):
//!
//! ```sh
//! # terminal 1
//! ADDR=127.0.0.1:5000 cargo run --release -p melody-cluster --example cluster
//! # terminal 2
//! ADDR=127.0.0.1:5001 cargo run --release -p melody-cluster --example cluster
//! ```
//!
//! Open <http://127.0.0.1:5000/> in one tab and <http://127.0.0.1:5001/> in another: what you
//! type in either shows in both, although each page's socket is held by a different process.
//! <http://127.0.0.1:5000/presence> counts the nodes and sessions of the whole cluster. Stop one
//! node and the other keeps chatting with its own pages; start it again and the two meet again.
//!
//! Over NATS instead (`nats-server` on its default port 4222), in each terminal:
//!
//! ```sh
//! ADDR=127.0.0.1:5000 cargo run --release -p melody-cluster --example cluster -- --nats nats://127.0.0.1:4222
//! ```
//!
//! # Configuration
//!
//! - `ADDR`: where to listen (default `127.0.0.1:5000`; port `0` picks a free one).
//! - The broker, first match wins:
//!   1. `--nats URL` on the command line: NATS at `URL`;
//!   2. the `NATS_URL` environment variable: NATS at that URL;
//!   3. the `REDIS_URL` environment variable: Redis at that URL;
//!   4. otherwise Redis at `redis://127.0.0.1:6379/`.
//!
//! So a set `NATS_URL` wins over a set `REDIS_URL`. All nodes of one cluster must use the same
//! broker (and the drivers' default namespace / subject prefix, `melody`).
//!
//! On start it prints `cluster: open http://<addr>/ (node <node id>, <redis|nats> at <url>)`;
//! the node id is random per process. Ctrl-C shuts the node down gracefully and takes it out of
//! the cluster's presence at once.
//!
//! # Routes
//!
//! - `/`: the chat page (the same page as the single-process `chat` example);
//! - `/ws`: its WebSocket; every text message goes to every session of every node;
//! - `/presence`: JSON, the cluster as this node sees it:
//!   `{"node":"…","nodes":2,"sessions":3,"here":1,"stats":{…}}` — `nodes` and `sessions` across
//!   the cluster (eventually consistent), `here` this node's sessions, `stats` the cluster's
//!   counters (frames sent, received, dropped; errors; reconnects). 503 while the broker is out
//!   of reach.

use std::{io::Write, time::Duration};

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::{Html, IntoResponse, Response},
    routing::get,
};
use melody::{Melody, cluster::Cluster};
use melody_nats::{NatsDriver, NatsOptions};
use melody_redis::{RedisDriver, RedisOptions};

/// mimalloc, as in the single-process `chat` example, so that the two compare like for like.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const DEFAULT_ADDR: &str = "127.0.0.1:5000";
const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/";
const USAGE: &str = "usage: cluster [--nats URL]   (env: ADDR, NATS_URL, REDIS_URL)";

/// How long a shutdown waits for the pages' sockets to close cleanly.
const DRAIN: Duration = Duration::from_secs(5);

/// Which broker the nodes share.
enum Broker {
    Redis(String),
    Nats(String),
}

impl Broker {
    /// `--nats URL`, then `NATS_URL`, then `REDIS_URL`, then the local Redis.
    fn from_args_and_env() -> Result<Self, BoxError> {
        let mut args = std::env::args().skip(1);
        let mut nats_flag = None;
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--nats" => match args.next() {
                    Some(url) => nats_flag = Some(url),
                    None => return Err(format!("--nats needs a URL\n{USAGE}").into()),
                },
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                _ => match arg.strip_prefix("--nats=") {
                    Some(url) => nats_flag = Some(url.to_owned()),
                    None => return Err(format!("unexpected argument {arg:?}\n{USAGE}").into()),
                },
            }
        }
        let env = |name| {
            std::env::var(name)
                .ok()
                .filter(|url: &String| !url.is_empty())
        };
        Ok(match nats_flag.or_else(|| env("NATS_URL")) {
            Some(url) => Self::Nats(url),
            None => Self::Redis(env("REDIS_URL").unwrap_or_else(|| DEFAULT_REDIS_URL.to_owned())),
        })
    }
}

/// A URL for printing: a password in it is replaced by `***`.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("cluster: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), BoxError> {
    let broker = Broker::from_args_and_env()?;

    let melody = Melody::new();
    melody.on_text(|session, text| {
        // Every session of every node: the cluster carries it to the other nodes.
        let _ = session.melody().all().send(text);
    });

    // Connect before listening, so that a node that cannot reach its broker fails at once
    // instead of chatting with nobody. `connect` returns once the node is subscribed.
    let (cluster, kind, url, redis) = match broker {
        Broker::Redis(url) => {
            let driver = RedisDriver::connect(&url, RedisOptions::default())
                .await
                .map_err(|err| format!("cannot connect to Redis at {}: {err}", redacted(&url)))?;
            // A handle of our own, to leave cleanly at shutdown.
            let cluster = Cluster::attach(&melody, driver.clone())?;
            (cluster, "redis", url, Some(driver))
        }
        Broker::Nats(url) => {
            let driver = NatsDriver::connect(&url, NatsOptions::default())
                .await
                .map_err(|err| format!("cannot connect to NATS at {}: {err}", redacted(&url)))?;
            (Cluster::attach(&melody, driver)?, "nats", url, None)
        }
    };
    // A broker outage loses messages between nodes: say so instead of staying silent.
    cluster.on_error(|error| eprintln!("cluster: {error}"));

    let app = Router::new()
        .route(
            "/",
            get(|| async { Html(include_str!("../../melody/examples/chat.html")) }),
        )
        .route("/ws", get(melody.handler()))
        .route("/presence", get(presence).with_state(melody.clone()));

    let addr = std::env::var("ADDR").unwrap_or_else(|_| DEFAULT_ADDR.into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "cluster: open http://{}/ (node {}, {kind} at {})",
        listener.local_addr()?,
        cluster.node(),
        redacted(&url),
    );
    std::io::stdout().flush()?;

    // `melody::serve`: axum's router with header timeouts, a cap on unfinished handshakes and
    // TCP_NODELAY. On Ctrl-C: close every page's socket (1001), wait for them, then stop.
    let hub = melody.clone();
    melody::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = tokio::signal::ctrl_c().await;
            hub.shutdown(DRAIN).await;
        })
        .await?;

    // The closed hub has stopped its driver. Redis: delete this node's presence snapshot, so the
    // other nodes stop counting it at once instead of after the snapshot's ttl. (A NATS node
    // said goodbye when its hub closed.)
    if let Some(redis) = redis {
        if let Err(err) = redis.close().await {
            eprintln!("cluster: leaving Redis: {err}");
        }
    }
    Ok(())
}

/// `GET /presence`: the cluster's nodes and sessions as this node sees them.
async fn presence(State(melody): State<Melody>) -> Response {
    let Some(cluster) = Cluster::of(&melody) else {
        return (StatusCode::SERVICE_UNAVAILABLE, "no cluster").into_response();
    };
    match cluster.presence().await {
        Ok(nodes) => Json(serde_json::json!({
            "node": cluster.node().to_string(),
            "nodes": nodes.len(),
            "sessions": nodes.iter().map(|node| node.sessions).sum::<usize>(),
            "here": melody.all().len(),
            "stats": cluster.stats(),
        }))
        .into_response(),
        Err(err) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("presence unavailable: {err}"),
        )
            .into_response(),
    }
}
