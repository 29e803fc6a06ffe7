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
//! Stop one node and the other keeps chatting with its own pages; start it again and the two
//! meet again.
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
//! - The backplane, first match wins:
//!   1. `--nats URL` on the command line: NATS at `URL`;
//!   2. the `NATS_URL` environment variable: NATS at that URL;
//!   3. the `REDIS_URL` environment variable: Redis at that URL;
//!   4. otherwise Redis at `redis://127.0.0.1:6379/`.
//!
//! So a set `NATS_URL` wins over a set `REDIS_URL`. All nodes of one cluster must use the same
//! broker (and the backends' default namespace / subject prefix, `melody`).
//!
//! On start it prints `cluster: open http://<addr>/ (node <node id>, backplane <redis|nats> at
//! <url>)`; the node id is random per process.

use std::io::Write;

use axum::{Router, response::Html, routing::get};
use melody::Melody;
use melody_nats::{NatsBackplane, NatsOptions};
use melody_redis::{RedisBackplane, RedisOptions};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const DEFAULT_ADDR: &str = "127.0.0.1:5000";
const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/";
const USAGE: &str = "usage: cluster [--nats URL]   (env: ADDR, NATS_URL, REDIS_URL)";

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
    // A broker outage loses messages between nodes: say so instead of staying silent.
    melody.handle_backplane_error(|error| eprintln!("cluster: backplane: {error}"));
    melody.handle_message(|session, text| {
        // Every session of every node: the backplane carries it to the other nodes.
        let _ = session.melody().broadcast(text);
    });

    // Connect before listening, so a node that cannot reach its broker fails at once.
    let (kind, url, redis, nats) = match broker {
        Broker::Redis(url) => {
            let backplane = RedisBackplane::connect(&url, RedisOptions::default())
                .await
                .map_err(|err| format!("cannot connect to Redis at {}: {err}", redacted(&url)))?;
            melody.set_backplane(backplane.clone());
            ("redis", url, Some(backplane), None)
        }
        Broker::Nats(url) => {
            let backplane = NatsBackplane::connect(&url, NatsOptions::default())
                .await
                .map_err(|err| format!("cannot connect to NATS at {}: {err}", redacted(&url)))?;
            melody.set_backplane(backplane.clone());
            ("nats", url, None, Some(backplane))
        }
    };

    let app = Router::new()
        .route(
            "/",
            get(|| async { Html(include_str!("../../melody/examples/chat.html")) }),
        )
        .route("/ws", get(melody.handler()));

    let addr = std::env::var("ADDR").unwrap_or_else(|_| DEFAULT_ADDR.into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "cluster: open http://{}/ (node {}, backplane {kind} at {})",
        listener.local_addr()?,
        melody.node_id(),
        redacted(&url),
    );
    std::io::stdout().flush()?;

    tokio::select! {
        served = axum::serve(listener, app) => served?,
        _ = tokio::signal::ctrl_c() => {}
    }

    // Leave the cluster cleanly: the other nodes stop counting this one's sessions at once.
    let _ = melody.close();
    if let Some(redis) = redis {
        let _ = redis.close().await;
    }
    if let Some(nats) = nats {
        nats.close().await;
    }
    Ok(())
}
