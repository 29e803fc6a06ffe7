//! Several hubs as one over a real Redis: each hub serves its own port in this process, shares
//! one `redis-server` with the others, and is checked with real WebSocket clients. The same
//! scenarios as the core's in-process backplane tests, plus presence expiry and a broker restart.

#[path = "../../melody/tests/common/mod.rs"]
mod common;
mod harness;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use common::*;
use harness::Redis;
use melody::Melody;
use melody_redis::{Error, RedisBackplane, RedisOptions};

struct Node {
    melody: Melody,
    addr: SocketAddr,
    backplane: RedisBackplane,
}

fn options() -> RedisOptions {
    RedisOptions::default().namespace(harness::namespace())
}

async fn node(redis: &Redis, options: RedisOptions, router: bool) -> Node {
    let melody = Melody::new();
    let backplane = RedisBackplane::connect(redis.url(), options)
        .await
        .expect("connect to redis");
    melody.set_backplane(backplane.clone());
    if router {
        melody.allow_direct("dm");
        melody.on("ping", |session, _| async move {
            session.send_envelope("pong", ())?;
            Ok::<_, melody::router::BoxError>(())
        });
    } else {
        melody.handle_message(|s, text| {
            if let Some(topic) = text.strip_prefix("join:") {
                s.join(topic).unwrap();
                let _ = s.write(format!("joined {topic}"));
            }
        });
    }
    let addr = spawn_app(&melody).await;
    Node {
        melody,
        addr,
        backplane,
    }
}

/// `n` nodes on one Redis namespace, each echoing "join:T" as a topic join.
async fn cluster(redis: &Redis, n: usize) -> Vec<Node> {
    cluster_with(redis, n, options(), false).await
}

async fn cluster_with(redis: &Redis, n: usize, options: RedisOptions, router: bool) -> Vec<Node> {
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(node(redis, options.clone(), router).await);
    }
    nodes
}

/// Waits (bounded) until `check` holds for the cluster's presence as seen from `melody`.
async fn presence_until(
    melody: &Melody,
    what: &str,
    mut check: impl FnMut(usize, usize, usize) -> bool,
) {
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tick.tick().await;
        if let Ok(nodes) = melody.presence().await {
            let len = nodes.iter().map(|n| n.sessions).sum();
            let members = melody.cluster_members("room").await.map_or(0, |m| m.len());
            if check(nodes.len(), len, members) {
                return;
            }
        }
        assert!(start.elapsed() < WAIT, "presence never reached: {what}");
    }
}

#[tokio::test]
async fn broadcast_reaches_every_node_exactly_once() {
    let Some(redis) = harness::redis().await else {
        return;
    };
    let nodes = cluster(&redis, 3).await;
    let mut clients = Vec::new();
    for node in &nodes {
        clients.push(connect(node.addr).await);
        eventually(|| node.melody.len() == 1).await;
    }
    assert_eq!(nodes[0].melody.broadcast("to the cluster").unwrap(), 1);
    for client in &mut clients {
        assert_eq!(recv_text(client).await, "to the cluster");
    }
    // Exactly once: the next message each client sees is the next broadcast.
    nodes[2].melody.broadcast("second").unwrap();
    for client in &mut clients {
        assert_eq!(recv_text(client).await, "second");
    }
    // broadcast_others skips the sender on every node.
    let sender = nodes[1].melody.sessions().unwrap().pop().unwrap();
    nodes[1]
        .melody
        .broadcast_others("not for the sender", &sender)
        .unwrap();
    // Deliveries from one node arrive in order everywhere (there is no order across nodes).
    nodes[1].melody.broadcast("third").unwrap();
    assert_eq!(recv_text(&mut clients[0]).await, "not for the sender");
    assert_eq!(recv_text(&mut clients[1]).await, "third");
    assert_eq!(recv_text(&mut clients[2]).await, "not for the sender");
    assert_eq!(recv_text(&mut clients[0]).await, "third");
    assert_eq!(recv_text(&mut clients[2]).await, "third");

    let stats: Vec<_> = nodes.iter().map(|n| n.melody.stats()).collect();
    assert_eq!(stats[0].backplane_sent, 1);
    assert_eq!(stats[1].backplane_received, 2);
    assert_eq!(stats[0].backplane_received, 3);
    assert_eq!(
        stats[2].backplane_sent, 1,
        "deliveries from the backplane are never re-published"
    );
    assert_eq!(stats[1].backplane_errors, 0);
    eventually(|| nodes[1].backplane.stats().published == 2).await;
    let redis_stats = nodes[0].backplane.stats();
    assert_eq!(redis_stats.received, 3, "{redis_stats:?}");
    assert_eq!(redis_stats.publish_errors, 0);
    assert!(redis_stats.subscribed);
    assert!(nodes[0].backplane.stats().max_publish_lag < WAIT);
}

