//! The chat rooms of the `live` example, shared with `melody-cluster`'s `live-cluster` (which
//! includes this file): the hub with its limits and auth hook, the live topics with the `say`
//! request, and the routes of the page.

use std::time::Duration;

use axum::{Router, response::Html, routing::get};
use melody::{
    AuthRejection, Config, Keys, Melody,
    live::{History, Live, LiveHub},
    router::{self, Reject},
};
use serde::Deserialize;
use serde_json::json;

/// `{"type":"say","id":…,"data":{"room":…,"text":…}}`, as the page sends it.
#[derive(Deserialize)]
struct Say {
    room: String,
    text: String,
}

/// The longest message, in characters.
const MAX_TEXT: usize = 1000;

/// The hub: 20 messages a second per client, bursts of 40 (`MESSAGE_RATE=0` lifts the limit,
/// for `melody-bench live`, whose publisher sends as fast as the server answers); a name asked
/// for before the upgrade.
pub(crate) fn hub() -> Melody {
    let rate = std::env::var("MESSAGE_RATE")
        .ok()
        .and_then(|rate| rate.parse().ok())
        .unwrap_or(20);
    let melody = Melody::with_config(
        Config::default()
            .message_rate_limit(rate, rate.saturating_mul(2))
            .max_message_size(16 * 1024)
            // A refused name is a close code the page can read (4401), not an opaque failure.
            .close_on_auth_refusal(true),
    );
    melody.on_auth(|request| {
        let name = request
            .uri
            .query()
            .unwrap_or_default()
            .split('&')
            .find_map(|pair| pair.strip_prefix("name="))
            .filter(|name| valid_name(name))
            .map(str::to_owned);
        async move {
            let name = name.ok_or_else(|| {
                AuthRejection::unauthorized("a name of 1 to 32 letters, digits, _ - . is needed")
            })?;
            // Stands for a credential that has expired: a client fetches a fresh one and
            // reconnects (docs/PROTOCOL.md, "Reconnecting").
            if name == "expired" {
                return Err(AuthRejection::unauthorized("token expired"));
            }
            Ok(Keys::new().with("name", name))
        }
    });
    melody
}

/// The rooms `room:*` with presence (each member's name) and the `say` request, which
/// publishes to a room the sender is in.
pub(crate) fn rooms() -> Live {
    let chat = router::Router::new().on_request("say", |session, say: Say| async move {
        if !session.is_in(&say.room) {
            return Err(Reject::new("not in room").into());
        }
        if say.text.is_empty() || say.text.chars().count() > MAX_TEXT {
            return Err(Reject::new("invalid")
                .message(format!("1 to {MAX_TEXT} characters"))
                .into());
        }
        let live = LiveHub::of(&session.melody()).expect("live topics are plugged");
        let name = session.get::<String>("name").unwrap_or_default();
        let published = live
            .publish(&say.room, json!({ "name": name, "text": say.text }))
            .await?;
        Ok(json!({ "offset": published.offset }))
    });
    Live::new()
        .presence("room:*")
        .info(|session| json!({ "name": session.get::<String>("name") }))
        .router(chat)
}

/// Each room's history: its last 200 messages, for 30 minutes.
pub(crate) fn history() -> History {
    History::new().size(200).ttl(Duration::from_secs(30 * 60))
}

/// The page, the melody-client bundle it imports (built by `npm run build` in clients/js),
/// and the WebSocket endpoint.
pub(crate) fn app(melody: &Melody) -> Router {
    Router::new()
        .route("/", get(|| async { Html(include_str!("../live.html")) }))
        .route(
            "/melody-client.js",
            get(|| async {
                (
                    [(axum::http::header::CONTENT_TYPE, "text/javascript")],
                    include_str!("../../../../clients/js/dist/melody-client.js"),
                )
            }),
        )
        .route("/ws", get(melody.handler()))
}

/// A name as the page sends it: short, and nothing that needs escaping anywhere.
fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}
