//! Feature `metrics`: the hub's counters exported through the `metrics` facade, scraped from a
//! real `/metrics` endpoint served with metrics-exporter-prometheus.
#![cfg(feature = "metrics")]

mod common;

use axum::{Router, routing::get};
use common::*;
use futures_util::SinkExt;
use melody::Melody;
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn scrape(addr: std::net::SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut body = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut body))
        .await
        .unwrap()
        .unwrap();
    body
}

/// The value of the sample line of `series` (a name, with its labels if it has any).
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find(|line| {
            line.strip_prefix(series)
                .is_some_and(|rest| rest.starts_with([' ', '{']))
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[tokio::test]
async fn counters_are_exported_and_scraped_from_metrics() {
    // One recorder for the process: this is the only test of this binary.
    let handle = PrometheusBuilder::new().install_recorder().unwrap();
    let melody = Melody::new();

    // A fresh hub: every series is described and present, at zero, before any connection.
    let fresh = handle.render();
    for series in [
        "melody_sessions",
        "melody_connects_total",
        "melody_sessions_parked",
        "melody_parks_total",
        "melody_messages_received_total",
        "melody_received_bytes_total",
        "melody_messages_sent_total",
        "melody_sent_bytes_total",
        "melody_messages_dropped_total",
        "melody_rejections_total{reason=\"frame_rate\"}",
    ] {
        assert_eq!(sample(&fresh, series), Some(0.0), "{series}: {fresh}");
        let name = series.split('{').next().unwrap();
        assert!(
            fresh.contains(&format!("# HELP {name} ")),
            "{name} has no help text: {fresh}"
        );
    }

    melody.on_text(|s, text| {
        let _ = s.melody().all().send(text);
    });
    let app = Router::new()
        .route("/ws", get(melody.handler()))
        .route("/metrics", get(move || std::future::ready(handle.render())));
    let addr = spawn_router(app).await;

    let mut client = connect(addr).await;
    send_text(&mut client, "hello").await;
    assert_eq!(recv_text(&mut client).await, "hello");
    let cross = upgrade_request("Origin: http://evil.example\r\n");
    assert_eq!(http_request(addr, &cross).await.0, 403);
    let mut big = connect(addr).await;
    big.send(tokio_websockets::Message::text("x".repeat(600)))
        .await
        .unwrap();
    assert_eq!(recv_close(&mut big).await.0, 1009);
    eventually(|| melody.all().len() == 1).await;

    let body = scrape(addr).await;
    assert_eq!(sample(&body, "melody_sessions"), Some(1.0), "{body}");
    assert_eq!(sample(&body, "melody_connects_total"), Some(2.0), "{body}");
    assert_eq!(
        sample(&body, "melody_messages_received_total"),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "melody_received_bytes_total"),
        Some(5.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "melody_messages_sent_total"),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "melody_rejections_total{reason=\"origin\"}"),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "melody_rejections_total{reason=\"too_big\"}"),
        Some(1.0),
        "{body}"
    );
}
