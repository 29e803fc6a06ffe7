//! A session as typed async channels (`melody::channels`): one test per channel, the seed's
//! options, and the seed's contrived echo with a short deadline. Real server, real clients.

mod common;

use std::{fmt, sync::Arc, time::Duration};

use axum::{Router, routing::get};
use futures_util::SinkExt;
use melody::{
    Bytes, CloseCode,
    channels::{Binding, ChannelError, Channels, seed_config},
};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio_websockets::Message;

use common::{
    Events, connect, events, eventually, http_request, recv, recv_close, recv_text, send_text,
    spawn_router, upgrade_request,
};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Chat {
    text: String,
}

async fn serve<T: Send + 'static>(binding: &Binding<T>) -> std::net::SocketAddr {
    spawn_router(Router::new().route("/ws", get(binding.handler()))).await
}

fn describe(error: &ChannelError) -> String {
    match error {
        ChannelError::Decode { .. } => format!("decode error: {error}"),
        ChannelError::Encode(_) => format!("encode error: {error}"),
        ChannelError::Session(inner) => format!("session error: {inner}"),
        _ => format!("other error: {error}"),
    }
}

/// The seed's loop: echo everything, close with 1000 "deadline" after `deadline` (if any),
/// report errors, stop when done. Every step is pushed to `events`.
async fn seed_loop<T: fmt::Debug + Send + 'static>(
    mut ch: Channels<T>,
    events: Events,
    deadline: Option<Duration>,
) {
    let timer = tokio::time::sleep(deadline.unwrap_or(Duration::from_secs(3600)));
    tokio::pin!(timer);
    let mut closing = deadline.is_none();
    loop {
        tokio::select! {
            Some(message) = ch.receiver.recv() => {
                events.push(format!("received {message:?}"));
                if ch.sender.send(message).await.is_err() {
                    break;
                }
            }
            () = &mut timer, if !closing => {
                closing = true;
                ch.disconnect.close(CloseCode::NORMAL_CLOSURE, "deadline").unwrap();
            }
            () = ch.done.wait() => {
                events.push("done");
                break;
            }
            Some(error) = ch.errors.recv() => events.push(describe(&error)),
        }
    }
    // Errors that came with the end (the select may have seen `done` first).
    while let Some(error) = ch.errors.recv().await {
        events.push(describe(&error));
    }
    events.push("ended");
}

fn echo_json(events: &Events, config: melody::Config) -> Binding<Chat> {
    let events = events.clone();
    Binding::json(config, move |ch: Channels<Chat>| {
        seed_loop(ch, events.clone(), None)
    })
}

