//! Go melody's multichat: rooms by URL. `/channel/NAME` is the room NAME; a message reaches
//! only the pages open on the same room.
//!
//! ```sh
//! cargo run --release --example multichat   # then open the printed URL, and /channel/other
//! ```
//!
//! Listens on `ADDR` (default `127.0.0.1:5000`).

use axum::{
    Router,
    extract::{Path, Request},
    response::{Html, IntoResponse, Redirect},
    routing::get,
};
use melody::{Keys, Melody};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let melody = Melody::new();
    melody.on_connect(|session| {
        if let Err(error) = session.join(session.must_get::<String>("room")) {
            eprintln!("session {} could not join its room: {error}", session.id());
        }
    });
    melody.on_text(|session, text| {
        let room = session.must_get::<String>("room");
        let _ = session.melody().topic(&room).send(text);
    });

    let hub = melody.clone();
    let app = Router::new()
        .route("/", get(|| async { Redirect::to("/channel/lobby") }))
        .route(
            "/channel/{room}",
            get(|| async { Html(include_str!("chat.html")) }),
        )
        .route(
            "/channel/{room}/ws",
            get(move |Path(room): Path<String>, req: Request| async move {
                let keys = Keys::new().with("room", format!("room:{room}"));
                hub.upgrade_with(req, keys).await.into_response()
            }),
        );

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:5000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "multichat: open http://{}/channel/lobby",
        listener.local_addr()?
    );
    melody::serve(listener, app).await
}
