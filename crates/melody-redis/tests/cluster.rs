//! The cluster conformance suite (`melody/tests/conformance/`) over a real Redis — each node a
//! hub serving its own port in this process, all sharing one `redis-server` — plus what only a
//! Redis deployment shows: presence expiry after a crash, a broker restart, connection errors.

#[path = "../../melody/tests/common/mod.rs"]
mod common;
#[path = "../../melody/tests/conformance/mod.rs"]
#[macro_use]
mod conformance;
mod harness;

use std::time::{Duration, Instant};

use common::*;
use conformance::{Node, presence_until};
use harness::Redis;
use melody_redis::{Error, RedisDriver, RedisOptions};

fn options() -> RedisOptions {
    RedisOptions::default().namespace(harness::namespace())
}

/// One broker and one namespace per test; every node of the test shares both.
struct RedisFixture {
    redis: Redis,
    options: RedisOptions,
}

impl conformance::Fixture for RedisFixture {
    type Driver = RedisDriver;

    async fn driver(&self) -> RedisDriver {
        RedisDriver::connect(self.redis.url(), self.options.clone())
            .await
            .expect("connect to redis")
    }
}

async fn fixture() -> Option<RedisFixture> {
    Some(RedisFixture {
        redis: harness::redis().await?,
        options: options(),
    })
}

conformance_suite!(fixture());

/// `n` nodes, with a handle to each node's driver.
async fn cluster(fixture: &RedisFixture, n: usize) -> Vec<(Node, RedisDriver)> {
    let mut nodes = Vec::new();
    for _ in 0..n {
        let driver = conformance::Fixture::driver(fixture).await;
        let node = conformance::node(&Fixed(driver.clone())).await;
        nodes.push((node, driver));
    }
    nodes
}

/// A fixture that hands out one given driver.
struct Fixed(RedisDriver);

impl conformance::Fixture for Fixed {
    type Driver = RedisDriver;

    async fn driver(&self) -> RedisDriver {
        self.0.clone()
    }
}

#[tokio::test]
async fn a_crashed_node_drops_out_of_presence_within_the_ttl() {
    let Some(fixture) = fixture().await else {
        return;
    };
    let nodes = cluster(&fixture, 3).await;
    let mut clients = Vec::new();
    for (node, _) in &nodes {
        clients.push(connect(node.addr).await);
    }
    presence_until(&nodes[0].0, "3 nodes, 3 sessions", |n, len, _| {
        n == 3 && len == 3
    })
    .await;

    // A crash: node 2 stops heartbeating and its snapshot is left to expire.
    let crashed = Instant::now();
    nodes[2].1.stop();
    presence_until(&nodes[0].0, "node 2 gone", |n, len, _| n == 2 && len == 2).await;
    let gone = crashed.elapsed();
    println!("a crashed node dropped out of presence after {gone:?} (ttl 3 s)");
    assert!(gone <= Duration::from_secs(4), "{gone:?}");
    assert!(!nodes[2].1.stats().subscribed);

    // A clean leave is seen at once.
    nodes[1].1.close().await.unwrap();
    let presence = nodes[0].0.cluster.presence().await.unwrap();
    assert_eq!(presence.len(), 1, "{presence:?}");
    assert_eq!(presence[0].node, nodes[0].0.cluster.node());

    // A stopped driver reports what is sent through it instead of losing it silently.
    let cluster = &nodes[2].0.cluster;
    let before = cluster.stats().errors;
    nodes[2].0.melody.all().send("into the void").unwrap();
    eventually(|| cluster.stats().errors == before + 1).await;
    assert_eq!(cluster.stats().dropped, 1);
}

#[tokio::test]
async fn a_broker_restart_costs_a_bounded_gap() {
    let Some(redis) = harness::restartable_redis().await else {
        return;
    };
    let mut fixture = RedisFixture {
        redis,
        options: options(),
    };
    let nodes = cluster(&fixture, 3).await;
    let mut clients = Vec::new();
    for (node, _) in &nodes {
        clients.push(connect(node.addr).await);
        eventually(|| node.melody.all().len() == 1).await;
    }
    nodes[0].0.melody.all().send("before").unwrap();
    for client in &mut clients {
        assert_eq!(recv_text(client).await, "before");
    }

    // Outage: the broker is killed.
    let outage = Instant::now();
    fixture.redis.stop();
    for (_, driver) in &nodes {
        eventually(|| !driver.stats().subscribed).await;
    }
    let errors = nodes[0].0.cluster.stats().errors;
    // Local delivery goes on during the outage; the other nodes miss it.
    nodes[0].0.melody.all().send("lost").unwrap();
    assert_eq!(recv_text(&mut clients[0]).await, "lost");
    // Reported: counted by the cluster and by the driver, not silently dropped.
    eventually(|| nodes[0].1.stats().publish_errors >= 1).await;
    eventually(|| nodes[0].0.cluster.stats().errors > errors).await;
    assert!(
        nodes[1].0.cluster.presence().await.is_err(),
        "presence fails during an outage"
    );
    // Not synchronisation: the outage lasts a while, so that the subscribers' reconnect backoff
    // has grown to its maximum (1 s) — the worst case for the gap measured below.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let reconnects = nodes[1].1.stats().reconnects;
    assert_eq!(reconnects, 0, "no broker, no reconnect");

    // The broker comes back; measure until a broadcast from node 0 reaches node 1's client.
    fixture.redis.start().await;
    let restarted = Instant::now();
    let mut probe = 0u32;
    let gap = loop {
        probe += 1;
        nodes[0]
            .0
            .melody
            .all()
            .send(format!("probe {probe}"))
            .unwrap();
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

    // Every node re-subscribed and told its cluster.
    for (node, driver) in &nodes {
        eventually(|| driver.stats().subscribed).await;
        eventually(|| node.cluster.stats().reconnects >= 1).await;
        assert!(driver.stats().reconnects >= 1);
    }
    // Delivery is whole again: everyone gets the next broadcast exactly once (after skipping
    // the probes still in flight).
    // (From node 0, the probes' origin, so it arrives after every probe.)
    nodes[0].0.melody.all().send("after").unwrap();
    for client in &mut clients {
        loop {
            let text = recv_text(client).await;
            if text == "after" {
                break;
            }
            assert!(text.starts_with("probe "), "unexpected {text:?}");
        }
    }
    nodes[0].0.melody.all().send("again").unwrap();
    for client in &mut clients {
        assert_eq!(recv_text(client).await, "again");
    }
    // Presence is back within a heartbeat.
    presence_until(&nodes[0].0, "3 nodes after the restart", |n, len, _| {
        n == 3 && len == 3
    })
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
    let result = RedisDriver::connect(&format!("redis://127.0.0.1:{port}"), options()).await;
    assert!(result.is_err(), "nothing listens there");
    assert!(start.elapsed() < Duration::from_secs(3));
    let bad =
        RedisDriver::connect("redis://127.0.0.1:1", RedisOptions::default().namespace("")).await;
    assert!(matches!(bad, Err(Error::InvalidOptions(_))));
    assert!(matches!(
        RedisDriver::connect("not a url", options()).await,
        Err(Error::Redis(_))
    ));
}