#[tokio::test]
async fn receiver_gets_decoded_json_and_sender_echoes_it() {
    let (events, mut log) = events();
    let binding = echo_json(&events, seed_config());
    let addr = serve(&binding).await;

    let mut client = connect(addr).await;
    send_text(&mut client, r#"{"text":"hello"}"#).await;
    assert_eq!(log.next().await, r#"received Chat { text: "hello" }"#);
    let echoed: Chat = serde_json::from_str(&recv_text(&mut client).await).unwrap();
    assert_eq!(
        echoed,
        Chat {
            text: "hello".into()
        }
    );

    // JSON in a binary frame decodes too; the answer is always text.
    client
        .send(Message::binary(&br#"{"text":"bin"}"#[..]))
        .await
        .unwrap();
    assert_eq!(log.next().await, r#"received Chat { text: "bin" }"#);
    assert_eq!(recv_text(&mut client).await, r#"{"text":"bin"}"#);
}

#[tokio::test]
async fn string_channels_round_trip_and_reject_binary_that_is_not_utf8() {
    let (events, mut log) = events();
    let binding = Binding::text(seed_config(), move |ch: Channels<String>| {
        seed_loop(ch, events.clone(), None)
    });
    let addr = serve(&binding).await;

    let mut client = connect(addr).await;
    send_text(&mut client, "héllo").await;
    assert_eq!(recv_text(&mut client).await, "héllo");
    assert_eq!(log.next().await, r#"received "héllo""#);

    client.send(Message::binary(vec![0xffu8, 0])).await.unwrap();
    assert!(log.next().await.starts_with("decode error"));
    // Still open; valid UTF-8 in a binary frame is a string too, echoed as text.
    client.send(Message::binary(&b"ok"[..])).await.unwrap();
    assert_eq!(recv_text(&mut client).await, "ok");
}

#[tokio::test]
async fn bytes_channels_round_trip_as_binary() {
    let (events, mut log) = events();
    let binding = Binding::binary(seed_config(), move |ch: Channels<Bytes>| {
        seed_loop(ch, events.clone(), None)
    });
    let addr = serve(&binding).await;

    let mut client = connect(addr).await;
    client
        .send(Message::binary(vec![0u8, 1, 255]))
        .await
        .unwrap();
    let echoed = recv(&mut client).await;
    assert!(echoed.is_binary());
    assert_eq!(&*echoed.into_payload(), &[0u8, 1, 255]);
    assert_eq!(log.next().await, r#"received b"\0\x01\xff""#);

    // Text frames arrive as their bytes, and go back as binary.
    send_text(&mut client, "abc").await;
    let echoed = recv(&mut client).await;
    assert!(echoed.is_binary());
    assert_eq!(&*echoed.into_payload(), b"abc");
}

#[tokio::test]
async fn done_fires_when_the_client_closes_and_the_loop_ends() {
    let (events, mut log) = events();
    let binding = echo_json(&events, seed_config());
    let addr = serve(&binding).await;

    let mut client = connect(addr).await;
    client
        .send(Message::close(
            Some(tokio_websockets::CloseCode::NORMAL_CLOSURE),
            "bye",
        ))
        .await
        .unwrap();
    assert_eq!(recv_close(&mut client).await.0, 1000);
    assert_eq!(log.next().await, "done");
    assert_eq!(log.next().await, "ended");
    assert_eq!(binding.melody().all().len(), 0);
}

#[tokio::test]
async fn done_fires_when_the_client_drops_the_connection() {
    let (events, mut log) = events();
    let binding = echo_json(&events, seed_config());
    let addr = serve(&binding).await;

    let client = connect(addr).await;
    drop(client);
    let before = log.wait_for("done").await;
    assert!(
        before.iter().all(|e| e.starts_with("session error")),
        "{before:?}"
    );
    log.wait_for("ended").await;
}

#[tokio::test]
async fn disconnect_closes_with_the_chosen_code_after_what_was_sent() {
    let (events, mut log) = events();
    let binding = Binding::text(seed_config(), move |mut ch: Channels<String>| {
        let events = events.clone();
        async move {
            let first = ch.receiver.recv().await.unwrap();
            ch.sender.send(format!("last after {first}")).await.unwrap();
            let code = CloseCode::new(4001).unwrap();
            ch.disconnect.close(code, "bye").unwrap();
            let again = ch.disconnect.close(code, "again");
            events.push(format!("second close: {again:?}"));
            let reserved = ch.disconnect.close(CloseCode::ABNORMAL_CLOSURE, "");
            events.push(format!("reserved: {reserved:?}"));
            ch.done.wait().await;
            events.push("done");
        }
    });
    let addr = serve(&binding).await;

    let mut client = connect(addr).await;
    send_text(&mut client, "x").await;
    assert_eq!(recv_text(&mut client).await, "last after x");
    assert_eq!(recv_close(&mut client).await, (4001, "bye".to_owned()));
    assert_eq!(log.next().await, "second close: Err(SessionClosed)");
    assert_eq!(
        log.next().await,
        "reserved: Err(ReservedCode(CloseCode(1006)))"
    );
    assert_eq!(log.next().await, "done");
}

#[tokio::test]
async fn errors_get_bad_json_and_the_connection_stays_open() {
    let (events, mut log) = events();
    let binding = echo_json(&events, seed_config());
    let addr = serve(&binding).await;

    let mut client = connect(addr).await;
    send_text(&mut client, "not json").await;
    let error = log.next().await;
    assert!(
        error.starts_with("decode error: message did not decode"),
        "{error}"
    );
    send_text(&mut client, r#"{"wrong":"shape"}"#).await;
    assert!(log.next().await.starts_with("decode error"));

    send_text(&mut client, r#"{"text":"still here"}"#).await;
    assert_eq!(recv_text(&mut client).await, r#"{"text":"still here"}"#);
    assert_eq!(log.next().await, r#"received Chat { text: "still here" }"#);
}

#[tokio::test]
async fn decode_errors_carry_the_message() {
    let (events, mut log) = events();
    let binding = Binding::json(seed_config(), move |mut ch: Channels<Chat>| {
        let events = events.clone();
        async move {
            if let Some(ChannelError::Decode { message, .. }) = ch.errors.recv().await {
                events.push(format!("bad {:?}", message.as_str()));
            }
        }
    });
    let addr = serve(&binding).await;
    let mut client = connect(addr).await;
    send_text(&mut client, "{oops").await;
    assert_eq!(log.next().await, r#"bad Some("{oops")"#);
    // The function returned: the connection is closed normally.
    assert_eq!(recv_close(&mut client).await.0, 1000);
}

#[tokio::test]
async fn max_message_size_closes_with_1009_and_reports_it() {
    let (events, mut log) = events();
    let binding = echo_json(&events, seed_config().max_message_size(32));
    let addr = serve(&binding).await;

    let mut client = connect(addr).await;
    send_text(&mut client, r#"{"text":"small"}"#).await;
    assert_eq!(recv_text(&mut client).await, r#"{"text":"small"}"#);
    let big = format!(r#"{{"text":"{}"}}"#, "x".repeat(100));
    send_text(&mut client, &big).await;
    assert_eq!(recv_close(&mut client).await.0, 1009);
    let seen = log.wait_for("ended").await;
    assert!(
        seen.iter()
            .any(|e| e.starts_with("session error: message of 111 bytes exceeds")),
        "{seen:?}"
    );
    assert!(seen.contains(&"done".to_owned()), "{seen:?}");
}

#[tokio::test]
async fn the_origin_check_is_the_hubs_same_origin_by_default() {
    let (events, _log) = events();
    let binding = echo_json(&events, seed_config());
    let addr = serve(&binding).await;
    // `upgrade_request` sends `Host: localhost`.
    for (origin, status) in [
        ("", 101),
        ("Origin: http://localhost\r\n", 101),
        ("Origin: https://LOCALHOST\r\n", 101),
        ("Origin: http://evil.example\r\n", 403),
        ("Origin: http://localhost.evil.example\r\n", 403),
        ("Origin: ws://localhost\r\n", 101),
        ("Origin: null\r\n", 403),
    ] {
        let (got, head) = http_request(addr, &upgrade_request(origin)).await;
        assert_eq!(got, status, "{origin:?}: {head}");
    }

    let strict = echo_json(
        &events,
        seed_config().check_origin(melody::CheckOrigin::allow_list(["https://localhost"])),
    );
    let addr = serve(&strict).await;
    let (status, _) = http_request(addr, &upgrade_request("Origin: http://localhost\r\n")).await;
    assert_eq!(status, 403);
    let (status, _) = http_request(addr, &upgrade_request("Origin: https://localhost\r\n")).await;
    assert_eq!(status, 101);
}

#[tokio::test]
async fn a_full_receive_buffer_backpressures_instead_of_dropping() {
    const COUNT: usize = 50;
    let (events, mut log) = events();
    let gate = Arc::new(Semaphore::new(0));
    let binding = Binding::text(seed_config(), {
        let gate = gate.clone();
        move |mut ch: Channels<String>| {
            let (gate, events) = (gate.clone(), events.clone());
            async move {
                events.push(format!(
                    "capacities {} {}",
                    ch.receiver.max_capacity(),
                    ch.sender.max_capacity()
                ));
                // A slow consumer: nothing is read until the test opens the gate.
                let _permit = gate.acquire().await.unwrap();
                let mut got = Vec::new();
                while got.len() < COUNT {
                    got.push(ch.receiver.recv().await.unwrap());
                }
                ch.sender.send(got.join(",")).await.unwrap();
                ch.done.wait().await;
            }
        }
    })
    .buffers(3, 1);
    let addr = serve(&binding).await;

    let mut client = connect(addr).await;
    assert_eq!(log.next().await, "capacities 1 3");
    for i in 0..COUNT {
        send_text(&mut client, &i.to_string()).await;
    }
    // "0" fills the buffer, the connection holds "1" waiting for room, and reads no further:
    // the rest waits in the socket, not in memory, and nothing is dropped.
    let melody = binding.melody().clone();
    eventually(|| melody.stats().messages_in >= 2).await;
    assert_eq!(melody.stats().messages_in, 2);
    gate.add_permits(1);
    let expected: Vec<String> = (0..COUNT).map(|i| i.to_string()).collect();
    assert_eq!(recv_text(&mut client).await, expected.join(","));
}

#[tokio::test]
async fn the_seed_echo_closes_with_1000_after_its_deadline() {
    let (events, mut log) = events();
    let binding = Binding::json(seed_config(), move |ch: Channels<Chat>| {
        seed_loop(ch, events.clone(), Some(Duration::from_millis(100)))
    });
    let addr = serve(&binding).await;

    let mut client = connect(addr).await;
    send_text(&mut client, r#"{"text":"before the deadline"}"#).await;
    assert_eq!(
        recv_text(&mut client).await,
        r#"{"text":"before the deadline"}"#
    );
    assert_eq!(recv_close(&mut client).await, (1000, "deadline".to_owned()));
    log.wait_for("done").await;
    assert_eq!(log.next().await, "ended");
}

#[tokio::test]
async fn returning_closes_normally_after_what_was_sent() {
    let binding = Binding::text(seed_config(), |ch: Channels<String>| async move {
        let greeting = format!("bye from {}", ch.session.uri().path());
        ch.sender.send(greeting).await.unwrap();
    });
    let addr = serve(&binding).await;

    let mut client = connect(addr).await;
    assert_eq!(recv_text(&mut client).await, "bye from /ws");
    assert_eq!(recv_close(&mut client).await, (1000, String::new()));
}

#[tokio::test]
async fn a_panicking_function_closes_with_1011() {
    let binding = Binding::text(seed_config(), |mut ch: Channels<String>| async move {
        let _ = ch.receiver.recv().await;
        panic!("boom");
    });
    let addr = serve(&binding).await;

    let mut client = connect(addr).await;
    send_text(&mut client, "go").await;
    assert_eq!(recv_close(&mut client).await.0, 1011);
}

#[tokio::test]
async fn sender_fails_once_the_connection_has_ended() {
    let (events, mut log) = events();
    let binding = Binding::text(seed_config(), move |ch: Channels<String>| {
        let events = events.clone();
        async move {
            ch.done.wait().await;
            let sent = ch.sender.send("too late".into()).await;
            events.push(format!("sent after done: {}", sent.is_ok()));
            let closed = ch.disconnect.close_normal();
            events.push(format!(
                "close after done: {}",
                matches!(closed, Err(melody::CloseError::SessionClosed))
            ));
        }
    });
    let addr = serve(&binding).await;

    let mut client = connect(addr).await;
    client.close().await.unwrap();
    assert_eq!(log.next().await, "sent after done: false");
    assert_eq!(log.next().await, "close after done: true");
}

#[tokio::test]
async fn disconnect_goes_through_while_the_receive_buffer_is_full() {
    let (events, mut log) = events();
    let gate = Arc::new(Semaphore::new(0));
    let binding = Binding::text(seed_config(), {
        let gate = gate.clone();
        move |mut ch: Channels<String>| {
            let (gate, events) = (gate.clone(), events.clone());
            async move {
                let first = ch.receiver.recv().await.unwrap();
                events.push(format!("first {first}"));
                // Stop reading: the buffer fills and the connection waits for room.
                let _permit = gate.acquire().await.unwrap();
                ch.disconnect
                    .close(CloseCode::new(4002).unwrap(), "enough")
                    .unwrap();
                ch.done.wait().await;
                events.push("done");
            }
        }
    })
    .buffers(10, 1);
    let addr = serve(&binding).await;

    let mut client = connect(addr).await;
    send_text(&mut client, "a").await;
    assert_eq!(log.next().await, "first a");
    for i in 0..10 {
        send_text(&mut client, &i.to_string()).await;
    }
    // "0" fills the buffer of 1; once "1" has been read, the connection is waiting for room.
    let melody = binding.melody().clone();
    eventually(|| melody.stats().messages_in >= 3).await;
    gate.add_permits(1);
    assert_eq!(recv_close(&mut client).await, (4002, "enough".to_owned()));
    assert_eq!(log.next().await, "done");
}
