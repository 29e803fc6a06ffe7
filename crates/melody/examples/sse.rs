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
    Keys, Melody, UpgradeRejection,
    sse::{Event, Sse, TopicResolver},
};
use serde::Deserialize;

#[derive(Deserialize)]
struct Device {
    device: String,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let melody = Melody::new();
    let sse = Sse::attach(&melody);
    let device = TopicResolver::query("device");
    melody.on_text(|session, text| {
        let Some(device) = session.topics().into_iter().next() else {
            return;
        };
        let Some(sse) = Sse::of(&session.melody()) else {
            return;
        };
        let _ = sse.publish(&device, Event::new(text.as_str()).event("message"));
    });

    // The WebSocket joins the topic its request names, before its connect handler runs.
    let joins = device.clone();
    let ws = melody.handler_with(move |req| {
        joins
            .resolve(req)
            .map(|topic| Keys::new().join(topic))
            .ok_or(UpgradeRejection::NotUpgrade)
    });
    let publisher = sse.clone();
    let app = Router::new()
        .route("/", get(|| async { Html(include_str!("sse.html")) }))
        .route("/events", get(sse.handler(device)))
        .route("/ws", get(ws))
        .route(
            "/publish",
            post(
                move |Query(Device { device }): Query<Device>, body: String| async move {
                    let event = Event::new(body).event("message");
                    match publisher.publish(&device, event) {
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
