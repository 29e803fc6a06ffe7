//! Broadcasting to all, to a filter, to all but one, to a list; counting; closing the hub.

mod common;

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use common::*;
use melody::{
    CloseCode, CloseError, Closed, Melody, Session, compat::MelodyCompat, format_close_message,
};

/// A hub where each client's first text message names it ("name:X"), stored as a session key.
async fn named_hub(names: &[&str]) -> (Melody, Vec<Client>, Vec<Session>) {
    let melody = Melody::new();
    let (events, mut log) = events();
    melody.on_text(move |s, text| {
        if let Some(name) = text.strip_prefix("name:") {
            s.set("name", name.to_owned());
            events.push(name.to_owned());
        }
    });
    let addr = spawn_app(&melody).await;
    let mut clients = Vec::new();
    for name in names {
        let mut client = connect(addr).await;
        send_text(&mut client, &format!("name:{name}")).await;
        assert_eq!(log.next().await, *name);
        clients.push(client);
    }
    let sessions = names
        .iter()
        .map(|name| {
            melody
                .all()
                .sessions()
                .into_iter()
                .find(|s| s.get::<String>("name").as_deref() == Some(name))
                .unwrap()
        })
        .collect();
    (melody, clients, sessions)
}

#[tokio::test]
async fn broadcast_reaches_everyone() {
    let (melody, mut clients, _) = named_hub(&["a", "b", "c"]).await;
    assert_eq!(melody.all().len(), 3);
    assert_eq!(melody.all().send("hello all").unwrap(), 3);
    for client in &mut clients {
        assert_eq!(recv_text(client).await, "hello all");
    }
}

#[tokio::test]
async fn broadcast_binary_reaches_everyone() {
    let (melody, mut clients, _) = named_hub(&["a", "b"]).await;
    assert_eq!(
        melody
            .all()
            .send(melody::Message::binary(vec![7u8, 8]))
            .unwrap(),
        2
    );
    for client in &mut clients {
        let message = recv(client).await;
        assert!(message.is_binary());
        assert_eq!(&*message.into_payload(), &[7, 8]);
    }
}

#[tokio::test]
async fn broadcast_filter_selects_sessions() {
    let (melody, mut clients, _) = named_hub(&["a", "b", "c"]).await;
    let to_a_and_c = |s: &Session| s.get::<String>("name").as_deref() != Some("b");
    assert_eq!(melody.filter(to_a_and_c).send("filtered").unwrap(), 2);
    assert_eq!(
        melody
            .filter(to_a_and_c)
            .send(melody::Message::binary(vec![1u8]))
            .unwrap(),
        2
    );
    assert_eq!(recv_text(&mut clients[0]).await, "filtered");
    assert_eq!(recv_text(&mut clients[2]).await, "filtered");
    assert!(recv(&mut clients[0]).await.is_binary());
    // The filter may call back into the hub: it runs outside every lock.
    assert_eq!(
        melody
            .filter(|_| melody.all().len() == 3)
            .send("reentrant")
            .unwrap(),
        3
    );
    assert_eq!(recv_text(&mut clients[1]).await, "reentrant");
}

#[tokio::test]
async fn broadcast_others_skips_one_session() {
    let (melody, mut clients, sessions) = named_hub(&["a", "b", "c"]).await;
    assert_eq!(
        melody.all().except(&sessions[1]).send("not for b").unwrap(),
        2
    );
    assert_eq!(
        melody
            .all()
            .except(&sessions[1])
            .send(melody::Message::binary(vec![2u8]))
            .unwrap(),
        2
    );
    melody.all().send("for all").unwrap();
    assert_eq!(recv_text(&mut clients[0]).await, "not for b");
    assert_eq!(recv_text(&mut clients[2]).await, "not for b");
    // b's first message is the one meant for everyone.
    assert_eq!(recv_text(&mut clients[1]).await, "for all");
}

#[tokio::test]
async fn broadcast_multiple_reaches_the_listed_sessions_even_past_a_closed_one() {
    let (melody, mut clients, sessions) = named_hub(&["a", "b", "c"]).await;
    sessions[0].close().unwrap();
    let list = [sessions[0].clone(), sessions[2].clone()];
    assert_eq!(melody.each(&list).send("listed").unwrap(), 1);
    assert_eq!(
        melody
            .each(&list)
            .send(melody::Message::binary(vec![3u8]))
            .unwrap(),
        1
    );
    assert_eq!(recv_text(&mut clients[2]).await, "listed");
    melody.all().send("all").unwrap();
    assert_eq!(recv_text(&mut clients[1]).await, "all");
}

