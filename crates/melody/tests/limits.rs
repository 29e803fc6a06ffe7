//! Before and around the upgrade: the auth hook, the connection limit, the message rate limit,
//! and the counters that record every refusal.

mod common;

use common::*;
use futures_util::SinkExt;
use melody::{AuthRejection, Config, Keys, Melody, http::StatusCode};
use tokio_websockets::Message;

/// A hub whose auth hook accepts `?token=good` (storing the user) and refuses the rest.
fn authenticated_hub() -> Melody {
    let melody = Melody::new();
    melody.on_auth(|req| {
        let query = req.uri.query().unwrap_or_default().to_owned();
        async move {
            match query.as_str() {
                "token=good" => Ok(Keys::new().with("user", String::from("alice"))),
                "token=banned" => Err(AuthRejection::new(StatusCode::FORBIDDEN, "banned")),
                _ => Err(AuthRejection::unauthorized("missing or bad token")),
            }
        }
    });
    melody
}

#[tokio::test]
async fn auth_accepts_with_values_and_refuses_with_a_status_and_no_session() {
    let melody = authenticated_hub();
    let (events, mut log) = events();
    let on_connect = events.clone();
    melody.on_connect(move |s| on_connect.push(format!("hello {}", s.must_get::<String>("user"))));
    let addr = spawn_app(&melody).await;

    let refused = upgrade_request("").replacen("/ws", "/ws?token=bad", 1);
    let (status, head) = http_request(addr, &refused).await;
    assert_eq!(status, 401, "{head}");
    let banned = upgrade_request("").replacen("/ws", "/ws?token=banned", 1);
    assert_eq!(http_request(addr, &banned).await.0, 403);
    assert_eq!(melody.all().len(), 0);
    assert_eq!(
        melody.stats().connects,
        0,
        "a refused request never becomes a session"
    );
    assert_eq!(melody.stats().rejections.auth, 2);

    let _client = connect_with(addr, "/ws?token=good", &[]).await;
    assert_eq!(log.next().await, "hello alice");
}

#[tokio::test]
async fn auth_refusals_can_be_told_in_a_close_frame_a_browser_can_read() {
    // A hub that tells refusals after the upgrade, with one slot.
    let melody = {
        let config = Config::default()
            .close_on_auth_refusal(true)
            .max_connections(1);
        let told = Melody::with_config(config);
        told.on_auth(|req| {
            let query = req.uri.query().unwrap_or_default().to_owned();
            async move {
                match query.as_str() {
                    "token=good" => Ok(Keys::new()),
                    "token=banned" => Err(AuthRejection::new(StatusCode::FORBIDDEN, "banned")),
                    _ => Err(AuthRejection::unauthorized("x".repeat(300))),
                }
            }
        });
        told
    };
    let (events, mut log) = events();
    let on_connect = events.clone();
    melody.on_connect(move |_| on_connect.push("connected"));
    let addr = spawn_app(&melody).await;

    let (mut banned, head) = Raw::connect_to(addr, "/ws?token=banned", "").await;
    assert!(
        !head.contains("sec-websocket-extensions"),
        "nothing negotiated: {head}"
    );
    assert_eq!(banned.read_close_code().await, 4403);
    banned.send_frame(0x88, &4403u16.to_be_bytes()).await;
    banned.read_to_end().await;
    // A client that sends before it reads the close is refused alike; the reason is cut to
    // what a close frame holds; the server closes the connection once it has the client's
    // close frame.
    let (mut eager, _) = Raw::connect_to(addr, "/ws?token=bad", "").await;
    eager.send_frame(0x81, b"hello?").await;
    let (opcode, payload) = eager.read_frame().await;
    assert_eq!(opcode, 0x8);
    assert_eq!(payload[..2], 4401u16.to_be_bytes());
    assert_eq!(payload[2..], *"x".repeat(123).as_bytes());
    eager.send_frame(0x88, &4401u16.to_be_bytes()).await;
    eager.read_to_end().await;

    assert_eq!(
        melody.stats().connects,
        0,
        "no session for a refused client"
    );
    assert_eq!(melody.stats().rejections.auth, 2);
    // The refusals gave their slot back.
    let _client = connect_with(addr, "/ws?token=good", &[]).await;
    assert_eq!(log.next().await, "connected");
}

#[tokio::test]
async fn auth_runs_before_a_connection_slot_is_taken() {
    // With one slot, refused requests must not use it.
    let limited = Melody::with_config(Config::default().max_connections(1));
    limited.on_auth(|req| {
        let ok = req.uri.query() == Some("ok");
        async move {
            if ok {
                Ok(Keys::new())
            } else {
                Err(AuthRejection::unauthorized("no"))
            }
        }
    });
    let limited_addr = spawn_app(&limited).await;
    for _ in 0..3 {
        assert_eq!(
            http_request(limited_addr, &upgrade_request("")).await.0,
            401
        );
    }
    let _client = connect_with(limited_addr, "/ws?ok", &[]).await;
    eventually(|| limited.all().len() == 1).await;
    // The hub is full now: a refused request still gets its own answer, and only the auth
    // refusal is counted.
    assert_eq!(
        http_request(limited_addr, &upgrade_request("")).await.0,
        401
    );
    let rejections = limited.stats().rejections;
    assert_eq!((rejections.auth, rejections.max_connections), (4, 0));
}