#[tokio::test]
async fn topic_publish_reaches_only_members_on_every_node() {
    let Some(redis) = harness::redis().await else {
        return;
    };
    let nodes = cluster(&redis, 3).await;
    let mut members = Vec::new();
    let mut outsiders = Vec::new();
    for node in &nodes {
        let mut member = connect(node.addr).await;
        send_text(&mut member, "join:room").await;
        assert_eq!(recv_text(&mut member).await, "joined room");
        members.push(member);
        let mut outsider = connect(node.addr).await;
        send_text(&mut outsider, "join:other").await;
        assert_eq!(recv_text(&mut outsider).await, "joined other");
        outsiders.push(outsider);
    }
    nodes[1].melody.publish("room", "for the room").unwrap();
    for member in &mut members {
        assert_eq!(recv_text(member).await, "for the room");
    }
    nodes[0].melody.broadcast("marker").unwrap();
    for client in members.iter_mut().chain(outsiders.iter_mut()) {
        // Outsiders (members of another topic) got nothing before it.
        assert_eq!(recv_text(client).await, "marker");
    }
    // publish_others skips the sender wherever it is.
    let sender = nodes[2].melody.members("room").pop().unwrap();
    nodes[2]
        .melody
        .publish_others("room", "not for the sender", &sender)
        .unwrap();
    // Same origin as the publish, so it arrives after it on every node.
    nodes[2].melody.broadcast("end").unwrap();
    assert_eq!(recv_text(&mut members[0]).await, "not for the sender");
    assert_eq!(recv_text(&mut members[1]).await, "not for the sender");
    assert_eq!(recv_text(&mut members[2]).await, "end");
    assert_eq!(recv_text(&mut members[0]).await, "end");
    assert_eq!(recv_text(&mut members[1]).await, "end");
    for outsider in &mut outsiders {
        assert_eq!(recv_text(outsider).await, "end");
    }
}

#[tokio::test]
async fn direct_send_reaches_a_session_on_another_node() {
    let Some(redis) = harness::redis().await else {
        return;
    };
    let nodes = cluster(&redis, 3).await;
    let mut near = connect(nodes[1].addr).await;
    let mut far = connect(nodes[2].addr).await;
    eventually(|| nodes[1].melody.len() == 1 && nodes[2].melody.len() == 1).await;
    let id = nodes[2].melody.sessions().unwrap()[0].id();
    assert!(nodes[0].melody.session(id).is_none(), "not on node 0");
    nodes[0].melody.send_to(id, "across nodes").unwrap();
    assert_eq!(recv_text(&mut far).await, "across nodes");
    // Only that session: the marker is the next thing the other node's client sees.
    nodes[0].melody.broadcast("marker").unwrap();
    assert_eq!(recv_text(&mut near).await, "marker");
    assert_eq!(recv_text(&mut far).await, "marker");
}

