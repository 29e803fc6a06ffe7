//! Live topics with their history in Redis (`RedisHistory`), across nodes of one cluster, with
//! a real `redis-server` and real clients: one order per topic under publishers on different
//! nodes, recovery on another node than the one a client left, an exact seam while publishing
//! goes on elsewhere, and `recovered: false` once the stream is gone.

#[path = "../../melody/tests/common/mod.rs"]
mod common;
mod harness;
#[path = "../../melody/tests/common/live_client.rs"]
mod live_client;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use common::*;
use harness::Redis;
use live_client::LiveClient;
use melody::{
    Melody,
    cluster::Cluster,
    live::{History, Live, LiveHub},
};
use melody_redis::{RedisDriver, RedisHistory, RedisOptions};
use serde_json::json;

/// A node: a hub with a Redis cluster driver and live topics in Redis, on its own port.
struct Node {
    _melody: Melody,
    addr: SocketAddr,
    live: LiveHub,
    driver: RedisDriver,
}

async fn node(redis: &Redis, options: &RedisOptions) -> Node {
    let melody = Melody::new();
    // A test that fails on an `internal error` reply shows the cause here.
    melody.on_error(|session, error| eprintln!("session {}: {error}", session.id()));
    let driver = RedisDriver::connect(redis.url(), options.clone())
        .await
        .expect("connect the driver");
    Cluster::attach(&melody, driver.clone()).expect("one cluster per hub");
    let store = RedisHistory::connect(redis.url(), options.clone())
        .await
        .expect("connect the history store");
    melody.plug(
        Live::new()
            .presence("room:*")
            .history("room:*", History::new().size(10_000))
            .presence_watch(Duration::from_millis(100))
            .store(store),
    );
    let live = LiveHub::of(&melody).unwrap();
    let addr = spawn_app(&melody).await;
    Node {
        _melody: melody,
        addr,
        live,
        driver,
    }
}

async fn two_nodes() -> Option<(Redis, RedisOptions, Node, Node)> {
    let redis = harness::redis().await?;
    // A short presence bound, for the crashed-node test.
    let options = RedisOptions::default()
        .namespace(harness::namespace())
        .heartbeat(Duration::from_millis(100))
        .presence_ttl(Duration::from_millis(500));
    let a = node(&redis, &options).await;
    let b = node(&redis, &options).await;
    Some((redis, options, a, b))
}

/// The offsets of the `pub`s a client receives next, `n` of them.
async fn offsets(client: &mut LiveClient, n: usize) -> Vec<u64> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        got.push(client.next_of("pub").await["offset"].as_u64().unwrap());
    }
    got
}

