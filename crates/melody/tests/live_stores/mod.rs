//! The history store suite: the same live-topic scenarios, with real clients and two nodes,
//! against every shared history store — Redis (`melody-redis/tests/live.rs`) and NATS
//! JetStream (`melody-nats/tests/live.rs`). A store crate includes this file with `#[path]` and
//! runs it with [`live_store_suite!`] and a fixture that makes cluster drivers and stores on
//! one broker.
//!
//! Each node is a hub with a cluster driver and live topics whose history is in the store:
//! `room:*` (presence, history of 10,000), `small:*` (history of 3), `news:*` (history, also
//! served to SSE streams on `/events?topic=`).
#![allow(dead_code, unreachable_pub)]

use std::{
    future::Future,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use melody::{
    Melody,
    cluster::{Cluster, Driver},
    live::{History, HistoryStore, Live, LiveHub},
    sse::{Sse, TopicResolver},
};
use serde_json::json;

use crate::{common::*, live_client::LiveClient, sse_client::SseClient};

/// Makes one test's drivers and stores, all on the same broker and namespace.
pub trait StoreFixture: Sync {
    /// The cluster driver.
    type Driver: Driver + Clone;
    /// The history store.
    type Store: HistoryStore + Clone;
    /// A driver for one more node.
    fn driver(&self) -> impl Future<Output = Self::Driver> + Send;
    /// A store for one more node.
    fn store(&self) -> impl Future<Output = Self::Store> + Send;
    /// Cuts a node off the cluster as a crash would (no goodbye), its hub and clients alive.
    fn cut_off(&self, driver: &Self::Driver) -> impl Future<Output = ()> + Send;
    /// Removes a topic's stream from the store, as its expiry would.
    fn forget(&self, topic: &str) -> impl Future<Output = ()> + Send;
}

/// A node: a hub with a cluster driver and live topics in the store, on its own port.
pub struct Node<D> {
    pub melody: Melody,
    pub addr: SocketAddr,
    pub live: LiveHub,
    pub driver: D,
}

pub async fn node<F: StoreFixture>(fixture: &F) -> Node<F::Driver> {
    let melody = Melody::new();
    // A test that fails on an `internal error` reply shows the cause here.
    melody.on_error(|session, error| eprintln!("session {}: {error}", session.id()));
    let driver = fixture.driver().await;
    Cluster::attach(&melody, driver.clone()).expect("one cluster per hub");
    melody.plug(
        Live::new()
            .presence("room:*")
            .history("room:*", History::new().size(10_000))
            .history("small:*", History::new().size(3))
            .history("news:*", History::new())
            .info(|session| json!({ "session": session.id().to_string() }))
            .presence_watch(Duration::from_millis(100))
            .store(fixture.store().await),
    );
    let live = LiveHub::of(&melody).unwrap();
    let app = axum::Router::new()
        .route("/ws", axum::routing::get(melody.handler()))
        .route(
            "/events",
            axum::routing::get(live.sse_handler(TopicResolver::query("topic"))),
        );
    let addr = spawn_router(app).await;
    Node {
        melody,
        addr,
        live,
        driver,
    }
}

/// The offsets of the `pub`s a client receives next, `n` of them.
async fn offsets(client: &mut LiveClient, n: usize) -> Vec<u64> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        got.push(client.next_of("pub").await["offset"].as_u64().unwrap());
    }
    got
}

