//! The hub served by plain hyper 1, without axum.

mod common;

use std::convert::Infallible;

use common::*;
use hyper::{Request, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use melody::{Keys, LocalAddr, Melody, RemoteAddr};
use tokio::net::TcpListener;

/// Serves `melody` with hyper's http1 connection builder, upgrades on.
async fn spawn_hyper(melody: Melody) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, peer) = listener.accept().await.unwrap();
            let local = stream.local_addr().unwrap();
            let melody = melody.clone();
            let service = service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(RemoteAddr(peer));
                req.extensions_mut().insert(LocalAddr(local));
                let keys = Keys::new().with("served_by", "hyper");
                let upgrade = melody.upgrade_with(req, keys);
                async move { Ok::<_, Infallible>(upgrade.await) }
            });
            tokio::spawn(
                http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades(),
            );
        }
    });
    addr
}

#[tokio::test]
async fn plain_hyper_serves_sessions_with_keys_and_addresses() {
    let melody = Melody::new();
    let (events, mut log) = events();
    melody.on_connect(move |s| {
        events.push(format!(
            "{} local={} remote={}",
            s.must_get::<String>("served_by"),
            s.local_addr().is_some(),
            s.remote_addr().is_some()
        ));
    });
    melody.on_text(|s, text| {
        let _ = s.melody().all().send(text);
    });
    let addr = spawn_hyper(melody.clone()).await;

    let mut a = connect(addr).await;
    let mut b = connect(addr).await;
    assert_eq!(log.next().await, "hyper local=true remote=true");
    assert_eq!(log.next().await, "hyper local=true remote=true");
    send_text(&mut a, "over hyper").await;
    assert_eq!(recv_text(&mut a).await, "over hyper");
    assert_eq!(recv_text(&mut b).await, "over hyper");
}

#[tokio::test]
async fn plain_hyper_gets_the_same_refusals() {
    let addr = spawn_hyper(Melody::new()).await;
    let (status, _) = http_request(addr, "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, 400);
    let cross = upgrade_request("Origin: http://evil.example\r\n");
    assert_eq!(http_request(addr, &cross).await.0, 403);
}