#[tokio::test]
async fn publishers_on_two_nodes_make_one_order_that_every_subscriber_sees() {
    let Some((_redis, _, a, b)) = two_nodes().await else {
        return;
    };
    let mut on_a = LiveClient::connect(a.addr).await;
    let mut on_b = LiveClient::connect(b.addr).await;
    let first = on_a.subscribe(json!({"topic": "room:1"})).await;
    on_b.subscribe(json!({"topic": "room:1"})).await;
    let start = first["offset"].as_u64().unwrap_or(0);
    // Both nodes publish at once, 100 each.
    let publishing = [&a.live, &b.live].map(|live| {
        let live = live.clone();
        tokio::spawn(async move {
            for n in 0..100 {
                live.publish("room:1", n).await.unwrap();
            }
        })
    });
    for task in publishing {
        task.await.unwrap();
    }
    let expected: Vec<u64> = (start + 1..=start + 200).collect();
    assert_eq!(offsets(&mut on_a, 200).await, expected);
    assert_eq!(offsets(&mut on_b, 200).await, expected);
    // Nothing twice: the feed delivers each publication once per node, the cluster none.
    assert_silent(&mut on_a.ws, Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_client_recovers_on_another_node_what_was_published_anywhere() {
    let Some((_redis, _, a, b)) = two_nodes().await else {
        return;
    };
    let mut client = LiveClient::connect(a.addr).await;
    let reply = client.subscribe(json!({"topic": "room:2"})).await;
    let epoch = reply["epoch"].as_str().unwrap().to_owned();
    a.live.publish("room:2", "one").await.unwrap();
    let seen = client.next_of("pub").await["offset"].as_u64().unwrap();
    drop(client);
    for n in 0..5 {
        let publisher = if n % 2 == 0 { &a.live } else { &b.live };
        publisher.publish("room:2", n).await.unwrap();
    }
    let mut back = LiveClient::connect(b.addr).await;
    let reply = back
        .subscribe(json!({"topic": "room:2", "since": {"epoch": epoch, "offset": seen}}))
        .await;
    assert_eq!(reply["recovered"], true, "{reply}");
    let recovered: Vec<u64> = reply["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(recovered, (seen + 1..=seen + 5).collect::<Vec<_>>());
    assert_eq!(reply["publications"][4]["data"], 4);
    a.live.publish("room:2", "live").await.unwrap();
    assert_eq!(back.next_of("pub").await["offset"], seen + 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seam_is_exact_while_another_node_publishes() {
    let Some((_redis, _, a, b)) = two_nodes().await else {
        return;
    };
    let running = Arc::new(AtomicBool::new(true));
    let publisher = tokio::spawn({
        let (live, running) = (b.live.clone(), running.clone());
        async move {
            let mut n = 0u64;
            while running.load(Ordering::Relaxed) {
                n += 1;
                live.publish("room:seam", n).await.unwrap();
            }
            n
        }
    });
    let mut client = LiveClient::connect(a.addr).await;
    let reply = client.subscribe(json!({"topic": "room:seam"})).await;
    let epoch = reply["epoch"].clone();
    let mut last = reply["offset"].as_u64().unwrap();
    for _round in 0..15 {
        for _ in 0..20 {
            let offset = client.next_of("pub").await["offset"].as_u64().unwrap();
            assert_eq!(offset, last + 1, "gap or repeat in the live stream");
            last = offset;
        }
        client
            .request("unsubscribe", json!({"topic": "room:seam"}))
            .await;
        while let Some(message) = client.inbox.pop_front() {
            assert_eq!(message["data"]["offset"], last + 1);
            last += 1;
        }
        let reply = client
            .subscribe(json!({"topic": "room:seam", "since": {"epoch": epoch, "offset": last}}))
            .await;
        assert_eq!(reply["recovered"], true, "{reply}");
        for publication in reply["publications"].as_array().unwrap() {
            assert_eq!(publication["offset"], last + 1, "gap or repeat at the seam");
            last += 1;
        }
        assert!(client.inbox.is_empty(), "publications before the reply");
    }
    running.store(false, Ordering::Relaxed);
    assert!(publisher.await.unwrap() > 300);
}

#[tokio::test]
async fn a_stream_that_is_gone_is_not_recovered() {
    let Some((redis, options, a, _b)) = two_nodes().await else {
        return;
    };
    a.live.publish("room:3", "before").await.unwrap();
    let mut client = LiveClient::connect(a.addr).await;
    let reply = client
        .subscribe(json!({"topic": "room:3", "history": 5}))
        .await;
    let epoch = reply["epoch"].as_str().unwrap().to_owned();
    assert_eq!(reply["publications"][0]["data"], "before");
    drop(client);
    // The keys expire (here: are deleted), then the room goes on: a new epoch.
    let ns = options.get_namespace();
    let mut connection = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(format!("{ns}:live:room:3:meta"))
        .arg(format!("{ns}:live:room:3:stream"))
        .query_async(&mut connection)
        .await
        .unwrap();
    let published = a.live.publish("room:3", "after").await.unwrap();
    assert_eq!(published.offset, Some(1));
    let mut back = LiveClient::connect(a.addr).await;
    let reply = back
        .subscribe(json!({"topic": "room:3", "since": {"epoch": epoch, "offset": 1}}))
        .await;
    assert_eq!(reply["recovered"], false, "{reply}");
    assert_ne!(reply["epoch"], epoch.as_str());
    assert_eq!(reply["publications"], json!([]));
}

#[tokio::test]
async fn presence_events_reach_members_on_the_other_node() {
    let Some((_redis, _, a, b)) = two_nodes().await else {
        return;
    };
    let mut on_a = LiveClient::connect(a.addr).await;
    on_a.subscribe(json!({"topic": "room:p"})).await;
    let mut on_b = LiveClient::connect(b.addr).await;
    let reply = on_b.subscribe(json!({"topic": "room:p"})).await;
    // The member list is the node's own; the events cross nodes.
    assert_eq!(reply["members"].as_array().unwrap().len(), 1);
    let b_id = reply["members"][0]["id"].clone();
    assert_eq!(on_a.next_of("join").await["member"]["id"], b_id);
    drop(on_b);
    assert_eq!(on_a.next_of("leave").await["member"]["id"], b_id);
}

/// A node that vanishes without its members leaving (its cluster stops: no more presence, no
/// more frames) has its members announced gone to the other nodes' members, once.
#[tokio::test]
async fn the_members_of_a_node_that_vanished_leave() {
    let Some((_redis, _, a, b)) = two_nodes().await else {
        return;
    };
    let mut on_a = LiveClient::connect(a.addr).await;
    on_a.subscribe(json!({"topic": "room:crash"})).await;
    let mut on_b = LiveClient::connect(b.addr).await;
    let reply = on_b.subscribe(json!({"topic": "room:crash"})).await;
    let b_id = reply["members"][0]["id"].clone();
    assert_eq!(on_a.next_of("join").await["member"]["id"], b_id);
    // Seen in the cluster's presence by node a before it vanishes.
    let cluster_a = Cluster::of(&a._melody).unwrap();
    eventually_async(|| async {
        cluster_a
            .members("room:crash")
            .await
            .is_ok_and(|ids| ids.len() == 2)
    })
    .await;
    b.driver.stop();
    let left = on_a.next_of("leave").await;
    assert_eq!(left["member"]["id"], b_id);
    assert_eq!(left["topic"], "room:crash");
    // Its client is still connected to node b: it was the node that went.
    assert_silent(&mut on_a.ws, Duration::from_millis(1500)).await;
    drop(on_b);
}

/// Polls an async condition until it holds (bounded by WAIT).
async fn eventually_async<F, Fut>(mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    tokio::time::timeout(WAIT, async {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        while !condition().await {
            tick.tick().await;
        }
    })
    .await
    .expect("condition not met in time");
}
