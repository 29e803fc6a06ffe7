//! The cluster conformance suite: the same scenarios, with real WebSocket clients, against every
//! cluster driver — the in-process `LocalBus` (`tests/cluster_local.rs`), Redis
//! (`melody-redis/tests/cluster.rs`) and NATS (`melody-nats/tests/cluster.rs`). A driver crate
//! includes this file with `#[path]` and runs it with [`conformance_suite!`] and a fixture that
//! makes drivers; scenarios that only one broker can play (a restart) stay in its crate.
//!
//! Nodes speak typed envelopes (the `router` plug-in): `{"type":"join","data":"room"}` joins a
//! topic (answered `{"type":"joined","data":"room"}`), `{"type":"ping"}` is answered with a
//! pong, and `dm` envelopes may be sent to a session on any node.
#![allow(dead_code, unreachable_pub)]

use std::{future::Future, net::SocketAddr, time::Duration};

use axum::{Router, routing::get};
use melody::{
    Melody,
    cluster::{Cluster, Driver},
    fanout::Reached,
    router::{self, Envelope},
    sse::{Sse, TopicResolver},
};
use serde_json::{Value, json};

use crate::common::*;

/// Makes the drivers of one test's nodes (all connected to the same broker and namespace).
pub trait Fixture: Sync {
    /// The driver type.
    type Driver: Driver;
    /// A new driver for one more node.
    fn driver(&self) -> impl Future<Output = Self::Driver> + Send;
}

/// One node: a hub with a cluster, served on its own port (WebSocket on `/ws`, SSE on
/// `/events?topic=T`).
pub struct Node {
    pub melody: Melody,
    pub cluster: Cluster,
    pub addr: SocketAddr,
}

pub async fn node<F: Fixture>(fixture: &F) -> Node {
    let melody = Melody::new();
    let cluster = Cluster::attach(&melody, fixture.driver().await).expect("one cluster per hub");
    melody.plug(
        router::Router::new()
            .on_data("join", |session, topic: String| async move {
                session.join(&topic)?;
                session.send(Envelope::encode("joined", topic)?)?;
                Ok(())
            })
            .on("ping", |session, _| async move {
                session.send(Envelope::encode("pong", ())?)?;
                Ok(())
            })
            .allow_direct("dm"),
    );
    let sse = Sse::attach(&melody);
    let app = Router::new()
        .route("/ws", get(melody.handler()))
        .route("/events", get(sse.handler(TopicResolver::query("topic"))));
    let addr = spawn_router(app).await;
    Node {
        melody,
        cluster,
        addr,
    }
}

pub async fn cluster<F: Fixture>(fixture: &F, n: usize) -> Vec<Node> {
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(node(fixture).await);
    }
    nodes
}

/// A client of `node` that has joined `topic`.
pub async fn member(node: &Node, topic: &str) -> Client {
    let mut client = connect(node.addr).await;
    send_text(
        &mut client,
        &json!({"type": "join", "data": topic}).to_string(),
    )
    .await;
    assert_eq!(
        recv_json(&mut client).await,
        json!({"type": "joined", "data": topic})
    );
    client
}

pub async fn recv_json(client: &mut Client) -> Value {
    serde_json::from_str(&recv_text(client).await).unwrap()
}

/// Waits (bounded by `WAIT`) until `check` holds for the presence `node` sees.
pub async fn presence_until(node: &Node, what: &str, check: impl Fn(usize, usize, usize) -> bool) {
    let outcome = tokio::time::timeout(WAIT, async {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tick.tick().await;
            let Ok(nodes) = node.cluster.presence().await else {
                continue;
            };
            let sessions = nodes.iter().map(|n| n.sessions).sum();
            let members = node.cluster.members("room").await.map_or(0, |m| m.len());
            if check(nodes.len(), sessions, members) {
                return;
            }
        }
    })
    .await;
    assert!(outcome.is_ok(), "presence never reached: {what}");
}

/// Sends `marker` to everyone from node 0 and waits for it on each client: whatever was sent
/// to them before has arrived (each node's frames arrive in order).
async fn flush(nodes: &[Node], clients: &mut [&mut Client], marker: &str) {
    nodes[0].melody.all().send(marker).unwrap();
    for client in clients.iter_mut() {
        assert_eq!(recv_text(client).await, marker);
    }
}

