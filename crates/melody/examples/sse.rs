//! Server-Sent Events and WebSocket on one topic hub: a page follows a device's events with
//! `EventSource`, while another page (over WebSocket) or `curl` publishes to that device.
//!
//! ```sh
//! cargo run --release --features sse --example sse   # then open the printed URL
//! curl -X POST 'http://127.0.0.1:5000/publish?device=device-42' -d 'hello from curl'
//! ```
//!
//! The device is the `device` query parameter; `GET /events?device=D` is the SSE stream,
//! `/ws?device=D` a WebSocket that joins the same topic (each text it sends is published to the
//! device as a `message` event). Listens on `ADDR` (default `127.0.0.1:5000`).

use axum::{
    Router,
    extract::Query,
    http::StatusCode,
    response::Html,
    routing::{get, post},
};
use melody::{
    Melody,
    sse::{Event, TopicResolver},
};
use serde::Deserialize;

#[derive(Deserialize)]
struct Device {
    device: String,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let melody = Melody::new();
    let device = TopicResolver::query("device");
    melody.handle_message(|session, text| {
        let Some(device) = session.topics().into_iter().next() else {
            return;
        };
        let event = Event::new(text.as_str()).event("message");
        let _ = session.melody().publish_event(&device, event);
    });

    let publisher = melody.clone();
    let app = Router::new()
        .route("/", get(|| async { Html(include_str!("sse.html")) }))
        .route("/events", get(melody.sse_handler(device.clone())))
        .route("/ws", get(melody.handler_with_topic(device)))
        .route(
            "/publish",
            post(
                move |Query(Device { device }): Query<Device>, body: String| async move {
                    let event = Event::new(body).event("message");
                    match publisher.publish_event(&device, event) {
                        Ok(reached) => (StatusCode::OK, format!("reached {reached}\n")),
                        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n")),
                    }
                },
            ),
        );

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:5000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("sse: open http://{}/", listener.local_addr()?);
    melody::serve(listener, app).await
}
