//! Go melody's gophers: every open page shows a gopher for each other visitor, following that
//! visitor's mouse, and removes it when they leave.
//!
//! ```sh
//! cargo run --release --example gophers   # then open the printed URL in two windows
//! ```
//!
//! Protocol (text): the page sends `"X Y"` on mouse moves; the server sends `iam ID` (your id),
//! `set ID X Y` (visitor ID is at X,Y) and `dis ID` (visitor ID left). A newcomer gets everyone
//! already there in one message of `set` lines, at most [`SNAPSHOT_MAX`] of them: a connect
//! costs one message, not one per visitor. Listens on `ADDR` (default `127.0.0.1:5000`).

use std::{
    collections::HashMap,
    fmt::Write as _,
    sync::{Arc, Mutex},
};

use axum::{Router, response::Html, routing::get};
use melody::{Melody, SessionId};

/// Most gophers a newcomer is told about at once; the others appear as soon as they move.
const SNAPSHOT_MAX: usize = 200;

/// Where each visitor's mouse is. One map for the hub: a connect reads it once instead of
/// visiting every session.
type Positions = Arc<Mutex<HashMap<SessionId, (i32, i32)>>>;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let melody = Melody::new();
    let positions = Positions::default();

    let on_connect = positions.clone();
    melody.on_connect(move |session| {
        let mut snapshot = String::new();
        {
            let positions = on_connect.lock().expect("positions lock");
            for (id, (x, y)) in positions.iter().take(SNAPSHOT_MAX) {
                let _ = writeln!(snapshot, "set {id} {x} {y}");
            }
        }
        if !snapshot.is_empty() {
            let _ = session.send(snapshot);
        }
        let _ = session.send(format!("iam {}", session.id()));
        on_connect
            .lock()
            .expect("positions lock")
            .insert(session.id(), (0, 0));
    });

    let on_disconnect = positions.clone();
    melody.on_disconnect(move |session| {
        on_disconnect
            .lock()
            .expect("positions lock")
            .remove(&session.id());
        let _ = session
            .melody()
            .all()
            .except(session)
            .send(format!("dis {}", session.id()));
    });

    melody.on_text(move |session, text| {
        // Only two integers are passed on: what one visitor sends reaches every page.
        let Some((x, y)) = text.split_once(' ') else {
            return;
        };
        let (Ok(x), Ok(y)) = (x.parse::<i32>(), y.parse::<i32>()) else {
            return;
        };
        if let Some(position) = positions
            .lock()
            .expect("positions lock")
            .get_mut(&session.id())
        {
            *position = (x, y);
        }
        let _ = session
            .melody()
            .all()
            .except(session)
            .send(format!("set {} {x} {y}", session.id()));
    });

    let app = Router::new()
        .route("/", get(|| async { Html(include_str!("gophers.html")) }))
        .route("/ws", get(melody.handler()));

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:5000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("gophers: open http://{}/", listener.local_addr()?);
    melody::serve(listener, app).await
}