pub async fn broadcast_reaches_every_node_exactly_once<F: Fixture>(fixture: &F) {
    let nodes = cluster(fixture, 3).await;
    let mut clients = Vec::new();
    for node in &nodes {
        clients.push(connect(node.addr).await);
        eventually(|| node.melody.all().len() == 1).await;
    }
    assert_eq!(
        nodes[0].melody.all().send("to the cluster").unwrap(),
        1,
        "one session on this node"
    );
    for client in &mut clients {
        assert_eq!(recv_text(client).await, "to the cluster");
    }
    // Exactly once: the next message each client sees is the next broadcast.
    nodes[2].melody.all().send("second").unwrap();
    for client in &mut clients {
        assert_eq!(recv_text(client).await, "second");
    }
    assert_eq!(nodes[0].cluster.stats().sent, 1);
    assert_eq!(nodes[1].cluster.stats().received, 2);
    assert_eq!(
        nodes[1].cluster.stats().sent,
        0,
        "what arrives from other nodes is never sent on"
    );
}

pub async fn except_skips_the_sender_on_every_node<F: Fixture>(fixture: &F) {
    let nodes = cluster(fixture, 2).await;
    let mut a = connect(nodes[0].addr).await;
    let mut b = connect(nodes[1].addr).await;
    eventually(|| nodes[1].melody.all().len() == 1).await;
    let sender = nodes[1].melody.all().sessions().pop().unwrap();
    nodes[1]
        .melody
        .all()
        .except(&sender)
        .send("not for the sender")
        .unwrap();
    assert_eq!(recv_text(&mut a).await, "not for the sender");
    flush(&nodes, &mut [&mut a, &mut b], "marker").await;
}

pub async fn topic_sends_reach_only_members_on_every_node<F: Fixture>(fixture: &F) {
    let nodes = cluster(fixture, 3).await;
    let mut members = Vec::new();
    let mut outsiders = Vec::new();
    for node in &nodes {
        members.push(member(node, "room").await);
        outsiders.push(connect(node.addr).await);
    }
    nodes[1].melody.topic("room").send("for the room").unwrap();
    for member in &mut members {
        assert_eq!(recv_text(member).await, "for the room");
    }
    // Outsiders got nothing before the marker.
    let mut all: Vec<&mut Client> = members.iter_mut().chain(outsiders.iter_mut()).collect();
    flush(&nodes, &mut all, "marker").await;
    // `except` skips the sender wherever it is.
    let sender = nodes[2].melody.topic("room").sessions().pop().unwrap();
    nodes[2]
        .melody
        .topic("room")
        .except(&sender)
        .send("not for the sender")
        .unwrap();
    assert_eq!(recv_text(&mut members[0]).await, "not for the sender");
    assert_eq!(recv_text(&mut members[1]).await, "not for the sender");
    let mut sender_only: Vec<&mut Client> = members.iter_mut().skip(2).collect();
    flush(&nodes, &mut sender_only, "end").await;
}

pub async fn local_sends_stay_on_their_node<F: Fixture>(fixture: &F) {
    let nodes = cluster(fixture, 2).await;
    let mut a = connect(nodes[0].addr).await;
    let mut b = connect(nodes[1].addr).await;
    eventually(|| nodes[1].melody.all().len() == 1).await;
    nodes[1].melody.all().local().send("only here").unwrap();
    assert_eq!(recv_text(&mut b).await, "only here");
    flush(&nodes, &mut [&mut a, &mut b], "marker").await;
}

pub async fn direct_sends_reach_a_session_on_another_node<F: Fixture>(fixture: &F) {
    let nodes = cluster(fixture, 3).await;
    let mut far = connect(nodes[2].addr).await;
    eventually(|| nodes[2].melody.all().len() == 1).await;
    let id = nodes[2].melody.all().ids()[0];
    assert!(nodes[0].melody.session(id).get().is_none(), "not on node 0");
    assert_eq!(
        nodes[0].melody.session(id).send("across nodes"),
        Ok(Reached::Forwarded)
    );
    assert_eq!(recv_text(&mut far).await, "across nodes");
}

