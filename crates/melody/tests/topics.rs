//! Topics (rooms, groups), direct sends and session lookup.

mod common;

use std::{collections::HashSet, sync::Arc, time::Duration};

use common::*;
use futures_util::StreamExt;
use melody::{Config, Melody, Session};

/// A hub where a client's text "join:T" / "leave:T" joins or leaves topic T; every session is
/// handed to the test on connect.
async fn topic_hub(clients: usize) -> (Melody, std::net::SocketAddr, Vec<Client>, Vec<Session>) {
    let melody = Melody::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    melody.on_connect(move |s| {
        let _ = tx.send(s.clone());
    });
    let addr = spawn_app(&melody).await;
    let mut sockets = Vec::new();
    let mut sessions = Vec::new();
    for _ in 0..clients {
        sockets.push(connect(addr).await);
        sessions.push(
            tokio::time::timeout(WAIT, rx.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    (melody, addr, sockets, sessions)
}

#[tokio::test]
async fn join_leave_and_inspect_topics() {
    let (melody, _addr, _clients, s) = topic_hub(3).await;
    assert_eq!(s[0].join("room:lobby"), Ok(true));
    assert_eq!(
        s[0].join("room:lobby"),
        Ok(false),
        "joining twice is a no-op"
    );
    assert_eq!(s[1].join("room:lobby"), Ok(true));
    assert_eq!(s[1].join("tenant:42"), Ok(true));

    assert_eq!(melody.topic("room:lobby").len(), 2);
    assert_eq!(melody.topics().len(), 2);
    let mut topics = melody.topics();
    topics.sort();
    assert_eq!(topics, ["room:lobby", "tenant:42"]);
    let ids: HashSet<_> = melody.topic("room:lobby").ids().into_iter().collect();
    assert_eq!(ids, HashSet::from([s[0].id(), s[1].id()]));
    assert_eq!(melody.topic("tenant:42").sessions(), vec![s[1].clone()]);
    assert!(s[1].is_in("tenant:42"));
    assert!(!s[2].is_in("tenant:42"));
    let mut mine = s[1].topics();
    mine.sort();
    assert_eq!(mine, ["room:lobby", "tenant:42"]);
    assert!(melody.topic("nowhere").is_empty());
    assert!(melody.topic("nowhere").sessions().is_empty());

    assert!(s[1].leave("tenant:42"));
    assert!(!s[1].leave("tenant:42"));
    assert!(melody.topic("tenant:42").is_empty());
    assert_eq!(melody.topics().len(), 1, "an emptied topic is forgotten");
    assert_eq!(s[0].leave_all(), 1);
    assert_eq!(melody.topic("room:lobby").len(), 1);
}

#[tokio::test]
async fn publish_reaches_only_the_topic() {
    let (melody, _addr, mut c, s) = topic_hub(3).await;
    s[0].join("a").unwrap();
    s[1].join("a").unwrap();
    s[2].join("b").unwrap();
    assert_eq!(melody.topic("a").send("to a").unwrap(), 2);
    assert_eq!(melody.topic("b").send("to b").unwrap(), 1);
    assert_eq!(melody.topic("nobody").send("lost").unwrap(), 0);
    assert_eq!(recv_text(&mut c[0]).await, "to a");
    assert_eq!(recv_text(&mut c[1]).await, "to a");
    assert_eq!(recv_text(&mut c[2]).await, "to b");

    assert_eq!(
        melody
            .topic("b")
            .send(melody::Message::binary(vec![1u8, 2]))
            .unwrap(),
        1
    );
    assert!(recv(&mut c[2]).await.is_binary());
}

#[tokio::test]
async fn publish_others_skips_the_sender() {
    let (melody, _addr, mut c, s) = topic_hub(3).await;
    for session in &s {
        session.join("room").unwrap();
    }
    assert_eq!(
        melody.topic("room").except(&s[0]).send("from 0").unwrap(),
        2
    );
    melody.topic("room").send("all").unwrap();
    assert_eq!(recv_text(&mut c[0]).await, "all");
    assert_eq!(recv_text(&mut c[1]).await, "from 0");
    assert_eq!(recv_text(&mut c[2]).await, "from 0");
}

#[tokio::test]
async fn a_disconnected_session_leaves_all_its_topics() {
    let (melody, _addr, mut c, s) = topic_hub(2).await;
    let (events, mut log) = events();
    melody.on_disconnect(move |s| events.push(format!("gone, in {:?}", s.topics())));
    s[0].join("x").unwrap();
    s[0].join("y").unwrap();
    s[1].join("x").unwrap();
    drop(c.remove(0));
    // The disconnect handler still reads the topics it was in (presence on leave needs them).
    assert_eq!(log.next().await, r#"gone, in ["x", "y"]"#);
    assert_eq!(melody.topic("x").ids(), vec![s[1].id()]);
    assert!(melody.topic("y").is_empty());
    // A closed session cannot join again.
    assert_eq!(s[0].join("x"), Err(melody::JoinError::Closed));
}

#[tokio::test]
async fn send_to_by_id_and_session_lookup() {
    let (melody, _addr, mut c, s) = topic_hub(2).await;
    assert_eq!(
        melody.session(s[1].id()).send("direct"),
        Ok(melody::fanout::Reached::Here)
    );
    assert_eq!(recv_text(&mut c[1]).await, "direct");
    assert_eq!(
        melody.session(s[0].id()).get().map(|x| x.id()),
        Some(s[0].id())
    );

    let gone = s[0].id();
    drop(c.remove(0));
    eventually(|| melody.session(gone).get().is_none()).await;
    // Not connected, and no cluster to take it: the message comes back.
    match melody.session(gone).send("nobody") {
        Err(melody::SendToError::NotConnected(message)) => {
            assert_eq!(message.as_str(), Some("nobody"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(melody.all().sessions().len(), 1);
}

#[tokio::test]
async fn publishing_on_a_closed_hub_fails() {
    let (melody, _addr, _c, s) = topic_hub(1).await;
    s[0].join("t").unwrap();
    melody.close().unwrap();
    assert_eq!(melody.topic("t").send("late"), Err(melody::Closed));
}

/// One operation's span on a shared logical clock: it took effect somewhere in `start..end`.
#[derive(Clone, Copy, Debug)]
struct Span {
    start: u64,
    end: u64,
}

/// Many tasks join, leave and publish at once, with no lock of the test's own between them.
/// Every operation records its span on a shared atomic clock. Then, for every publish and every
/// session: if the session was surely in the topic for the whole publish, it must have received
/// the message; if it surely was not in the topic at any moment of the publish, it must not have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_join_leave_publish_is_consistent() {
    const CLIENTS: usize = 8;
    const ROUNDS: usize = 200;
    const TOPICS: usize = 3;
    let melody = Melody::with_config(Config::default().message_buffer_size(65536));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    melody.on_connect(move |s| {
        let _ = tx.send(s.clone());
    });
    let addr = spawn_app(&melody).await;
    let mut clients = Vec::new();
    let mut sessions = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(connect(addr).await);
        sessions.push(
            tokio::time::timeout(WAIT, rx.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }

    let clock = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let tick = |clock: &std::sync::atomic::AtomicU64| {
        clock.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    };

    // Each session task alternates join/leave on topics in turn: (topic, joined, span).
    let mut members = Vec::new();
    for (i, session) in sessions.iter().cloned().enumerate() {
        let clock = clock.clone();
        members.push(tokio::spawn(async move {
            let mut log = Vec::new();
            for round in 0..ROUNDS {
                let topic = format!("t{}", (i + round / 2) % TOPICS);
                let start = tick(&clock);
                let changed = if round % 2 == 0 {
                    session.join(&topic) == Ok(true)
                } else {
                    session.leave(&topic)
                };
                let end = tick(&clock);
                assert!(changed, "each call changes membership");
                log.push((topic, round % 2 == 0, Span { start, end }));
                tokio::task::yield_now().await;
            }
            log
        }));
    }
    // Two publishers: (seq, topic, span).
    let mut publishers = Vec::new();
    for p in 0..2u64 {
        let (melody, clock) = (melody.clone(), clock.clone());
        publishers.push(tokio::spawn(async move {
            let mut log = Vec::new();
            for n in 0..(ROUNDS as u64 * 2) {
                let seq = p * 1_000_000 + n;
                let topic = format!("t{}", n % TOPICS as u64);
                let start = tick(&clock);
                melody.topic(&topic).send(format!("{seq}")).unwrap();
                let end = tick(&clock);
                log.push((seq, topic, Span { start, end }));
                tokio::task::yield_now().await;
            }
            log
        }));
    }
    let mut membership = Vec::new();
    for task in members {
        membership.push(task.await.unwrap());
    }
    let mut publishes = Vec::new();
    for task in publishers {
        publishes.extend(task.await.unwrap());
    }

    melody.all().send("end").unwrap();
    let mut received: Vec<HashSet<u64>> = Vec::new();
    for client in &mut clients {
        let mut seqs = HashSet::new();
        loop {
            let text = recv_text(client).await;
            if text == "end" {
                break;
            }
            assert!(seqs.insert(text.parse().unwrap()), "duplicate delivery");
        }
        received.push(seqs);
    }

    let (mut must, mut must_not) = (0, 0);
    for (index, log) in membership.iter().enumerate() {
        for (seq, topic, publish) in &publishes {
            // Join/leave pairs of this session on this topic: [join, leave) windows.
            let ops: Vec<_> = log.iter().filter(|(t, _, _)| t == topic).collect();
            let mut surely_in = false;
            let mut maybe_in = false;
            for pair in ops.chunks(2) {
                let join = pair[0].2;
                let leave = pair.get(1).map(|op| op.2);
                // Surely a member for the whole publish: joined before it began, left after.
                if join.end < publish.start && leave.is_none_or(|l| l.start > publish.end) {
                    surely_in = true;
                }
                // Possibly a member at some moment of it.
                if join.start < publish.end && leave.is_none_or(|l| l.end > publish.start) {
                    maybe_in = true;
                }
            }
            let got = received[index].contains(seq);
            if surely_in {
                must += 1;
                assert!(
                    got,
                    "session {index} was in {topic} throughout message {seq} but missed it"
                );
            }
            if !maybe_in {
                must_not += 1;
                assert!(
                    !got,
                    "session {index} was never in {topic} during message {seq} but got it"
                );
            }
        }
    }
    assert!(
        must > 100 && must_not > 100,
        "the run must exercise both rules ({must}, {must_not})"
    );
    for client in &mut clients {
        assert!(
            tokio::time::timeout(Duration::from_millis(10), client.next())
                .await
                .is_err()
        );
    }
}