#[tokio::test]
async fn router_envelope_with_a_target_crosses_nodes() {
    let Some(redis) = harness::redis().await else {
        return;
    };
    let nodes = cluster_with(&redis, 2, options(), true).await;
    let mut sender = connect(nodes[0].addr).await;
    let mut recipient = connect(nodes[1].addr).await;
    eventually(|| nodes[0].melody.len() == 1 && nodes[1].melody.len() == 1).await;
    let from = nodes[0].melody.sessions().unwrap()[0].id();
    let to = nodes[1].melody.sessions().unwrap()[0].id();
    send_text(
        &mut sender,
        &format!(r#"{{"type":"dm","target":"{to}","data":"hello"}}"#),
    )
    .await;
    let got: serde_json::Value = serde_json::from_str(&recv_text(&mut recipient).await).unwrap();
    assert_eq!(got["type"], "dm");
    assert_eq!(got["data"], "hello");
    assert_eq!(got["from"], from.to_string());
    assert_eq!(got["target"], to.to_string());
    // The sender got no "target not connected" error: its next message is the pong.
    send_text(&mut sender, r#"{"type":"ping"}"#).await;
    let pong: serde_json::Value = serde_json::from_str(&recv_text(&mut sender).await).unwrap();
    assert_eq!(pong["type"], "pong");
}

#[tokio::test]
async fn presence_counts_sessions_and_topic_members_across_nodes() {
    let Some(redis) = harness::redis().await else {
        return;
    };
    let nodes = cluster(&redis, 3).await;
    let mut clients = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        for _ in 0..=i {
            let mut client = connect(node.addr).await;
            send_text(&mut client, "join:room").await;
            assert_eq!(recv_text(&mut client).await, "joined room");
            clients.push(client);
        }
    }
    // Converges within a heartbeat (1 s); polled with a bound.
    let start = Instant::now();
    for node in &nodes {
        presence_until(
            &node.melody,
            "3 nodes, 6 sessions, 6 members",
            |n, len, members| n == 3 && len == 6 && members == 6,
        )
        .await;
    }
    println!("presence converged in {:?}", start.elapsed());
    let melody = &nodes[0].melody;
    assert_eq!(melody.len(), 1, "local count");
    assert_eq!(melody.cluster_len().await.unwrap(), 6);
    let mut ids: Vec<_> = melody.cluster_members("room").await.unwrap();
    ids.sort();
    let mut expected: Vec<_> = nodes
        .iter()
        .flat_map(|n| n.melody.members("room"))
        .map(|s| s.id())
        .collect();
    expected.sort();
    assert_eq!(ids, expected);

    // A leave on node 2 shows on node 0 within the bound.
    let left = Instant::now();
    drop(clients.pop());
    presence_until(melody, "5 sessions after a close", |n, len, members| {
        n == 3 && len == 5 && members == 5
    })
    .await;
    println!("a close on another node showed in {:?}", left.elapsed());
    assert!(left.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_crashed_node_drops_out_of_presence_within_the_ttl() {
    let Some(redis) = harness::redis().await else {
        return;
    };
    let nodes = cluster(&redis, 3).await;
    let mut clients = Vec::new();
    for node in &nodes {
        clients.push(connect(node.addr).await);
    }
    presence_until(&nodes[0].melody, "3 nodes, 3 sessions", |n, len, _| {
        n == 3 && len == 3
    })
    .await;

    // A crash: node 2 stops heartbeating and its snapshot is left to expire.
    let crashed = Instant::now();
    nodes[2].backplane.stop();
    presence_until(&nodes[0].melody, "node 2 gone", |n, len, _| {
        n == 2 && len == 2
    })
    .await;
    let gone = crashed.elapsed();
    println!("a crashed node dropped out of presence after {gone:?} (ttl 3 s)");
    assert!(gone <= Duration::from_secs(4), "{gone:?}");
    assert!(!nodes[2].backplane.stats().subscribed);

    // A clean leave is seen at once.
    nodes[1].backplane.close().await.unwrap();
    let presence = nodes[0].melody.presence().await.unwrap();
    assert_eq!(presence.len(), 1, "{presence:?}");
    assert_eq!(presence[0].node, nodes[0].melody.node_id());

    // A stopped backplane reports what is published through it instead of losing it silently.
    let before = nodes[2].melody.stats().backplane_errors;
    nodes[2].melody.broadcast("into the void").unwrap();
    assert_eq!(nodes[2].melody.stats().backplane_errors, before + 1);
    assert_eq!(nodes[2].backplane.stats().dropped, 1);
}

#[tokio::test]
async fn a_broker_restart_costs_a_bounded_gap() {
    let Some(mut redis) = harness::restartable_redis().await else {
        return;
    };
    let nodes = cluster(&redis, 3).await;
    let mut clients = Vec::new();
    for node in &nodes {
        clients.push(connect(node.addr).await);
        eventually(|| node.melody.len() == 1).await;
    }
    nodes[0].melody.broadcast("before").unwrap();
    for client in &mut clients {
        assert_eq!(recv_text(client).await, "before");
    }

    // Outage: the broker is killed.
    let outage = Instant::now();
    redis.stop();
    for node in &nodes {
        eventually(|| !node.backplane.stats().subscribed).await;
    }
    let errors = nodes[0].melody.stats().backplane_errors;
    // Local delivery goes on during the outage; the other nodes miss it.
    nodes[0].melody.broadcast("lost").unwrap();
    assert_eq!(recv_text(&mut clients[0]).await, "lost");
    // Reported: counted by the hub and by the backplane, not silently dropped.
    eventually(|| nodes[0].backplane.stats().publish_errors >= 1).await;
    assert!(nodes[0].melody.stats().backplane_errors > errors);
    assert!(
        nodes[1].melody.presence().await.is_err(),
        "presence fails during an outage"
    );
    // Not synchronisation: the outage lasts a while, so that the subscribers' reconnect backoff
    // has grown to its maximum (1 s) — the worst case for the gap measured below.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let reconnects = nodes[1].backplane.stats().reconnects;
    assert_eq!(reconnects, 0, "no broker, no reconnect");

    // The broker comes back; measure until a broadcast from node 0 reaches node 1's client.
    redis.start().await;
    let restarted = Instant::now();
    let mut probe = 0u32;
    let gap = loop {
        probe += 1;
        nodes[0].melody.broadcast(format!("probe {probe}")).unwrap();
        let got = tokio::time::timeout(Duration::from_millis(50), recv_text(&mut clients[1])).await;
        if let Ok(text) = got {
            assert!(text.starts_with("probe "), "unexpected {text:?}");
            break restarted.elapsed();
        }
        assert!(
            restarted.elapsed() < WAIT,
            "delivery did not resume after the broker restart"
        );
    };
    println!(
        "broker restart: delivery resumed {gap:?} after the broker was back ({:?} after it went down, {probe} probes)",
        outage.elapsed()
    );
    assert!(gap < Duration::from_secs(5), "gap {gap:?}");

    // Every node re-subscribed and told its hub.
    for node in &nodes {
        eventually(|| node.backplane.stats().subscribed).await;
        eventually(|| node.melody.stats().backplane_reconnects >= 1).await;
        assert!(node.backplane.stats().reconnects >= 1);
    }
    // Delivery is whole again: everyone gets the next broadcast exactly once (after skipping
    // the probes still in flight).
    // (From node 0, the probes' origin, so it arrives after every probe.)
    nodes[0].melody.broadcast("after").unwrap();
    for client in &mut clients {
        loop {
            let text = recv_text(client).await;
            if text == "after" {
                break;
            }
            assert!(text.starts_with("probe "), "unexpected {text:?}");
        }
    }
    nodes[0].melody.broadcast("again").unwrap();
    for client in &mut clients {
        assert_eq!(recv_text(client).await, "again");
    }
    // Presence is back within a heartbeat.
    presence_until(
        &nodes[0].melody,
        "3 nodes after the restart",
        |n, len, _| n == 3 && len == 3,
    )
    .await;
}

#[tokio::test]
async fn connect_fails_fast_without_a_broker_and_checks_options() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let start = Instant::now();
    let result = RedisBackplane::connect(&format!("redis://127.0.0.1:{port}"), options()).await;
    assert!(result.is_err(), "nothing listens there");
    assert!(start.elapsed() < Duration::from_secs(3));
    let bad =
        RedisBackplane::connect("redis://127.0.0.1:1", RedisOptions::default().namespace("")).await;
    assert!(matches!(bad, Err(Error::InvalidOptions(_))));
    assert!(matches!(
        RedisBackplane::connect("not a url", options()).await,
        Err(Error::Redis(_))
    ));
}
