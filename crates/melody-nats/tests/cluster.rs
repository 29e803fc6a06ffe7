//! The cluster conformance suite (`melody/tests/conformance/`) against a real NATS server, one
//! broker per test, and what only NATS shows: topic names as subject tokens, presence by
//! request/reply with nodes that crash or leave, a broker restart, connect errors and the
//! retried first connect.

mod broker;
#[path = "../../melody/tests/common/mod.rs"]
mod common;
#[path = "../../melody/tests/conformance/mod.rs"]
#[macro_use]
mod conformance;

use std::{
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use broker::{Broker, broker};
use common::*;
use futures_util::StreamExt;
use melody::{
    Melody,
    cluster::{Cluster, NodePresence},
};
use melody_nats::{NatsDriver, NatsOptions};

/// A prefix of its own for each cluster, so tests sharing an external broker do not mix.
fn prefix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "melodytest.p{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// One test's broker and prefix; it keeps a handle to every driver it made (in the order the
/// nodes were made), for the NATS-only checks.
struct Nats {
    broker: Broker,
    prefix: String,
    /// The presence timeout of every driver made, when not the default.
    presence_timeout: Option<Duration>,
    drivers: Mutex<Vec<NatsDriver>>,
}

impl Nats {
    fn options(&self) -> NatsOptions {
        let options = NatsOptions::default().prefix(&self.prefix);
        match self.presence_timeout {
            Some(timeout) => options.presence_timeout(timeout),
            None => options,
        }
    }

    fn drivers(&self) -> MutexGuard<'_, Vec<NatsDriver>> {
        self.drivers.lock().unwrap()
    }
}

impl conformance::Fixture for Nats {
    type Driver = NatsDriver;

    async fn driver(&self) -> NatsDriver {
        let driver = NatsDriver::connect(&self.broker.url, self.options())
            .await
            .expect("connect to the test broker");
        self.drivers().push(driver.clone());
        driver
    }
}

/// A broker of its own for the test running on this thread (the test harness names the thread
/// after the test), or `None` after printing why there is none.
async fn nats() -> Option<Nats> {
    let test = std::thread::current()
        .name()
        .unwrap_or("melody-nats cluster test")
        .to_owned();
    Some(Nats {
        broker: broker(&test).await?,
        prefix: prefix(),
        presence_timeout: None,
        drivers: Mutex::default(),
    })
}

conformance_suite!(nats());

/// Whether the test can stop and restart its broker (not an external `NATS_URL` one).
fn owns(broker: &Broker, what: &str) -> bool {
    if !broker.is_owned() {
        let _ = std::io::Write::write_fmt(
            &mut std::io::stderr(),
            format_args!("skipping {what}: NATS_URL is an external broker it cannot stop\n"),
        );
    }
    broker.is_owned()
}

