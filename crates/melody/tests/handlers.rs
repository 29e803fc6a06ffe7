//! Every handler fires when it should, with what it should, in order.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use common::*;
use futures_util::SinkExt;
use melody::{CloseCode, Config, Melody};
use tokio_websockets::Message;

#[tokio::test]
async fn connect_and_disconnect_fire_once_each() {
    let melody = Melody::new();
    let (events, mut log) = events();
    let (on_connect, on_disconnect) = (events.clone(), events.clone());
    melody.on_connect(move |s| {
        // Registered before the connect handler runs, as in Go melody.
        on_connect.push(format!("connect {} len={}", s.id(), s.melody().all().len()));
    });
    melody.on_disconnect(move |s| {
        on_disconnect.push(format!("disconnect {} closed={}", s.id(), s.is_closed()));
    });
    let addr = spawn_app(&melody).await;

    let client = connect(addr).await;
    let connected = log.next().await;
    assert!(
        connected.starts_with("connect ") && connected.ends_with("len=1"),
        "{connected}"
    );
    let id = connected.split(' ').nth(1).unwrap().to_owned();

    drop(client);
    assert_eq!(log.next().await, format!("disconnect {id} closed=true"));
    assert_eq!(melody.all().len(), 0);
    // Exactly once: nothing else was logged.
    assert!(log.drain().is_empty());
}