#[tokio::test]
async fn max_connections_answers_503_and_a_slot_frees_when_a_session_ends() {
    let melody = Melody::with_config(Config::default().max_connections(2));
    let addr = spawn_app(&melody).await;
    let first = connect(addr).await;
    let _second = connect(addr).await;
    eventually(|| melody.all().len() == 2).await;

    let (status, _) = http_request(addr, &upgrade_request("")).await;
    assert_eq!(status, 503);
    assert_eq!(melody.stats().rejections.max_connections, 1);

    drop(first);
    eventually(|| melody.all().len() == 1).await;
    let _third = connect(addr).await;
    eventually(|| melody.all().len() == 2).await;
}

#[tokio::test]
async fn a_session_over_its_rate_limit_is_closed_with_1008() {
    let melody = Melody::with_config(Config::default().message_rate_limit(1, 5));
    let (events, mut log) = events();
    let (on_message, on_error) = (events.clone(), events.clone());
    melody.on_text(move |_, text| on_message.push(text.to_string()));
    melody.on_error(move |_, error| on_error.push(error.to_string()));
    let addr = spawn_app(&melody).await;

    let mut client = connect(addr).await;
    // A burst of 5 is allowed; the 6th, within the same second, is not.
    for i in 0..6 {
        client.send(Message::text(format!("m{i}"))).await.unwrap();
    }
    for i in 0..5 {
        assert_eq!(log.next().await, format!("m{i}"));
    }
    assert_eq!(log.next().await, "message rate limit exceeded");
    let (code, reason) = recv_close(&mut client).await;
    assert_eq!(code, 1008);
    assert_eq!(reason, "message rate limit exceeded");
    assert_eq!(melody.stats().rejections.rate_limit, 1);
}

#[tokio::test]
async fn a_zero_rate_limit_means_no_limit() {
    let melody = Melody::with_config(Config::default().message_rate_limit(0, 0));
    let (events, mut log) = events();
    melody.on_text(move |_, text| events.push(text.to_string()));
    let addr = spawn_app(&melody).await;
    let mut client = connect(addr).await;
    for i in 0..500 {
        client.send(Message::text(format!("{i}"))).await.unwrap();
    }
    for i in 0..500 {
        assert_eq!(log.next().await, i.to_string());
    }
}

#[tokio::test]
async fn stats_count_traffic_drops_and_every_rejection() {
    let melody = Melody::with_config(Config::default().message_buffer_size(1));
    melody.on_text(|s, text| {
        let _ = s.send(text.clone());
        // The second write finds the one-message queue full: one drop.
        let _ = s.send(text);
    });
    let addr = spawn_app(&melody).await;

    let mut client = connect(addr).await;
    send_text(&mut client, "12345").await;
    assert_eq!(recv_text(&mut client).await, "12345");
    // Refusals of each kind.
    let cross = upgrade_request("Origin: http://evil.example\r\n");
    assert_eq!(http_request(addr, &cross).await.0, 403);
    let mut big = connect(addr).await;
    big.send(Message::text("x".repeat(600))).await.unwrap();
    assert_eq!(recv_close(&mut big).await.0, 1009);
    let mut utf8 = Raw::connect(addr).await;
    utf8.send_frame(0x81, &[0xff]).await;
    assert_eq!(utf8.read_close_code().await, 1007);
    let mut protocol = Raw::connect(addr).await;
    protocol.send_frame(0x83, b"x").await;
    assert_eq!(protocol.read_close_code().await, 1002);
    eventually(|| melody.all().len() == 1).await;

    let stats = melody.stats();
    assert_eq!(stats.connected, 1);
    assert_eq!(stats.connects, 4);
    assert_eq!(
        stats.messages_in, 1,
        "oversized and invalid messages are not counted as received"
    );
    assert_eq!(stats.bytes_in, 5);
    assert_eq!(stats.messages_out, 1);
    assert_eq!(stats.bytes_out, 5);
    assert_eq!(stats.dropped, 1);
    assert_eq!(stats.rejections.origin, 1);
    assert_eq!(stats.rejections.too_big, 1);
    assert_eq!(stats.rejections.bad_utf8, 1);
    assert_eq!(stats.rejections.protocol, 1);
    let json = serde_json::to_value(stats).unwrap();
    assert_eq!(json["rejections"]["origin"], 1);
    assert_eq!(json["connected"], 1);
}
