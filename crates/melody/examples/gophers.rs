//! Go melody's gophers: every open page shows a gopher for each other visitor, following that
//! visitor's mouse, and removes it when they leave.
//!
//! ```sh
//! cargo run --release --example gophers   # then open the printed URL in two windows
//! ```
//!
//! Protocol (text): the page sends `"X Y"` on mouse moves; the server sends `iam ID` (your id),
//! `set ID X Y` (visitor ID is at X,Y) and `dis ID` (visitor ID left). Listens on `ADDR`
//! (default `127.0.0.1:5000`).

use axum::{Router, response::Html, routing::get};
use melody::Melody;

/// Where a visitor's mouse is; stored on their session.
#[derive(Clone)]
struct Gopher {
    id: String,
    x: String,
    y: String,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let melody = Melody::new();

    melody.handle_connect(|session| {
        // Tell the newcomer where everyone else is, then who they are.
        for other in session.melody().sessions() {
            if let Some(g) = other.get_ext::<Gopher>().filter(|_| other != *session) {
                let _ = session.write(format!("set {} {} {}", g.id, g.x, g.y));
            }
        }
        let me = Gopher {
            id: session.id().to_string(),
            x: "0".into(),
            y: "0".into(),
        };
        let _ = session.write(format!("iam {}", me.id));
        session.insert_ext(me);
    });

    melody.handle_disconnect(|session| {
        if let Some(me) = session.get_ext::<Gopher>() {
            let _ = session
                .melody()
                .broadcast_others(format!("dis {}", me.id), session);
        }
    });

    melody.handle_message(|session, text| {
        let Some((x, y)) = text.split_once(' ') else {
            return;
        };
        let Some(mut me) = session.get_ext::<Gopher>() else {
            return;
        };
        (me.x, me.y) = (x.to_owned(), y.to_owned());
        let _ = session
            .melody()
            .broadcast_others(format!("set {} {x} {y}", me.id), session);
        session.insert_ext(me);
    });

    let app = Router::new()
        .route("/", get(|| async { Html(include_str!("gophers.html")) }))
        .route("/ws", get(melody.handler()));

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:5000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("gophers: open http://{}/", listener.local_addr()?);
    axum::serve(listener, app).await
}
