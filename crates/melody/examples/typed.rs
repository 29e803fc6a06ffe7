//! A Velocity-style chat on typed JSON envelopes: `welcome` with the client id on connect,
//! `join`/`leave` rooms, `chat` to a room, direct messages by `target`, an auth token in the
//! query string, a per-session rate limit, and `/stats` (JSON) and `/metrics` (Prometheus).
//!
//! ```sh
//! cargo run --release --features router,metrics --example typed   # then open the printed URL
//! ```
//!
//! Listens on `ADDR` (default `127.0.0.1:5000`). The `?token=` is the user name: 1 to 32
//! letters, digits, `_`, `-` or `.`; anything else gets 401 (a name goes out with every chat
//! message, so its size is bounded like everything else a client controls). Direct messages are
//! allowed for the `dm` type only: no client can make a `welcome` appear in another's stream.

use axum::{Json, Router, response::Html, routing::get};
use melody::{
    AuthRejection, Config, Keys, Melody,
    router::{self, BoxError, Envelope},
};
use metrics_exporter_prometheus::PrometheusBuilder;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
struct Room {
    room: String,
}

#[derive(Deserialize)]
struct Chat {
    room: String,
    text: String,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let metrics = PrometheusBuilder::new()
        .install_recorder()
        .map_err(std::io::Error::other)?;
    let melody = Melody::with_config(Config::default().message_rate_limit(20, 40));

    melody.on_auth(|req| {
        let user = req
            .uri
            .query()
            .unwrap_or_default()
            .split('&')
            .find_map(|pair| pair.strip_prefix("token="))
            .filter(|token| valid_user_name(token))
            .map(str::to_owned);
        async move {
            let user = user.ok_or_else(|| {
                AuthRejection::unauthorized(
                    "the token must be a name of 1 to 32 letters, digits, _ - .",
                )
            })?;
            Ok(Keys::new().with("user", user))
        }
    });

    melody.on_connect(|session| {
        let user = session.must_get::<String>("user");
        let welcome = json!({ "client_id": session.id().to_string(), "user": user });
        if let Ok(welcome) = Envelope::encode("welcome", welcome) {
            let _ = session.send(welcome);
        }
    });

    let router = router::Router::new()
        .on_data::<Room, _, _>("join", |session, Room { room }| async move {
            session.join(&room)?;
            session.send(Envelope::encode("joined", json!({ "room": room }))?)?;
            Ok(())
        })
        .on_data::<Room, _, _>("leave", |session, Room { room }| async move {
            session.leave(&room);
            session.send(Envelope::encode("left", json!({ "room": room }))?)?;
            Ok(())
        })
        .on_data::<Chat, _, _>("chat", |session, Chat { room, text }| async move {
            if !session.is_in(&room) {
                let error = json!({ "reason": "not in room", "room": room });
                session.send(Envelope::encode("error", error)?)?;
                return Ok(());
            }
            let user = session.must_get::<String>("user");
            let mut chat =
                Envelope::new("chat", json!({ "room": room, "text": text, "user": user }))?;
            chat.from = Some(session.id().to_string());
            session.melody().topic(room).send(chat)?;
            Ok::<_, BoxError>(())
        })
        // `dm` envelopes carry a `target`: the router forwards them with `from` filled in. No
        // other type may be sent to another client.
        .allow_direct("dm");
    melody.plug(router);

    let stats = melody.clone();
    let app = Router::new()
        .route("/", get(|| async { Html(include_str!("typed.html")) }))
        // The melody-client bundle the page imports (built by `npm run build` in clients/js).
        .route(
            "/melody-client.js",
            get(|| async {
                (
                    [(axum::http::header::CONTENT_TYPE, "text/javascript")],
                    include_str!("../../../clients/js/dist/melody-client.js"),
                )
            }),
        )
        .route("/ws", get(melody.handler()))
        .route(
            "/stats",
            get(move || std::future::ready(Json(stats.stats()))),
        )
        .route(
            "/metrics",
            get(move || std::future::ready(metrics.render())),
        );

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:5000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("typed: open http://{}/", listener.local_addr()?);
    melody::serve(listener, app).await
}

/// A user name as the token carries it: short, and nothing that needs escaping anywhere.
fn valid_user_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}