/// Polls `node`'s presence until `check` holds (bounded by WAIT).
async fn presence_where(
    cluster: &Cluster,
    what: &str,
    check: impl Fn(&[NodePresence]) -> bool,
) -> Vec<NodePresence> {
    tokio::time::timeout(WAIT, async {
        loop {
            let presence = cluster.presence().await.unwrap();
            if check(&presence) {
                return presence;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("presence never reached: {what}"))
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

#[tokio::test]
async fn topic_names_become_subject_tokens_and_order_holds_across_subjects() {
    let Some(fixture) = nats().await else {
        return;
    };
    let nodes = conformance::cluster(&fixture, 2).await;
    // Spaces, dots and wildcards are not allowed in NATS subject tokens: the topic is encoded.
    let topic = "room 1.a*b>";
    let mut member = conformance::member(&nodes[1], topic).await;
    // A member of a look-alike topic is an outsider.
    let mut outsider = conformance::member(&nodes[1], "room 1").await;
    nodes[0].melody.topic(topic).send("for the room").unwrap();
    nodes[0].melody.all().send("marker").unwrap();
    // One subscription per node: a topic send and a send to everyone arrive as they were sent.
    assert_eq!(until(&mut member, "marker").await, ["for the room"]);
    assert_eq!(until(&mut outsider, "marker").await, Vec::<String>::new());
    let sender = fixture.drivers()[0].clone();
    eventually(|| sender.stats().published == 2).await;
    assert!(sender.stats().connected);
}

#[tokio::test]
async fn a_frame_over_the_servers_max_payload_is_dropped_alone() {
    let Some(fixture) = nats().await else {
        return;
    };
    let nodes = conformance::cluster(&fixture, 2).await;
    let mut member = conformance::member(&nodes[1], "room").await;
    // Queued together, so they travel in one batch: the oversized frame must not take the
    // frames after it down with it.
    let room = nodes[0].melody.topic("room");
    room.clone().send("first").unwrap();
    room.clone().send("x".repeat(2 * 1024 * 1024)).unwrap();
    room.send("after").unwrap();
    assert_eq!(until(&mut member, "after").await, ["first"]);
    let stats = || nodes[0].cluster.stats();
    eventually(|| stats().dropped == 1 && stats().errors == 1).await;
    assert_eq!(fixture.drivers()[0].stats().published, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn presence_waits_only_for_live_nodes_and_nodes_that_leave_drop_out() {
    let Some(mut fixture) = nats().await else {
        return;
    };
    // Long, so that "answered before the timeout" is never luck.
    let timeout = Duration::from_secs(2);
    fixture.presence_timeout = Some(timeout);
    let nodes = conformance::cluster(&fixture, 3).await;
    let mut clients = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        for _ in 0..=i {
            clients.push(conformance::member(node, "room").await);
        }
    }
    let cluster = &nodes[0].cluster;
    presence_where(cluster, "6 sessions", |p| {
        p.iter().map(|n| n.sessions).sum::<usize>() == 6
    })
    .await;
    let started = Instant::now();
    let presence = cluster.presence().await.unwrap();
    let elapsed = started.elapsed();
    println!("presence of 3 nodes, all known: {elapsed:?}");
    assert!(elapsed < timeout, "returns once every known node answered");
    let mut ids: Vec<_> = nodes.iter().map(|n| n.cluster.node()).collect();
    ids.sort();
    assert_eq!(presence.iter().map(|p| p.node).collect::<Vec<_>>(), ids);

    // Two nodes crash (their hubs dropped, no goodbye): one whose driver is gone with it, one
    // whose driver handle lives on elsewhere. Neither answers for its hub any more.
    let mut crashed = Vec::new();
    let mut kept = None;
    for keep in [false, true] {
        let melody = Melody::new();
        let driver = NatsDriver::connect(&fixture.broker.url, fixture.options())
            .await
            .unwrap();
        if keep {
            kept = Some(driver.clone());
        }
        let node = Cluster::attach(&melody, driver).unwrap();
        crashed.push((melody, node));
    }
    let crashed_ids: Vec<_> = crashed.iter().map(|(_, c)| c.node()).collect();
    presence_where(cluster, "the new nodes are counted", |p| p.len() == 5).await;
    let timeouts = fixture.drivers()[0].stats().presence_timeouts;
    drop(crashed);
    let started = Instant::now();
    let presence = presence_where(cluster, "the crashed nodes drop out", |p| p.len() == 3).await;
    println!("presence right after a crash: {:?}", started.elapsed());
    assert!(presence.iter().all(|p| !crashed_ids.contains(&p.node)));
    assert_eq!(
        fixture.drivers()[0].stats().presence_timeouts,
        timeouts + 1,
        "the answer right after the crash waited for them, once"
    );
    let started = Instant::now();
    assert_eq!(cluster.presence().await.unwrap().len(), 3);
    assert!(
        started.elapsed() < timeout,
        "fast again: they are forgotten"
    );
    drop(kept);

    // A node whose hub closes says goodbye and drops out at once, without a timeout.
    let started = Instant::now();
    nodes[2].melody.close().unwrap();
    presence_where(cluster, "node 2 drops out", |p| p.len() == 2).await;
    assert!(started.elapsed() < timeout, "{:?}", started.elapsed());
    assert_eq!(fixture.drivers()[0].stats().presence_timeouts, timeouts + 1);
    assert_eq!(
        cluster.session_count().await.unwrap(),
        3,
        "node 2's sessions are gone"
    );
    assert_eq!(cluster.members("room").await.unwrap().len(), 3);
    drop(clients);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_restart_costs_a_bounded_gap_and_delivery_resumes() {
    let Some(mut fixture) = nats().await else {
        return;
    };
    if !owns(&fixture.broker, "the restart test") {
        return;
    }
    let nodes = conformance::cluster(&fixture, 3).await;
    let drivers = fixture.drivers().clone();
    let mut clients = Vec::new();
    for node in &nodes {
        clients.push(connect(node.addr).await);
        eventually(|| node.melody.all().len() == 1).await;
    }
    nodes[0].melody.all().send("before").unwrap();
    for client in &mut clients {
        assert_eq!(recv_text(client).await, "before");
    }

    fixture.broker.stop();
    eventually(|| drivers.iter().all(|d| !d.is_connected())).await;
    // Sent during the outage: dropped and reported (counted), never replayed later.
    let errors_before = nodes[0].cluster.stats().errors;
    nodes[0].melody.all().send("during the outage").unwrap();
    eventually(|| nodes[0].cluster.stats().dropped == 1).await;
    assert!(nodes[0].cluster.stats().errors > errors_before);
    assert!(
        nodes[1].cluster.presence().await.is_err(),
        "presence fails in an outage"
    );
    // The clients on node 0 still get local sends.
    assert_eq!(recv_text(&mut clients[0]).await, "during the outage");

    // Keep the broker down long enough for the clients' reconnect backoff to reach its cap
    // (1 s): this is the scenario's outage length, not a synchronisation.
    let down = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    fixture.broker.start().await;
    let restarted = Instant::now();
    // Probe from node 0 until node 1's client hears one: the gap the outage costs past the
    // broker's own downtime.
    let mut probes = 0;
    let gap = tokio::time::timeout(WAIT, async {
        loop {
            nodes[0]
                .melody
                .all()
                .send(format!("probe {probes}"))
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
    eventually(|| drivers.iter().all(NatsDriver::is_connected)).await;
    for node in &nodes {
        eventually(|| node.cluster.stats().reconnects == 1).await;
    }
    // Node 2 may still be re-subscribing: probe from it until every client hears it.
    for (from, marker) in [(2, "from 2"), (0, "from 0")] {
        let mut round = 0;
        tokio::time::timeout(WAIT, async {
            loop {
                let text = format!("{marker} #{round}");
                nodes[from].melody.all().send(text.clone()).unwrap();
                round += 1;
                let mut heard = true;
                for client in &mut clients {
                    let got = tokio::time::timeout(Duration::from_millis(50), async {
                        loop {
                            let message = client.next().await.unwrap().unwrap();
                            if message.as_text() == Some(text.as_str()) {
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
    nodes[1].melody.all().send("after").unwrap();
    for client in &mut clients {
        let before = until(client, "after").await;
        assert!(
            before
                .iter()
                .all(|t| t.starts_with("from ") || t.starts_with("probe ")),
            "{before:?}"
        );
    }
    assert_eq!(nodes[0].cluster.session_count().await.unwrap(), 3);
    let stats = drivers[1].stats();
    println!(
        "node 1 after the restart: {stats:?} {:?}",
        nodes[1].cluster.stats()
    );
    assert!(stats.disconnects == 1 && nodes[1].cluster.stats().received > 0);
    assert_eq!(
        nodes[1].cluster.stats().errors,
        1,
        "the outage is reported once, not once per reconnect attempt"
    );
}

#[tokio::test]
async fn bad_prefixes_and_unreachable_brokers_are_errors() {
    for prefix in ["", "a..b", "a b", "a.*", "a.>", "."] {
        let result =
            NatsDriver::connect("nats://127.0.0.1:1", NatsOptions::default().prefix(prefix)).await;
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
        NatsDriver::connect(&format!("nats://127.0.0.1:{port}"), NatsOptions::default()),
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
    let Some(mut fixture) = nats().await else {
        return;
    };
    if !owns(&fixture.broker, "the first-connect retry test") {
        return;
    }
    let a = conformance::node(&fixture).await;
    let a_driver = fixture.drivers()[0].clone();
    fixture.broker.stop();
    let late = Melody::new();
    let driver = NatsDriver::connect(
        &fixture.broker.url,
        fixture.options().retry_on_initial_connect(true),
    )
    .await
    .expect("returns at once");
    let late_cluster = Cluster::attach(&late, driver.clone()).unwrap();
    assert!(!driver.is_connected());
    late.all().send("nobody hears this").unwrap();
    eventually(|| late_cluster.stats().dropped == 1).await;
    // The failed first attempt (reported once, not per retry) and the lost frame. The attempt
    // is reported by the client's event callback, which may come after the drop is counted.
    eventually(|| late_cluster.stats().errors >= 1).await;
    fixture.broker.start().await;
    eventually(|| driver.is_connected() && a_driver.is_connected()).await;
    let mut client = connect(a.addr).await;
    eventually(|| a.melody.all().len() == 1).await;
    tokio::time::timeout(WAIT, async {
        let mut round = 0;
        loop {
            late.all().send(format!("late #{round}")).unwrap();
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

#[tokio::test]
async fn one_driver_serves_one_hub() {
    let Some(fixture) = nats().await else {
        return;
    };
    let driver = conformance::Fixture::driver(&fixture).await;
    Cluster::attach(&Melody::new(), driver.clone()).unwrap();
    // A clone attached to a second hub is refused there: reported (at attach) and counted.
    let second = Melody::new();
    let cluster = Cluster::attach(&second, driver).unwrap();
    assert_eq!(cluster.stats().errors, 1);
}
