//! Several hubs as one through a backplane (here the in-process one; the Redis and NATS
//! backends have the same tests against real brokers in their crates).

mod common;

use common::*;
use melody::{
    Melody, Message,
    backplane::{Delivery, LocalBackplane, NodeId, Target},
};

/// Three nodes on one bus, each serving its own port, each echoing "join:T" as a topic join
/// and handing sessions to the test.
async fn cluster() -> Vec<(Melody, std::net::SocketAddr)> {
    let bus = LocalBackplane::new();
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let melody = Melody::new();
        melody.set_backplane(bus.clone());
        melody.handle_message(|s, text| {
            if let Some(topic) = text.strip_prefix("join:") {
                s.join(topic).unwrap();
                let _ = s.write(format!("joined {topic}"));
            }
        });
        let addr = spawn_app(&melody).await;
        nodes.push((melody, addr));
    }
    nodes
}

#[tokio::test]
async fn broadcast_reaches_every_node_exactly_once() {
    let nodes = cluster().await;
    let mut clients = Vec::new();
    for (melody, addr) in &nodes {
        clients.push(connect(*addr).await);
        eventually(|| melody.len() == 1).await;
    }
    assert_eq!(
        nodes[0].0.broadcast("to the cluster").unwrap(),
        1,
        "one local session"
    );
    for client in &mut clients {
        assert_eq!(recv_text(client).await, "to the cluster");
    }
    // Exactly once: the next message each client sees is the next broadcast.
    nodes[2].0.broadcast("second").unwrap();
    for client in &mut clients {
        assert_eq!(recv_text(client).await, "second");
    }
    let stats: Vec<_> = nodes.iter().map(|(m, _)| m.stats()).collect();
    assert_eq!(stats[0].backplane_sent, 1);
    assert_eq!(stats[1].backplane_received, 2);
    assert_eq!(
        stats[1].backplane_sent, 0,
        "deliveries from the backplane are never re-published"
    );
}

#[tokio::test]
async fn topic_publish_reaches_only_members_on_every_node() {
    let nodes = cluster().await;
    let mut members = Vec::new();
    let mut outsiders = Vec::new();
    for (_, addr) in &nodes {
        let mut member = connect(*addr).await;
        send_text(&mut member, "join:room").await;
        assert_eq!(recv_text(&mut member).await, "joined room");
        members.push(member);
        outsiders.push(connect(*addr).await);
    }
    nodes[1].0.publish("room", "for the room").unwrap();
    for member in &mut members {
        assert_eq!(recv_text(member).await, "for the room");
    }
    nodes[0].0.broadcast("marker").unwrap();
    for client in members.iter_mut().chain(outsiders.iter_mut()) {
        // Outsiders got nothing before it.
        assert_eq!(recv_text(client).await, "marker");
    }
    // publish_others skips the sender wherever it is.
    let sender = nodes[2].0.members("room").pop().unwrap();
    nodes[2]
        .0
        .publish_others("room", "not for the sender", &sender)
        .unwrap();
    nodes[1].0.broadcast("end").unwrap();
    assert_eq!(recv_text(&mut members[0]).await, "not for the sender");
    assert_eq!(recv_text(&mut members[1]).await, "not for the sender");
    assert_eq!(recv_text(&mut members[2]).await, "end");
}

#[tokio::test]
async fn direct_send_reaches_a_session_on_another_node() {
    let nodes = cluster().await;
    let mut far = connect(nodes[2].1).await;
    eventually(|| nodes[2].0.len() == 1).await;
    let id = nodes[2].0.sessions().unwrap()[0].id();
    assert!(nodes[0].0.session(id).is_none(), "not on node 0");
    nodes[0].0.send_to(id, "across nodes").unwrap();
    assert_eq!(recv_text(&mut far).await, "across nodes");
}

#[tokio::test]
async fn session_ids_differ_across_nodes_and_deliveries_round_trip() {
    let nodes = cluster().await;
    assert_ne!(nodes[0].0.node_id(), nodes[1].0.node_id());
    let delivery = Delivery {
        origin: NodeId(1),
        target: Target::TopicExcept("t".into(), melody::SessionId::from(42)),
        message: Message::binary(vec![0u8, 255]),
    };
    assert_eq!(Delivery::decode(&delivery.encode()).unwrap(), delivery);
    for bad in [
        &b""[..],
        b"\x02",
        b"\x01\0\0\0\0\0\0\0\0\x09",
        b"\x01\0\0\0\0\0\0\0\0\x02\0\0\0\xff",
    ] {
        assert!(Delivery::decode(bad).is_err());
    }
}

#[tokio::test]
async fn presence_counts_sessions_and_topic_members_across_nodes() {
    let nodes = cluster().await;
    let mut clients = Vec::new();
    for (i, (_, addr)) in nodes.iter().enumerate() {
        for _ in 0..=i {
            let mut client = connect(*addr).await;
            send_text(&mut client, "join:room").await;
            assert_eq!(recv_text(&mut client).await, "joined room");
            clients.push(client);
        }
    }
    let melody = &nodes[0].0;
    assert_eq!(melody.len(), 1, "local count");
    assert_eq!(melody.cluster_len().await.unwrap(), 6);
    let members = melody.cluster_members("room").await.unwrap();
    assert_eq!(members.len(), 6);
    assert_eq!(melody.presence().await.unwrap().len(), 3);
    let snapshot = &melody.presence().await.unwrap()[2];
    assert_eq!(
        melody::backplane::NodePresence::decode(&snapshot.encode()).unwrap(),
        *snapshot
    );
}

/// A backplane whose broker is always down: every publish is reported as an error.
#[derive(Clone, Default)]
struct DownBackplane {
    inbox: std::sync::Arc<std::sync::OnceLock<melody::backplane::Inbox>>,
}

impl melody::backplane::Backplane for DownBackplane {
    fn start(&self, inbox: melody::backplane::Inbox) {
        let _ = self.inbox.set(inbox);
    }

    fn publish(&self, _target: &Target, _delivery: melody::Bytes) {
        let error = std::io::Error::new(std::io::ErrorKind::NotConnected, "broker down");
        self.inbox.get().unwrap().report_error(&error);
    }
}

#[tokio::test]
async fn backplane_failures_are_counted_and_reach_the_handler() {
    let melody = Melody::new();
    let backplane = DownBackplane::default();
    melody.set_backplane(backplane.clone());
    let (events, mut log) = events();
    melody.handle_backplane_error(move |error| events.push(error.to_string()));
    let addr = spawn_app(&melody).await;
    let mut client = connect(addr).await;
    eventually(|| melody.len() == 1).await;

    // Local delivery goes on; the lost remote copy is reported.
    melody.broadcast("local still works").unwrap();
    assert_eq!(recv_text(&mut client).await, "local still works");
    assert_eq!(log.next().await, "broker down");
    assert_eq!(melody.stats().backplane_errors, 1);
    assert!(backplane.inbox.get().unwrap().is_attached());
    drop(client);
    drop(melody);
}

#[cfg(feature = "sse")]
#[tokio::test]
async fn sse_events_published_on_one_node_reach_members_on_another() {
    let nodes = cluster().await;
    let mut member = connect(nodes[1].1).await;
    send_text(&mut member, "join:device-1").await;
    assert_eq!(recv_text(&mut member).await, "joined device-1");
    nodes[0]
        .0
        .publish_event(
            "device-1",
            melody::sse::Event::new("from node 0").event("update"),
        )
        .unwrap();
    assert_eq!(recv_text(&mut member).await, "from node 0");
}
