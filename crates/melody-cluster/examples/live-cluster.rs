//! The `live` rooms example as a cluster: several processes sharing one Redis or one NATS, with
//! each room's history in the broker (`RedisHistory`, or `NatsHistory` on JetStream) and
//! presence events across nodes. A page that loses its connection to one node and comes back on
//! another recovers what it missed.
//!
//! Two nodes on one machine, with a local Redis (`redis-server` on its default port 6379):
//!
//! ```sh
//! # terminal 1
//! ADDR=127.0.0.1:5000 cargo run --release -p melody-cluster --example live-cluster
//! # terminal 2
//! ADDR=127.0.0.1:5001 cargo run --release -p melody-cluster --example live-cluster
//! ```
//!
//! Open <http://127.0.0.1:5000/> and <http://127.0.0.1:5001/>: both pages are in the same
//! rooms, see each other join and leave, and share each room's last messages. `REDIS_URL` names
//! another Redis; `NATS_URL` (e.g. `nats://127.0.0.1:4222`, a `nats-server -js`) makes the
//! nodes share NATS instead, with the histories in JetStream. `MESSAGE_RATE=0` lifts the
//! per-client rate limit (20 a second) for `melody-bench live`.

use std::time::Duration;

use axum::{Router, response::Html, routing::get};
use melody::{
    AuthRejection, Config, Keys, Melody,
    cluster::Cluster,
    live::{History, Live, LiveHub},
    router::{self, Reject},
};
use melody_nats::{NatsDriver, NatsHistory, NatsOptions};
use melody_redis::{RedisDriver, RedisHistory, RedisOptions};
use serde_json::json;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The longest message, in characters.
const MAX_TEXT: usize = 1000;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let nats = std::env::var("NATS_URL").ok();
    let url = nats.clone().unwrap_or_else(|| {
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
    });
    // 20 messages a second per client, bursts of 40; `MESSAGE_RATE=0` lifts the limit (for
    // `melody-bench live`).
    let rate = std::env::var("MESSAGE_RATE")
        .ok()
        .and_then(|rate| rate.parse().ok())
        .unwrap_or(20);
    let melody = Melody::with_config(
        Config::default()
            .message_rate_limit(rate, rate.saturating_mul(2))
            .max_message_size(16 * 1024)
            // A refused name is a close code the page can read (4401).
            .close_on_auth_refusal(true),
    );
    melody.on_auth(|request| {
        let name = request
            .uri
            .query()
            .unwrap_or_default()
            .split('&')
            .find_map(|pair| pair.strip_prefix("name="))
            .filter(|name| {
                (1..=32).contains(&name.len())
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            })
            .map(str::to_owned);
        async move {
            let name = name.ok_or_else(|| AuthRejection::unauthorized("a name is needed"))?;
            Ok(Keys::new().with("name", name))
        }
    });
    // Presence events travel as topic sends: the cluster carries them to the other nodes.
    let live = Live::new();
    let live = if nats.is_some() {
        Cluster::attach(
            &melody,
            NatsDriver::connect(&url, NatsOptions::default()).await?,
        )?;
        live.store(NatsHistory::connect(&url, NatsOptions::default()).await?)
    } else {
        Cluster::attach(
            &melody,
            RedisDriver::connect(&url, RedisOptions::default()).await?,
        )?;
        live.store(RedisHistory::connect(&url, RedisOptions::default()).await?)
    };
    // `{"type":"say","id":…,"data":{"room":…,"text":…}}`, as the page sends it.
    let say =
        router::Router::new().on_request("say", |session, say: serde_json::Value| async move {
            let (Some(room), Some(text)) = (say["room"].as_str(), say["text"].as_str()) else {
                return Err(Reject::new("malformed envelope").into());
            };
            if !session.is_in(room) {
                return Err(Reject::new("not in room").into());
            }
            if text.is_empty() || text.chars().count() > MAX_TEXT {
                return Err(Reject::new("invalid").into());
            }
            let live = LiveHub::of(&session.melody()).expect("live topics are plugged");
            let name = session.get::<String>("name").unwrap_or_default();
            let published = live
                .publish(room, json!({ "name": name, "text": text }))
                .await?;
            Ok(json!({ "offset": published.offset }))
        });
    melody.plug(
        live.presence("room:*")
            .history(
                "room:*",
                History::new().size(200).ttl(Duration::from_secs(30 * 60)),
            )
            .info(|session| json!({ "name": session.get::<String>("name") }))
            .router(say),
    );
    let app = Router::new()
        .route(
            "/",
            get(|| async { Html(include_str!("../../melody/examples/live.html")) }),
        )
        // The melody-client bundle the page imports.
        .route(
            "/melody-client.js",
            get(|| async {
                (
                    [(axum::http::header::CONTENT_TYPE, "text/javascript")],
                    include_str!("../../../clients/js/dist/melody-client.js"),
                )
            }),
        )
        .route("/ws", get(melody.handler()));
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:5000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "live: open http://{}/ ({} at {url})",
        listener.local_addr()?,
        if nats.is_some() { "nats" } else { "redis" }
    );
    melody::serve(listener, app).await?;
    Ok(())
}