fn offsets_of(reply: &serde_json::Value) -> Vec<u64> {
    reply["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["offset"].as_u64().unwrap())
        .collect()
}

pub async fn publishers_on_two_nodes_make_one_order_that_every_subscriber_sees<F: StoreFixture>(
    fixture: &F,
) {
    let (a, b) = (node(fixture).await, node(fixture).await);
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

pub async fn a_client_recovers_on_another_node_what_was_published_anywhere<F: StoreFixture>(
    fixture: &F,
) {
    let (a, b) = (node(fixture).await, node(fixture).await);
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
    assert_eq!(
        offsets_of(&reply),
        (seen + 1..=seen + 5).collect::<Vec<_>>()
    );
    assert_eq!(reply["publications"][4]["data"], 4);
    a.live.publish("room:2", "live").await.unwrap();
    assert_eq!(back.next_of("pub").await["offset"], seen + 6);
    // A newcomer asks for the latest few, on either node.
    let mut newcomer = LiveClient::connect(a.addr).await;
    let reply = newcomer
        .subscribe(json!({"topic": "room:2", "history": 3}))
        .await;
    assert_eq!(
        offsets_of(&reply),
        (seen + 4..=seen + 6).collect::<Vec<_>>()
    );
    assert_eq!(reply["publications"][2]["data"], "live");
}

pub async fn the_seam_is_exact_while_another_node_publishes<F: StoreFixture>(fixture: &F) {
    let (a, b) = (node(fixture).await, node(fixture).await);
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

pub async fn a_stream_that_is_gone_is_not_recovered<F: StoreFixture>(fixture: &F) {
    let a = node(fixture).await;
    a.live.publish("room:3", "before").await.unwrap();
    let mut client = LiveClient::connect(a.addr).await;
    let reply = client
        .subscribe(json!({"topic": "room:3", "history": 5}))
        .await;
    let epoch = reply["epoch"].as_str().unwrap().to_owned();
    assert_eq!(reply["publications"][0]["data"], "before");
    drop(client);
    // The stream expires (here: is removed), then the room goes on: a new epoch.
    fixture.forget("room:3").await;
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

pub async fn a_trimmed_history_is_not_recovered<F: StoreFixture>(fixture: &F) {
    let (a, b) = (node(fixture).await, node(fixture).await);
    let mut client = LiveClient::connect(a.addr).await;
    let reply = client.subscribe(json!({"topic": "small:1"})).await;
    let epoch = reply["epoch"].as_str().unwrap().to_owned();
    drop(client);
    // Three are kept: missing three is recoverable, missing four is not.
    for n in 0..3 {
        b.live.publish("small:1", n).await.unwrap();
    }
    let since = json!({"epoch": epoch, "offset": 0});
    let mut back = LiveClient::connect(a.addr).await;
    let reply = back
        .subscribe(json!({"topic": "small:1", "since": since}))
        .await;
    assert_eq!(reply["recovered"], true, "{reply}");
    assert_eq!(offsets_of(&reply), [1, 2, 3]);
    b.live.publish("small:1", 3).await.unwrap();
    let mut late = LiveClient::connect(b.addr).await;
    let reply = late
        .subscribe(json!({"topic": "small:1", "since": since}))
        .await;
    assert_eq!(reply["recovered"], false, "{reply}");
    assert_eq!(reply["publications"], json!([]));
    assert_eq!(reply["offset"], 4);
    let reply = late
        .subscribe(json!({"topic": "small:1", "history": 10}))
        .await;
    assert_eq!(offsets_of(&reply), [2, 3, 4], "at most the history's size");
}

pub async fn presence_events_reach_members_on_the_other_node<F: StoreFixture>(fixture: &F) {
    let (a, b) = (node(fixture).await, node(fixture).await);
    let mut on_a = LiveClient::connect(a.addr).await;
    let reply = on_a.subscribe(json!({"topic": "room:p"})).await;
    let a_member = reply["members"][0].clone();
    // Node b hears of it by its `join` (with its info).
    eventually(|| {
        b.live
            .cluster_members("room:p")
            .iter()
            .any(|member| member.info == a_member["info"])
    })
    .await;
    let mut on_b = LiveClient::connect(b.addr).await;
    let reply = on_b.subscribe(json!({"topic": "room:p"})).await;
    // The member list covers both nodes: this node's first, then the others'.
    let members = reply["members"].as_array().unwrap();
    assert_eq!(members.len(), 2, "{reply}");
    assert_eq!(members[1], a_member);
    let b_id = members[0]["id"].clone();
    assert_eq!(on_a.next_of("join").await["member"]["id"], b_id);
    let listed = on_a.request("presence", json!({"topic": "room:p"})).await;
    let listed = listed["data"]["members"].as_array().unwrap().clone();
    assert_eq!(listed[0], a_member);
    assert_eq!(listed[1]["id"], b_id);
    drop(on_b);
    assert_eq!(on_a.next_of("leave").await["member"]["id"], b_id);
    eventually(|| a.live.cluster_members("room:p").len() == 1).await;
}

/// A node that vanishes without its members leaving (cut off the cluster: no more presence,
/// no more frames) has its members announced gone to the other nodes' members, once.
pub async fn the_members_of_a_node_that_vanished_leave<F: StoreFixture>(fixture: &F) {
    let (a, b) = (node(fixture).await, node(fixture).await);
    let mut on_a = LiveClient::connect(a.addr).await;
    on_a.subscribe(json!({"topic": "room:crash"})).await;
    let mut on_b = LiveClient::connect(b.addr).await;
    let reply = on_b.subscribe(json!({"topic": "room:crash"})).await;
    let b_id = reply["members"][0]["id"].clone();
    assert_eq!(on_a.next_of("join").await["member"]["id"], b_id);
    // Seen in the cluster's presence by node a before it vanishes.
    let cluster_a = Cluster::of(&a.melody).unwrap();
    eventually_async(|| async {
        cluster_a
            .members("room:crash")
            .await
            .is_ok_and(|ids| ids.len() == 2)
    })
    .await;
    // And among the members node a knows: those it tells gone when their node vanishes.
    let b_session = melody::SessionId::from(b_id.as_str().unwrap().parse::<u64>().unwrap());
    eventually(|| {
        a.live
            .cluster_members("room:crash")
            .iter()
            .any(|member| member.id == b_session)
    })
    .await;
    fixture.cut_off(&b.driver).await;
    let left = on_a.next_of("leave").await;
    assert_eq!(left["member"]["id"], b_id);
    assert_eq!(left["topic"], "room:crash");
    // Its client is still connected to node b: it was the node that went.
    assert_silent(&mut on_a.ws, Duration::from_millis(1500)).await;
    assert_eq!(a.live.cluster_members("room:crash").len(), 1);
    let reply = on_a
        .request("presence", json!({"topic": "room:crash"}))
        .await;
    assert_eq!(reply["data"]["members"].as_array().unwrap().len(), 1);
    drop(on_b);
}

/// An SSE stream resumes from its `Last-Event-ID` on another node than the one it left, while
/// publishing goes on: what it missed, then the live stream, no gap and no repeat.
pub async fn sse_streams_resume_on_any_node<F: StoreFixture>(fixture: &F) {
    let (a, b) = (node(fixture).await, node(fixture).await);
    let mut first = SseClient::open(a.addr, "/events?topic=news:1", "")
        .await
        .unwrap();
    eventually(|| Sse::of(&a.melody).unwrap().subscribers("news:1") == 1).await;
    b.live.publish("news:1", 1).await.unwrap();
    let event = first.next_event().await;
    let (id, data) = id_and_data(&event);
    assert_eq!(data, "1");
    let (epoch, offset) = id.rsplit_once(':').unwrap();
    assert_eq!(offset, "1");
    let epoch = epoch.to_owned();
    drop(first);
    for n in 2..=4 {
        let publisher = if n % 2 == 0 { &a.live } else { &b.live };
        publisher.publish("news:1", n).await.unwrap();
    }
    // Publishing goes on while it comes back, on the node it comes back to.
    let publishing = tokio::spawn({
        let live = b.live.clone();
        async move {
            for n in 5..=30 {
                live.publish("news:1", n).await.unwrap();
            }
        }
    });
    let header = format!("Last-Event-ID: {epoch}:1\r\n");
    let mut back = SseClient::open(b.addr, "/events?topic=news:1", &header)
        .await
        .unwrap();
    for n in 2..=30 {
        let event = back.next_event().await;
        assert_eq!(id_and_data(&event), (format!("{epoch}:{n}"), n.to_string()));
    }
    publishing.await.unwrap();
    a.live.publish("news:1", 31).await.unwrap();
    let (id, _) = id_and_data(&back.next_event().await);
    assert_eq!(id, format!("{epoch}:31"), "nothing twice");

    // Another epoch: told, then the live stream.
    let stale = "Last-Event-ID: 0000000000000000:1\r\n";
    let mut late = SseClient::open(a.addr, "/events?topic=news:1", stale)
        .await
        .unwrap();
    assert_eq!(
        late.next_event().await,
        "event: recovery\ndata: {\"recovered\":false}\n\n"
    );
    eventually(|| Sse::of(&a.melody).unwrap().subscribers("news:1") == 1).await;
    b.live.publish("news:1", 32).await.unwrap();
    assert_eq!(id_and_data(&late.next_event().await).1, "32");
}

/// An SSE event's id and data.
fn id_and_data(event: &str) -> (String, String) {
    let field = |name: &str| {
        event
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {event:?}"))
            .to_owned()
    };
    (field("id: "), field("data: "))
}

/// Polls an async condition until it holds (bounded by WAIT).
async fn eventually_async<F, Fut>(mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
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

/// Runs every scenario of the suite as its own test, each with a fixture from `$fixture` (an
/// `async` expression giving `Option<impl StoreFixture>`; `None` skips).
#[macro_export]
macro_rules! live_store_suite {
    ($fixture:expr) => {
        $crate::live_store_suite!(@tests $fixture;
            publishers_on_two_nodes_make_one_order_that_every_subscriber_sees,
            a_client_recovers_on_another_node_what_was_published_anywhere,
            a_stream_that_is_gone_is_not_recovered,
            a_trimmed_history_is_not_recovered,
            presence_events_reach_members_on_the_other_node,
            the_members_of_a_node_that_vanished_leave,
            sse_streams_resume_on_any_node,
        );
        // Two publishing threads against the subscriber's seam.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn the_seam_is_exact_while_another_node_publishes() {
            let Some(fixture) = $fixture.await else {
                return;
            };
            live_stores::the_seam_is_exact_while_another_node_publishes(&fixture).await;
        }
    };
    (@tests $fixture:expr; $($scenario:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $scenario() {
                let Some(fixture) = $fixture.await else {
                    return;
                };
                live_stores::$scenario(&fixture).await;
            }
        )*
    };
}
