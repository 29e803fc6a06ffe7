//! Several hubs as one through a real NATS server: each node serves its own port, real
//! WebSocket clients connect to each, and the broker is stopped and restarted mid-test.

mod broker;
#[path = "../../melody/tests/common/mod.rs"]
mod common;

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use broker::{Broker, broker};
use common::*;
use futures_util::StreamExt;
use melody::Melody;
use melody_nats::{NatsBackplane, NatsOptions};

/// A prefix of its own for each cluster, so tests sharing an external broker do not mix.
fn prefix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "melodytest.p{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

struct Node {
    melody: Melody,
    addr: std::net::SocketAddr,
    backplane: NatsBackplane,
    prefix: String,
}

/// A hub on the broker, echoing "join:T" as a topic join.
async fn node(url: &str, prefix: &str) -> Node {
    let melody = Melody::new();
    let backplane = NatsBackplane::connect(url, NatsOptions::default().prefix(prefix))
        .await
        .unwrap();
    melody.set_backplane(backplane.clone());
    melody.handle_message(|s, text| {
        if let Some(topic) = text.strip_prefix("join:") {
            s.join(topic).unwrap();
            let _ = s.write(format!("joined {topic}"));
        }
    });
    let addr = spawn_app(&melody).await;
    Node {
        melody,
        addr,
        backplane,
        prefix: prefix.to_owned(),
    }
}

async fn cluster(broker: &Broker, n: usize) -> Vec<Node> {
    let prefix = prefix();
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(node(&broker.url, &prefix).await);
    }
    nodes
}