#[tokio::test]
async fn broadcast_shares_one_payload_among_recipients() {
    let melody = Melody::new();
    let pointers = Arc::new(Mutex::new(HashSet::new()));
    let seen = pointers.clone();
    let (events, mut log) = events();
    melody.on_sent(move |_, message| {
        seen.lock()
            .unwrap()
            .insert(message.payload().as_ptr() as usize);
        events.push("sent");
    });
    let addr = spawn_app(&melody).await;
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(connect(addr).await);
    }
    eventually(|| melody.all().len() == 5).await;

    assert_eq!(melody.all().send(String::from("one frame")).unwrap(), 5);
    for _ in 0..5 {
        assert_eq!(log.next().await, "sent");
    }
    assert_eq!(
        pointers.lock().unwrap().len(),
        1,
        "every recipient wrote the same bytes"
    );
}

#[tokio::test]
async fn sessions_lists_connected_sessions_with_unique_ids() {
    let (melody, _clients, sessions) = named_hub(&["a", "b", "c"]).await;
    let ids: HashSet<_> = melody.all().sessions().iter().map(Session::id).collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(ids, sessions.iter().map(Session::id).collect());
    assert_eq!(
        melody.session(sessions[1].id()).get(),
        Some(sessions[1].clone())
    );
    assert!(!melody.all().is_empty());
}

#[tokio::test]
async fn close_sends_going_away_to_everyone_and_refuses_more() {
    let (melody, mut clients, _) = named_hub(&["a", "b"]).await;
    let (events, mut log) = events();
    melody.on_disconnect(move |_| events.push("disconnect"));

    assert!(!melody.is_closed());
    melody.close().unwrap();
    assert!(melody.is_closed());
    for client in &mut clients {
        assert_eq!(recv_close(client).await.0, 1001);
    }
    log.wait_for("disconnect").await;
    log.wait_for("disconnect").await;
    eventually(|| melody.all().is_empty()).await;

    assert_eq!(melody.all().send("late"), Err(Closed));
    assert_eq!(
        melody.all().send(melody::Message::binary(vec![1u8])),
        Err(Closed)
    );
    assert_eq!(melody.close(), Err(Closed));
}

#[tokio::test]
async fn close_with_msg_sends_the_given_frame() {
    let (melody, mut clients, _) = named_hub(&["a"]).await;
    melody
        .close_with_msg(&format_close_message(CloseCode::SERVICE_RESTART, "brb"))
        .unwrap();
    assert_eq!(recv_close(&mut clients[0]).await, (1012, "brb".to_owned()));
}

#[tokio::test]
async fn close_with_sends_code_and_reason_and_rejects_reserved_codes() {
    let (melody, mut clients, _) = named_hub(&["a"]).await;
    assert!(matches!(
        melody.close_with(CloseCode::ABNORMAL_CLOSURE, "no"),
        Err(CloseError::ReservedCode(_))
    ));
    assert!(!melody.is_closed());
    melody
        .close_with(CloseCode::TRY_AGAIN_LATER, "busy")
        .unwrap();
    assert_eq!(recv_close(&mut clients[0]).await, (1013, "busy".to_owned()));
}

#[tokio::test]
async fn closed_hub_refuses_upgrades_with_503() {
    let melody = Melody::new();
    let addr = spawn_app(&melody).await;
    melody.close().unwrap();
    let (status, _) = http_request(addr, &upgrade_request("")).await;
    assert_eq!(status, 503);
}

#[tokio::test]
async fn a_slow_reader_does_not_hold_up_a_broadcast() {
    // One client never reads; once the socket buffers are full its queue fills and its messages
    // are dropped (and reported), while the reading client gets every message.
    let melody = Melody::with_config(melody::Config::default().message_buffer_size(4));
    let (events, mut log) = events();
    melody.on_error(move |_, error| events.push(error.to_string()));
    let addr = spawn_app(&melody).await;
    let _stalled = Raw::connect(addr).await;
    let mut reader = connect(addr).await;
    eventually(|| melody.all().len() == 2).await;
    for i in 0..400 {
        let payload = format!("{i:0>65535}");
        melody.all().send(payload).unwrap();
        assert_eq!(recv_text(&mut reader).await.len(), 65535);
    }
    log.wait_for("session message buffer is full").await;
}