pub async fn direct_envelopes_cross_nodes<F: Fixture>(fixture: &F) {
    let nodes = cluster(fixture, 2).await;
    let mut sender = connect(nodes[0].addr).await;
    let mut recipient = connect(nodes[1].addr).await;
    eventually(|| nodes[0].melody.all().len() == 1 && nodes[1].melody.all().len() == 1).await;
    let from = nodes[0].melody.all().ids()[0];
    let to = nodes[1].melody.all().ids()[0];
    let dm = json!({"type": "dm", "target": to, "data": "hello"});
    send_text(&mut sender, &dm.to_string()).await;
    let got = recv_json(&mut recipient).await;
    assert_eq!(got["type"], "dm");
    assert_eq!(got["data"], "hello");
    assert_eq!(got["from"], json!(from));
    assert_eq!(got["target"], json!(to));
    // The sender got no "target not connected" error: its next message is the pong.
    send_text(&mut sender, r#"{"type":"ping"}"#).await;
    assert_eq!(recv_json(&mut sender).await["type"], "pong");
}

pub async fn presence_counts_sessions_and_topic_members_across_nodes<F: Fixture>(fixture: &F) {
    let nodes = cluster(fixture, 3).await;
    let mut clients = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        for _ in 0..=i {
            clients.push(member(node, "room").await);
        }
    }
    assert_eq!(nodes[0].melody.all().len(), 1, "this node's count");
    presence_until(&nodes[0], "3 nodes, 6 sessions, 6 members", |n, s, m| {
        n == 3 && s == 6 && m == 6
    })
    .await;
    let presence = nodes[0].cluster.presence().await.unwrap();
    let snapshot = &presence[0];
    assert_eq!(
        melody::cluster::NodePresence::decode(&snapshot.encode()).unwrap(),
        *snapshot
    );
    // A node that leaves drops out.
    drop(clients.pop());
    presence_until(&nodes[0], "5 sessions", |_, s, m| s == 5 && m == 5).await;
}

pub async fn sse_subscribers_on_another_node_get_topic_sends<F: Fixture>(fixture: &F) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let nodes = cluster(fixture, 2).await;
    let mut member = member(&nodes[1], "device-1").await;
    let mut sse = tokio::net::TcpStream::connect(nodes[1].addr).await.unwrap();
    sse.write_all(b"GET /events?topic=device-1 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let subscribers = Sse::of(&nodes[1].melody).unwrap();
    eventually(|| subscribers.subscribers("device-1") == 1).await;
    Sse::attach(&nodes[0].melody)
        .publish(
            "device-1",
            melody::sse::Event::new("from node 0").event("update"),
        )
        .unwrap();
    assert_eq!(recv_text(&mut member).await, "from node 0");
    let mut received = Vec::new();
    tokio::time::timeout(WAIT, async {
        let mut buf = [0u8; 1024];
        while !received.windows(17).any(|w| w == b"data: from node 0") {
            let n = sse.read(&mut buf).await.unwrap();
            assert!(n > 0);
            received.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("the SSE subscriber on the other node got nothing");
}

/// Runs every scenario of the suite as a test, with the fixture `$fixture` (an expression of
/// type `impl Future<Output = Option<F>>`: `None` skips, when the broker is missing).
#[macro_export]
macro_rules! conformance_suite {
    ($fixture:expr) => {
        $crate::conformance_suite!(@tests $fixture;
            broadcast_reaches_every_node_exactly_once,
            except_skips_the_sender_on_every_node,
            topic_sends_reach_only_members_on_every_node,
            local_sends_stay_on_their_node,
            direct_sends_reach_a_session_on_another_node,
            direct_envelopes_cross_nodes,
            presence_counts_sessions_and_topic_members_across_nodes,
            sse_subscribers_on_another_node_get_topic_sends,
        );
    };
    (@tests $fixture:expr; $($scenario:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $scenario() {
                let Some(fixture) = $fixture.await else {
                    return;
                };
                conformance::$scenario(&fixture).await;
            }
        )*
    };
}