#[tokio::test]
async fn text_and_binary_messages_reach_their_handlers() {
    let melody = Melody::new();
    let (events, mut log) = events();
    let (text_events, binary_events) = (events.clone(), events.clone());
    melody.on_text(move |_, text| text_events.push(format!("text {}", &*text)));
    melody.on_binary(move |_, bytes| binary_events.push(format!("binary {bytes:?}")));
    let addr = spawn_app(&melody).await;

    let mut client = connect(addr).await;
    send_text(&mut client, "héllo").await;
    client
        .send(Message::binary(vec![1u8, 2, 255]))
        .await
        .unwrap();
    assert_eq!(log.next().await, "text héllo");
    assert_eq!(log.next().await, r#"binary b"\x01\x02\xff""#);
}

#[tokio::test]
async fn async_handlers_run_in_arrival_order() {
    let melody = Melody::new();
    let (events, mut log) = events();
    melody.on_text_async(move |_, text| {
        let events = events.clone();
        async move {
            // Later messages take less time: only in-order execution keeps the order.
            let n: u64 = text.parse().unwrap();
            tokio::time::sleep(Duration::from_millis(20 - n * 2)).await;
            events.push(text.to_string());
        }
    });
    let addr = spawn_app(&melody).await;

    let mut client = connect(addr).await;
    for n in 0..10 {
        send_text(&mut client, &n.to_string()).await;
    }
    for n in 0..10 {
        assert_eq!(log.next().await, n.to_string());
    }
}

#[tokio::test]
async fn async_handler_can_wait_for_room_in_its_own_queue() {
    // A queue of one message and a handler that writes three with write_async: the session
    // task keeps writing while the handler awaits, so this completes.
    let melody = Melody::with_config(Config::default().message_buffer_size(1));
    melody.on_text_async(|session, text| async move {
        for i in 0..3 {
            session.send_async(format!("{} {i}", &*text)).await.unwrap();
        }
    });
    let addr = spawn_app(&melody).await;

    let mut client = connect(addr).await;
    send_text(&mut client, "reply").await;
    for i in 0..3 {
        assert_eq!(recv_text(&mut client).await, format!("reply {i}"));
    }
}

#[tokio::test]
async fn concurrent_message_handling_runs_handlers_in_parallel() {
    let melody = Melody::with_config(Config::default().concurrent_message_handling(true));
    let (events, mut log) = events();
    let release = Arc::new(tokio::sync::Notify::new());
    let gate = release.clone();
    melody.on_text_async(move |_, text| {
        let (events, gate) = (events.clone(), gate.clone());
        async move {
            if &*text == "first" {
                // Blocks until the second message has been handled: only possible in parallel.
                gate.notified().await;
            }
            events.push(text.to_string());
        }
    });
    let addr = spawn_app(&melody).await;

    let mut client = connect(addr).await;
    send_text(&mut client, "first").await;
    send_text(&mut client, "second").await;
    assert_eq!(log.next().await, "second");
    release.notify_one();
    assert_eq!(log.next().await, "first");
}

#[tokio::test]
async fn sent_handlers_see_flushed_messages() {
    let melody = Melody::new();
    let (events, mut log) = events();
    let (text_events, binary_events) = (events.clone(), events.clone());
    melody.on_sent(move |_, m| match m.as_str() {
        Some(text) => text_events.push(format!("sent {text}")),
        None => binary_events.push(format!("sent binary {}", m.len())),
    });
    melody.on_connect(|s| {
        s.send("welcome").unwrap();
        s.send(melody::Message::binary(vec![0u8; 3])).unwrap();
    });
    let addr = spawn_app(&melody).await;

    let mut client = connect(addr).await;
    assert_eq!(recv_text(&mut client).await, "welcome");
    assert_eq!(log.next().await, "sent welcome");
    assert_eq!(log.next().await, "sent binary 3");
}

#[tokio::test]
async fn close_handler_gets_code_and_reason_and_close_is_echoed() {
    let melody = Melody::new();
    let (events, mut log) = events();
    let (on_close, on_disconnect) = (events.clone(), events.clone());
    melody.on_close(move |_, frame| {
        on_close.push(format!("close {} {}", frame.code(), frame.reason()))
    });
    melody.on_disconnect(move |_| on_disconnect.push("disconnect"));
    let addr = spawn_app(&melody).await;

    let mut client = connect(addr).await;
    client
        .send(Message::close(
            Some(tokio_websockets::CloseCode::GOING_AWAY),
            "bye now",
        ))
        .await
        .unwrap();
    // The server echoes the close code.
    let (code, _) = recv_close(&mut client).await;
    assert_eq!(code, 1001);
    assert_eq!(log.next().await, "close 1001 bye now");
    assert_eq!(log.next().await, "disconnect");
}

#[tokio::test]
async fn close_without_status_reports_1005() {
    let melody = Melody::new();
    let (events, mut log) = events();
    melody.on_close(move |_, frame| events.push(format!("close {}", frame.code())));
    let addr = spawn_app(&melody).await;

    let mut raw = Raw::connect(addr).await;
    raw.send_frame(0x88, &[]).await;
    assert_eq!(
        log.next().await,
        format!("close {}", CloseCode::NO_STATUS_RECEIVED)
    );
    assert_eq!(raw.read_close_code().await, 1005);
}

#[tokio::test]
async fn error_handler_hears_about_dropped_messages() {
    let melody = Melody::with_config(Config::default().message_buffer_size(1));
    let (events, mut log) = events();
    melody.on_error(move |_, error| events.push(error.to_string()));
    let dropped = Arc::new(AtomicUsize::new(0));
    let counter = dropped.clone();
    melody.on_text(move |s, _| {
        // Three writes into a one-message queue from inside the session task: at least two
        // cannot fit before the task gets to write.
        for _ in 0..3 {
            if s.send("x").is_err() {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    let addr = spawn_app(&melody).await;

    let mut client = connect(addr).await;
    send_text(&mut client, "go").await;
    assert_eq!(log.next().await, "session message buffer is full");
    assert_eq!(recv_text(&mut client).await, "x");
    assert_eq!(dropped.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn panicking_handler_closes_only_its_session_with_1011() {
    let melody = Melody::new();
    let (events, mut log) = events();
    melody.on_error(move |_, error| events.push(error.to_string()));
    melody.on_text(|s, text| {
        if &*text == "boom" {
            panic!("handler exploded");
        }
        let _ = s.melody().all().send(text);
    });
    let addr = spawn_app(&melody).await;

    let mut victim = connect(addr).await;
    let mut bystander = connect(addr).await;
    eventually(|| melody.all().len() == 2).await;
    send_text(&mut victim, "boom").await;
    assert_eq!(recv_close(&mut victim).await.0, 1011);
    assert_eq!(log.next().await, "handler panicked: handler exploded");

    send_text(&mut bystander, "still here").await;
    assert_eq!(recv_text(&mut bystander).await, "still here");
}

#[tokio::test]
async fn handlers_set_after_start_apply_to_live_sessions() {
    let melody = Melody::new();
    let addr = spawn_app(&melody).await;
    let mut client = connect(addr).await;
    eventually(|| melody.all().len() == 1).await;

    melody.on_text(|s, text| {
        let _ = s.send(format!("late {}", &*text));
    });
    send_text(&mut client, "hi").await;
    assert_eq!(recv_text(&mut client).await, "late hi");
}

#[tokio::test]
async fn closing_a_session_cancels_its_pending_async_handler() {
    let melody = Melody::new();
    let (events, mut log) = events();
    let (on_message, on_disconnect) = (events.clone(), events.clone());
    melody.on_text_async(move |session, _| {
        let events = on_message.clone();
        async move {
            events.push(format!("waiting {}", session.id()));
            // Never completes on its own.
            std::future::pending::<()>().await;
        }
    });
    melody.on_disconnect(move |_| on_disconnect.push("disconnect"));
    let addr = spawn_app(&melody).await;

    let mut client = connect(addr).await;
    send_text(&mut client, "block").await;
    let waiting = log.next().await;
    let id: u64 = waiting.strip_prefix("waiting ").unwrap().parse().unwrap();
    let session = melody
        .all()
        .sessions()
        .into_iter()
        .find(|s| s.id().as_u64() == id)
        .unwrap();
    session.close().unwrap();
    assert_eq!(recv_close(&mut client).await.0, 1000);
    assert_eq!(log.next().await, "disconnect");
}
