//! Live topics on one node, with real clients speaking docs/PROTOCOL.md: subscribing and what
//! is refused, presence events (join, leave, disconnect), history and recovery (exact seam
//! under concurrent publishing, `recovered: false` after trimming, an unknown epoch, too many
//! missed), and the bounds on what clients can make the server keep.

mod common;
#[path = "common/live_client.rs"]
mod live_client;

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use common::*;
use futures_util::FutureExt;
use live_client::LiveClient;
use melody::{
    Config, Melody,
    live::{History, Live, LiveHub, Member},
};
use serde_json::{Value, json};

async fn serve(live: Live) -> (Melody, SocketAddr, LiveHub) {
    serve_with(Config::default(), live).await
}

async fn serve_with(config: Config, live: Live) -> (Melody, SocketAddr, LiveHub) {
    let melody = Melody::with_config(config);
    melody.plug(live.info(|session| json!({ "path": session.uri().path() })));
    let hub = LiveHub::of(&melody).expect("plugged");
    let addr = spawn_app(&melody).await;
    (melody, addr, hub)
}

fn ids(members: &Value) -> Vec<String> {
    let mut ids: Vec<String> = members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn only_open_topics_can_be_subscribed_and_bad_requests_are_answered() {
    let live = Live::new()
        .topics("news")
        .presence("room:*")
        .authorize(|_, topic| topic != "room:secret");
    let (_melody, addr, _) = serve_with(Config::default().max_topics_per_session(2), live).await;
    let mut c = LiveClient::connect(addr).await;
    for topic in ["other", "room:secret", "newsy"] {
        let answer = c.request("subscribe", json!({"topic": topic})).await;
        assert_eq!(answer["type"], "error", "{topic}: {answer}");
        assert_eq!(answer["data"]["reason"], "forbidden");
    }
    let reply = c.subscribe(json!({"topic": "news"})).await;
    assert_eq!(reply, json!({"topic": "news", "publications": []}));
    for bad in [
        json!({"topic": 5}),
        json!({"topic": "news", "since": {"offset": 1}}),
        json!({"topic": "x".repeat(300)}),
        json!(null),
    ] {
        let answer = c.request("subscribe", bad.clone()).await;
        assert_eq!(answer["data"]["reason"], "malformed envelope", "{bad}");
    }
    c.subscribe(json!({"topic": "room:a"})).await;
    let answer = c.request("subscribe", json!({"topic": "room:b"})).await;
    assert_eq!(answer["data"]["reason"], "too many topics");
    // The presence list is for members only.
    let answer = c.request("presence", json!({"topic": "room:b"})).await;
    assert_eq!(answer["data"]["reason"], "forbidden");
    let answer = c.request("unsubscribe", json!({"topic": "room:b"})).await;
    assert_eq!(answer["data"], json!({"topic": "room:b", "left": false}));
    // The client's heartbeat, with or without data.
    for data in [json!(null), json!({"t": 1})] {
        let answer = c.request("ping", data).await;
        assert_eq!(
            (&answer["type"], &answer["data"]),
            (&json!("reply"), &json!(null))
        );
    }
}

#[tokio::test]
async fn members_see_each_other_join_and_leave_also_by_disconnect() {
    let (joins, mut join_log) = events();
    let (leaves, mut leave_log) = events();
    let live = Live::new()
        .presence("room:*")
        .on_join(move |_, topic, member: &Member| joins.push(format!("{topic} {}", member.id)))
        .on_leave(move |_, topic, member: &Member| leaves.push(format!("{topic} {}", member.id)));
    let (_melody, addr, hub) = serve(live).await;
    let mut a = LiveClient::connect(addr).await;
    let first = a.subscribe(json!({"topic": "room:1"})).await;
    assert_eq!(first["members"].as_array().unwrap().len(), 1);
    let a_id = first["members"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(first["members"][0]["info"], json!({"path": "/ws"}));
    assert_eq!(join_log.next().await, format!("room:1 {a_id}"));

    let mut b = LiveClient::connect(addr).await;
    let second = b.subscribe(json!({"topic": "room:1"})).await;
    let joined = a.next_of("join").await;
    let b_id = joined["member"]["id"].as_str().unwrap().to_owned();
    assert_eq!(joined["topic"], "room:1");
    assert_eq!(joined["member"]["info"], json!({"path": "/ws"}));
    let mut both = vec![a_id.clone(), b_id.clone()];
    both.sort();
    assert_eq!(ids(&second["members"]), both);
    let listed = a.request("presence", json!({"topic": "room:1"})).await;
    assert_eq!(ids(&listed["data"]["members"]), both);
    assert_eq!(hub.members("room:1").len(), 2);

    // Unsubscribing: the other sees the leave; the leaver gets no event of its own.
    let answer = b.request("unsubscribe", json!({"topic": "room:1"})).await;
    assert_eq!(answer["data"]["left"], true);
    assert_eq!(a.next_of("leave").await["member"]["id"], b_id.as_str());
    assert_eq!(leave_log.next().await, format!("room:1 {b_id}"));

    // Disconnecting: the same, for every topic it was in.
    b.subscribe(json!({"topic": "room:1"})).await;
    assert_eq!(a.next_of("join").await["member"]["id"], b_id.as_str());
    drop(b);
    assert_eq!(a.next_of("leave").await["member"]["id"], b_id.as_str());
    join_log.wait_for(&format!("room:1 {b_id}")).await;
    leave_log.wait_for(&format!("room:1 {b_id}")).await;
    assert_eq!(hub.members("room:1").len(), 1);
    assert_silent(&mut a.ws, Duration::from_millis(100)).await;
}

#[tokio::test]
async fn a_returning_subscriber_recovers_exactly_what_it_missed() {
    let live = Live::new().history("chat:*", History::new().size(50));
    let (_melody, addr, hub) = serve(live).await;
    let mut c = LiveClient::connect(addr).await;
    let reply = c.subscribe(json!({"topic": "chat:1"})).await;
    assert_eq!(reply["offset"], 0);
    assert_eq!(reply["recovered"], Value::Null);
    let epoch = reply["epoch"].as_str().unwrap().to_owned();
    for n in 1..=3 {
        let published = hub.publish("chat:1", json!({ "n": n })).await.unwrap();
        assert_eq!(published.offset, Some(n));
        assert_eq!(published.reached, 1);
    }
    for n in 1..=3 {
        let publication = c.next_of("pub").await;
        assert_eq!(
            publication,
            json!({"topic": "chat:1", "epoch": epoch, "offset": n, "data": {"n": n}})
        );
    }
    // The connection is lost; meanwhile the room goes on.
    drop(c);
    for n in 4..=7 {
        hub.publish("chat:1", json!({ "n": n })).await.unwrap();
    }
    let mut back = LiveClient::connect(addr).await;
    let reply = back
        .subscribe(json!({"topic": "chat:1", "since": {"epoch": epoch, "offset": 3}}))
        .await;
    assert_eq!(reply["recovered"], true);
    assert_eq!(reply["offset"], 7);
    let offsets: Vec<u64> = reply["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, [4, 5, 6, 7]);
    assert_eq!(reply["publications"][0]["data"], json!({"n": 4}));
    hub.publish("chat:1", "live again").await.unwrap();
    assert_eq!(back.next_of("pub").await["offset"], 8);
    // The latest few, for a first visit.
    let mut fresh = LiveClient::connect(addr).await;
    let reply = fresh
        .subscribe(json!({"topic": "chat:1", "history": 2}))
        .await;
    assert_eq!(reply["publications"][1]["data"], "live again");
    assert_eq!(reply["publications"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn recovery_is_refused_when_history_cannot_tell_everything() {
    let live = Live::new()
        .history("short", History::new().size(3))
        .history("long", History::new().size(100))
        .max_recover(5);
    let (_melody, addr, hub) = serve(live).await;
    for n in 1..=10 {
        hub.publish("short", n).await.unwrap();
        hub.publish("long", n).await.unwrap();
    }
    let short = hub.position("short").unwrap();
    let long = hub.position("long").unwrap();
    assert_eq!((short.offset, long.offset), (10, 10));
    assert_ne!(short.epoch, long.epoch);
    let mut c = LiveClient::connect(addr).await;
    let cases = [
        // Trimmed past the offset (only 8, 9, 10 are kept).
        (
            json!({"topic": "short", "since": {"epoch": short.epoch, "offset": 6}}),
            false,
        ),
        (
            json!({"topic": "short", "since": {"epoch": short.epoch, "offset": 7}}),
            true,
        ),
        // Another epoch: the stream this position belonged to is gone.
        (
            json!({"topic": "long", "since": {"epoch": short.epoch, "offset": 9}}),
            false,
        ),
        // More missed than max_recover.
        (
            json!({"topic": "long", "since": {"epoch": long.epoch, "offset": 4}}),
            false,
        ),
        (
            json!({"topic": "long", "since": {"epoch": long.epoch, "offset": 5}}),
            true,
        ),
        // A position ahead of the stream.
        (
            json!({"topic": "long", "since": {"epoch": long.epoch, "offset": 11}}),
            false,
        ),
    ];
    for (request, recovered) in cases {
        let reply = c.subscribe(request.clone()).await;
        assert_eq!(reply["recovered"], recovered, "{request}: {reply}");
        let count = reply["publications"].as_array().unwrap().len();
        let missed = 10 - request["since"]["offset"].as_u64().unwrap().min(10);
        assert_eq!(
            count as u64,
            if recovered { missed } else { 0 },
            "{request}"
        );
        assert_eq!(reply["offset"], 10);
    }
}

/// Publishing never stops while clients subscribe, unsubscribe and resubscribe from their last
/// offset: each sees every offset exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seam_has_no_gap_and_no_repeat_under_concurrent_publishing() {
    let live = Live::new().history("seam", History::new().size(100_000));
    let (_melody, addr, hub) = serve(live).await;
    let running = Arc::new(AtomicBool::new(true));
    let publisher = tokio::spawn({
        let (hub, running) = (hub.clone(), running.clone());
        async move {
            // A steady rate the clients can read (a session whose queue overflows loses
            // publications by design, which is not what this test is about).
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            let mut n = 0u64;
            while running.load(Ordering::Relaxed) {
                tick.tick().await;
                for _ in 0..4 {
                    n += 1;
                    hub.publish("seam", n).await.unwrap();
                }
            }
            n
        }
    });
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(tokio::spawn(async move {
            let mut c = LiveClient::connect(addr).await;
            let reply = c.subscribe(json!({"topic": "seam"})).await;
            let epoch = reply["epoch"].clone();
            let mut last = reply["offset"].as_u64().unwrap();
            let mut seen = 0;
            for _round in 0..20 {
                // Read some live publications, then leave and come back from the last one.
                for _ in 0..50 {
                    let publication = c.next_of("pub").await;
                    let offset = publication["offset"].as_u64().unwrap();
                    assert_eq!(offset, last + 1, "gap or repeat in the live stream");
                    assert_eq!(publication["data"], offset);
                    last = offset;
                    seen += 1;
                }
                let answer = c.request("unsubscribe", json!({"topic": "seam"})).await;
                assert_eq!(answer["data"]["left"], true);
                // Publications queued before the answer still count; none come after it.
                while let Some(message) = c.inbox.pop_front() {
                    assert_eq!(message["data"]["offset"], last + 1);
                    last += 1;
                }
                let reply = c
                    .subscribe(json!({"topic": "seam", "since": {"epoch": epoch, "offset": last}}))
                    .await;
                assert_eq!(reply["recovered"], true, "{reply}");
                for publication in reply["publications"].as_array().unwrap() {
                    assert_eq!(publication["offset"], last + 1, "gap or repeat at the seam");
                    last += 1;
                }
                assert_eq!(reply["offset"], last);
                assert!(c.inbox.is_empty(), "publications before the reply");
            }
            seen
        }));
    }
    for client in clients {
        assert!(client.await.unwrap() >= 1000);
    }
    running.store(false, Ordering::Relaxed);
    assert!(publisher.await.unwrap() > 0);
}

#[tokio::test]
async fn topics_with_nothing_left_are_let_go() {
    let live = Live::new().presence("p:*").topics("open:*");
    let (_melody, addr, hub) = serve(live).await;
    let mut c = LiveClient::connect(addr).await;
    for n in 0..200 {
        let topic = format!("p:{n}");
        c.subscribe(json!({"topic": topic})).await;
        c.request("unsubscribe", json!({"topic": topic})).await;
        c.subscribe(json!({"topic": format!("open:{n}")})).await;
        c.request("unsubscribe", json!({"topic": format!("open:{n}")}))
            .await;
    }
    assert_eq!(hub.topics_held(), 0);
    c.subscribe(json!({"topic": "p:kept"})).await;
    assert_eq!(hub.topics_held(), 1);
    drop(c);
    eventually(|| hub.topics_held() == 0).await;
}

#[tokio::test]
async fn plain_handlers_join_sessions_with_presence_from_the_server() {
    let melody = Melody::new();
    melody.plug(Live::new().presence("room:*"));
    let hub = LiveHub::of(&melody).unwrap();
    let joining = hub.clone();
    melody.on_connect(move |session| {
        if session.uri().query() == Some("auto") {
            assert_eq!(joining.join(session, "room:auto"), Ok(true));
            assert_eq!(joining.join(session, "room:auto"), Ok(false));
        }
    });
    let addr = spawn_app(&melody).await;
    let mut watcher = LiveClient::connect(addr).await;
    watcher.subscribe(json!({"topic": "room:auto"})).await;
    let mut auto = LiveClient {
        ws: connect_with(addr, "/ws?auto", &[]).await,
        next_id: 1,
        inbox: VecDeque::new(),
    };
    let joined = watcher.next_of("join").await;
    eventually(|| hub.members("room:auto").len() == 2).await;
    hub.publish("room:auto", "to both").await.unwrap();
    assert_eq!(auto.next_of("pub").await["data"], "to both");
    let id = joined["member"]["id"].as_str().unwrap().to_owned();
    let session = melody
        .all()
        .sessions()
        .into_iter()
        .find(|s| s.id().to_string() == id)
        .unwrap();
    assert!(hub.leave(&session, "room:auto"));
    assert_eq!(watcher.next_of("leave").await["member"]["id"], id.as_str());
}

/// The application's callbacks run outside the topic's lock: they may publish to the topic
/// they are told about, or read its members, without a deadlock.
#[tokio::test]
async fn callbacks_may_use_the_live_hub_on_their_own_topic() {
    let melody = Melody::new();
    melody.plug(
        Live::new()
            .presence("room:*")
            .history("room:*", History::new())
            .info(|session| {
                let live = LiveHub::of(&session.melody()).unwrap();
                json!({ "before": live.members("room:1").len() })
            })
            // Polled once, right here in the callback: a publication in memory is ready at once,
            // so this would deadlock if the topic's lock were held. The callbacks get the live
            // hub (capturing a `Melody` in them would keep the hub alive forever).
            .on_join(|live, topic, member| {
                let publish = live.publish(topic, format!("welcome {}", member.id));
                publish.now_or_never().expect("ready").unwrap();
            })
            .on_leave(|live, topic, _| {
                let publish = live.publish(topic, "bye");
                publish.now_or_never().expect("ready").unwrap();
            }),
    );
    let addr = spawn_app(&melody).await;
    let mut a = LiveClient::connect(addr).await;
    let reply = a.subscribe(json!({"topic": "room:1"})).await;
    assert_eq!(reply["members"][0]["info"], json!({"before": 0}));
    let id = reply["members"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(a.next_of("pub").await["data"], format!("welcome {id}"));
    let mut b = LiveClient::connect(addr).await;
    b.subscribe(json!({"topic": "room:1"})).await;
    a.next_of("join").await;
    drop(b);
    assert_eq!(a.next_of("leave").await["topic"], "room:1");
    let mut farewell_seen = false;
    while !farewell_seen {
        farewell_seen = a.next_of("pub").await["data"] == "bye";
    }
}

/// A topic with history and without presence keeps its stream (and epoch) while anyone is
/// subscribed, whoever else comes and goes.
#[tokio::test]
async fn the_epoch_holds_while_a_subscriber_stays() {
    let live = Live::new().history("h:*", History::new());
    let (_melody, addr, hub) = serve(live).await;
    let mut a = LiveClient::connect(addr).await;
    let reply = a.subscribe(json!({"topic": "h:1"})).await;
    let epoch = reply["epoch"].clone();
    hub.publish("h:1", 1).await.unwrap();
    let mut b = LiveClient::connect(addr).await;
    b.subscribe(json!({"topic": "h:1"})).await;
    b.request("unsubscribe", json!({"topic": "h:1"})).await;
    drop(b);
    hub.publish("h:1", 2).await.unwrap();
    assert_eq!(hub.position("h:1").unwrap().epoch, epoch.as_str().unwrap());
    assert_eq!(a.next_of("pub").await["offset"], 1);
    assert_eq!(a.next_of("pub").await["offset"], 2);
}

/// A member the application took out of the topic with `Session::leave` still leaves the
/// member list when it disconnects; a panicking `on_leave` leaves nothing behind either; a
/// session already in the topic is announced when it subscribes.
#[tokio::test]
async fn members_never_outlive_their_sessions() {
    let melody = Melody::new();
    melody.plug(
        Live::new()
            .presence("room:*")
            .on_leave(|_, topic, _| assert!(topic != "room:a", "on_leave panics for room:a")),
    );
    let hub = LiveHub::of(&melody).unwrap();
    melody.on_connect(|session| {
        // In the topic before subscribing: subscribing still announces it.
        let _ = session.join("room:b");
    });
    let addr = spawn_app(&melody).await;
    let mut watcher = LiveClient::connect(addr).await;
    watcher.subscribe(json!({"topic": "room:b"})).await;
    let mut kicked = LiveClient::connect(addr).await;
    for topic in ["room:a", "room:b", "room:c"] {
        kicked.subscribe(json!({"topic": topic})).await;
    }
    let joined = watcher.next_of("join").await;
    let id = joined["member"]["id"].as_str().unwrap().to_owned();
    let session = melody
        .all()
        .sessions()
        .into_iter()
        .find(|s| s.id().to_string() == id)
        .unwrap();
    assert!(session.leave("room:c"));
    drop(kicked);
    eventually(|| {
        ["room:a", "room:b", "room:c"]
            .iter()
            .all(|topic| hub.members(topic).iter().all(|m| m.id.to_string() != id))
    })
    .await;
    assert_eq!(watcher.next_of("leave").await["member"]["id"], id.as_str());
}