/// Reads text messages until `marker`, returning those before it.
async fn until(client: &mut Client, marker: &str) -> Vec<String> {
    let mut before = Vec::new();
    loop {
        let text = recv_text(client).await;
        if text == marker {
            return before;
        }
        before.push(text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broadcast_reaches_every_node_exactly_once() {
    let Some(broker) = broker("broadcast_reaches_every_node_exactly_once").await else {
        return;
    };
    let nodes = cluster(&broker, 3).await;
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
    // broadcast_others skips the sender on its own node and reaches the others.
    let sender = nodes[1].melody.sessions().unwrap().pop().unwrap();
    nodes[1]
        .melody
        .broadcast_others("not for 1", &sender)
        .unwrap();
    // Order holds per sending node: a marker from the same node follows what it sent.
    nodes[1].melody.broadcast("third").unwrap();
    assert_eq!(until(&mut clients[0], "third").await, ["not for 1"]);
    assert_eq!(until(&mut clients[1], "third").await, Vec::<String>::new());
    assert_eq!(until(&mut clients[2], "third").await, ["not for 1"]);

    let stats: Vec<_> = nodes.iter().map(|n| n.melody.stats()).collect();
    assert_eq!(stats[0].backplane_sent, 1);
    assert_eq!(stats[1].backplane_sent, 2);
    assert_eq!(
        stats[2].backplane_sent, 1,
        "received deliveries are never re-published"
    );
    assert_eq!(stats[0].backplane_received, 3);
    assert_eq!(stats[1].backplane_received, 2);
    assert_eq!(stats[2].backplane_received, 3);
    assert!(stats.iter().all(|s| s.backplane_errors == 0));
    eventually(|| nodes[1].backplane.stats().published == 2).await;
    let nats = nodes[2].backplane.stats();
    assert_eq!((nats.received, nats.dropped, nats.queued), (3, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn topic_publish_reaches_only_members_on_every_node() {
    let Some(broker) = broker("topic_publish_reaches_only_members_on_every_node").await else {
        return;
    };
    let nodes = cluster(&broker, 3).await;
    // Spaces, dots and wildcards are not allowed in NATS subject tokens: the topic is encoded.
    let topic = "room 1.a*b>";
    let mut members = Vec::new();
    let mut outsiders = Vec::new();
    for node in &nodes {
        let mut member = connect(node.addr).await;
        send_text(&mut member, &format!("join:{topic}")).await;
        assert_eq!(recv_text(&mut member).await, format!("joined {topic}"));
        members.push(member);
        // A member of a look-alike topic is an outsider.
        let mut other = connect(node.addr).await;
        send_text(&mut other, "join:room 1").await;
        assert_eq!(recv_text(&mut other).await, "joined room 1");
        outsiders.push(other);
    }
    nodes[1].melody.publish(topic, "for the room").unwrap();
    for member in &mut members {
        assert_eq!(recv_text(member).await, "for the room");
    }
    // Order holds per sending node: outsiders see the sender's next message and nothing before.
    nodes[1].melody.broadcast("marker").unwrap();
    for client in members.iter_mut().chain(outsiders.iter_mut()) {
        // Outsiders got nothing before it; members nothing more.
        assert_eq!(recv_text(client).await, "marker");
    }
    // publish_others skips the sender wherever it is.
    let sender = nodes[2].melody.members(topic).pop().unwrap();
    nodes[2]
        .melody
        .publish_others(topic, "not for the sender", &sender)
        .unwrap();
    nodes[2].melody.broadcast("end").unwrap();
    assert_eq!(until(&mut members[0], "end").await, ["not for the sender"]);
    assert_eq!(until(&mut members[1], "end").await, ["not for the sender"]);
    assert_eq!(until(&mut members[2], "end").await, Vec::<String>::new());
    for outsider in &mut outsiders {
        assert_eq!(until(outsider, "end").await, Vec::<String>::new());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn direct_send_reaches_a_session_on_another_node() {
    let Some(broker) = broker("direct_send_reaches_a_session_on_another_node").await else {
        return;
    };
    let nodes = cluster(&broker, 3).await;
    let mut far = connect(nodes[2].addr).await;
    let mut near = connect(nodes[1].addr).await;
    eventually(|| nodes[2].melody.len() == 1 && nodes[1].melody.len() == 1).await;
    let id = nodes[2].melody.sessions().unwrap()[0].id();
    assert!(nodes[0].melody.session(id).is_none(), "not on node 0");
    nodes[0].melody.send_to(id, "across nodes").unwrap();
    assert_eq!(recv_text(&mut far).await, "across nodes");
    nodes[0].melody.broadcast("marker").unwrap();
    assert_eq!(recv_text(&mut far).await, "marker");
    assert_eq!(
        recv_text(&mut near).await,
        "marker",
        "only the addressee got it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn presence_counts_match_and_stopped_nodes_disappear() {
    let Some(broker) = broker("presence_counts_match_and_stopped_nodes_disappear").await else {
        return;
    };
    let nodes = cluster(&broker, 3).await;
    let mut clients = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        for _ in 0..=i {
            let mut client = connect(node.addr).await;
            send_text(&mut client, "join:room").await;
            assert_eq!(recv_text(&mut client).await, "joined room");
            clients.push(client);
        }
    }
    for node in &nodes {
        assert_eq!(node.melody.cluster_len().await.unwrap(), 6);
        assert_eq!(node.melody.cluster_members("room").await.unwrap().len(), 6);
        assert!(
            node.melody
                .cluster_members("elsewhere")
                .await
                .unwrap()
                .is_empty()
        );
    }
    let melody = &nodes[0].melody;
    assert_eq!(melody.len(), 1, "local count");
    let started = Instant::now();
    let presence = melody.presence().await.unwrap();
    let elapsed = started.elapsed();
    println!("presence of 3 nodes, all known: {elapsed:?}");
    assert!(
        elapsed < Duration::from_millis(250),
        "returns once every known node answered"
    );
    let mut ids: Vec<_> = nodes.iter().map(|n| n.melody.node_id()).collect();
    ids.sort();
    assert_eq!(presence.iter().map(|p| p.node).collect::<Vec<_>>(), ids);

    // A node that crashes (hub and backplane dropped, no goodbye) stops answering at once.
    let crashed = Melody::new();
    crashed.set_backplane(
        NatsBackplane::connect(&broker.url, NatsOptions::default().prefix(&nodes[0].prefix))
            .await
            .unwrap(),
    );
    let crashed_id = crashed.node_id();
    let has_crashed = |presence: &[melody::backplane::NodePresence]| {
        presence.iter().any(|p| p.node == crashed_id)
    };
    assert!(
        has_crashed(&wait_nodes(melody, 4).await),
        "a new node is counted"
    );
    drop(crashed);
    let started = Instant::now();
    let presence = melody.presence().await.unwrap();
    println!("presence right after a crash: {:?}", started.elapsed());
    assert!(
        !has_crashed(&presence),
        "a crashed node is gone from the next answer"
    );
    assert_eq!(presence.len(), 3);
    let started = Instant::now();
    assert_eq!(melody.presence().await.unwrap().len(), 3);
    assert!(started.elapsed() < Duration::from_millis(250), "fast again");

    // A node that stops cleanly says goodbye and disappears at once.
    nodes[2].backplane.close().await;
    assert_eq!(wait_nodes(melody, 2).await.len(), 2);
    assert_eq!(
        melody.cluster_len().await.unwrap(),
        3,
        "node 2's three sessions are gone"
    );
    assert_eq!(melody.cluster_members("room").await.unwrap().len(), 3);
    drop(clients);
}

/// Polls presence until it lists `n` nodes (bounded by WAIT).
async fn wait_nodes(melody: &Melody, n: usize) -> Vec<melody::backplane::NodePresence> {
    tokio::time::timeout(WAIT, async {
        loop {
            let presence = melody.presence().await.unwrap();
            if presence.len() == n {
                return presence;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("presence never listed {n} nodes"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_restart_costs_a_bounded_gap_and_delivery_resumes() {
    let Some(mut broker) = broker("broker_restart_costs_a_bounded_gap_and_delivery_resumes").await
    else {
        return;
    };
    if !broker.is_owned() {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"skipping the restart test: NATS_URL is an external broker it cannot restart\n",
        );
        return;
    }
    let nodes = cluster(&broker, 3).await;
    let mut clients = Vec::new();
    for node in &nodes {
        clients.push(connect(node.addr).await);
        eventually(|| node.melody.len() == 1).await;
    }
    nodes[0].melody.broadcast("before").unwrap();
    for client in &mut clients {
        assert_eq!(recv_text(client).await, "before");
    }

    broker.stop();
    eventually(|| nodes.iter().all(|n| !n.backplane.is_connected())).await;
    // Published during the outage: dropped and reported (counted), never replayed later.
    let errors_before = nodes[0].melody.stats().backplane_errors;
    nodes[0].melody.broadcast("during the outage").unwrap();
    eventually(|| nodes[0].backplane.stats().dropped == 1).await;
    assert!(nodes[0].melody.stats().backplane_errors > errors_before);
    assert!(
        nodes[1].melody.cluster_len().await.is_err(),
        "presence fails in an outage"
    );
    // The clients on node 0 still get local deliveries.
    assert_eq!(recv_text(&mut clients[0]).await, "during the outage");

    // Keep the broker down long enough for the clients' reconnect backoff to reach its cap (1 s):
    // this is the scenario's outage length, not a synchronisation.
    let down = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    broker.start().await;
    let restarted = Instant::now();
    // Probe from node 0 until node 1's client hears one: the gap the outage costs past the
    // broker's own downtime.
    let mut probes = 0;
    let gap = tokio::time::timeout(WAIT, async {
        loop {
            nodes[0]
                .melody
                .broadcast(format!("probe {probes}"))
                .unwrap();
            probes += 1;
            let next = tokio::time::timeout(Duration::from_millis(20), async {
                loop {
                    let message = clients[1].next().await.unwrap().unwrap();
                    if let Some(text) = message.as_text() {
                        return text.to_owned();
                    }
                }
            });
            if let Ok(text) = next.await {
                assert!(text.starts_with("probe "), "got {text:?}");
                return restarted.elapsed();
            }
        }
    })
    .await
    .expect("delivery never resumed");
    println!(
        "broker restart: delivery from node 0 to node 1 resumed {gap:?} after the restart \
         ({:?} after the stop)",
        down.elapsed()
    );
    assert!(gap < Duration::from_secs(5), "gap {gap:?}");

    // Every node is back and delivers again, exactly once, with nothing from the outage.
    eventually(|| nodes.iter().all(|n| n.backplane.is_connected())).await;
    for node in &nodes {
        let n = node.backplane.clone();
        eventually(move || n.stats().reconnects == 1).await;
        let melody = node.melody.clone();
        eventually(move || melody.stats().backplane_reconnects == 1).await;
    }
    // Node 2 may still be re-subscribing: probe from it until every client hears it.
    for (from, marker) in [(2, "from 2"), (0, "from 0")] {
        let mut round = 0;
        tokio::time::timeout(WAIT, async {
            loop {
                let text = format!("{marker} #{round}");
                nodes[from].melody.broadcast(text.clone()).unwrap();
                round += 1;
                let mut heard = true;
                for client in clients.iter_mut() {
                    let got = tokio::time::timeout(Duration::from_millis(50), async {
                        loop {
                            let message = client.next().await.unwrap().unwrap();
                            if let Some(t) = message.as_text()
                                && t == text
                            {
                                return;
                            }
                            assert_ne!(message.as_text(), Some("during the outage"));
                        }
                    })
                    .await;
                    heard &= got.is_ok();
                }
                if heard {
                    return;
                }
            }
        })
        .await
        .expect("delivery did not resume on every node");
    }
    nodes[1].melody.broadcast("after").unwrap();
    for client in &mut clients {
        let before = until(client, "after").await;
        assert!(
            before
                .iter()
                .all(|t| t.starts_with("from ") || t.starts_with("probe ")),
            "{before:?}"
        );
    }
    assert_eq!(nodes[0].melody.cluster_len().await.unwrap(), 3);
    let stats = nodes[1].backplane.stats();
    println!("node 1 after the restart: {stats:?}");
    assert!(stats.received > 0 && stats.disconnects == 1);
    assert_eq!(
        nodes[1].melody.stats().backplane_errors,
        1,
        "the outage is reported once, not once per reconnect attempt"
    );
}

#[tokio::test]
async fn bad_prefixes_and_unreachable_brokers_are_errors() {
    for prefix in ["", "a..b", "a b", "a.*", "a.>", "."] {
        let result =
            NatsBackplane::connect("nats://127.0.0.1:1", NatsOptions::default().prefix(prefix))
                .await;
        assert!(
            matches!(result, Err(melody_nats::Error::InvalidPrefix(_))),
            "{prefix:?}: {result:?}"
        );
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let result = tokio::time::timeout(
        WAIT,
        NatsBackplane::connect(&format!("nats://127.0.0.1:{port}"), NatsOptions::default()),
    )
    .await
    .expect("connect gave up in time");
    assert!(
        matches!(result, Err(melody_nats::Error::Connect(_))),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_on_initial_connect_joins_once_the_broker_is_up() {
    let Some(mut broker) = broker("retry_on_initial_connect_joins_once_the_broker_is_up").await
    else {
        return;
    };
    if !broker.is_owned() {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"skipping: NATS_URL is an external broker it cannot stop\n",
        );
        return;
    }
    let prefix = prefix();
    let a = node(&broker.url, &prefix).await;
    broker.stop();
    let late = Melody::new();
    let backplane = NatsBackplane::connect(
        &broker.url,
        NatsOptions::default()
            .prefix(&prefix)
            .retry_on_initial_connect(true),
    )
    .await
    .expect("returns at once");
    late.set_backplane(backplane.clone());
    assert!(!backplane.is_connected());
    late.broadcast("nobody hears this").unwrap();
    eventually(|| backplane.stats().dropped == 1).await;
    // The failed first attempt (reported once, not per retry) and the dropped delivery.
    assert!(late.stats().backplane_errors >= 1);
    broker.start().await;
    eventually(|| backplane.is_connected() && a.backplane.is_connected()).await;
    let mut client = connect(a.addr).await;
    eventually(|| a.melody.len() == 1).await;
    tokio::time::timeout(WAIT, async {
        let mut round = 0;
        loop {
            late.broadcast(format!("late #{round}")).unwrap();
            round += 1;
            if tokio::time::timeout(Duration::from_millis(50), recv_text(&mut client))
                .await
                .is_ok()
            {
                return;
            }
        }
    })
    .await
    .expect("the late node never reached the cluster");
}
