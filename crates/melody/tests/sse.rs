//! Feature `sse`: Server-Sent Events subscribers and WebSocket sessions on the same topics.
#![cfg(feature = "sse")]

mod common;
#[path = "common/sse_client.rs"]
mod sse_client;

use std::{net::SocketAddr, time::Duration};

use axum::{Router, routing::get};
use common::*;
use melody::{
    AuthRejection, Config, Keys, Melody, OverflowPolicy, UpgradeRejection,
    http::StatusCode,
    sse::{Event, Sse, TopicResolver},
};
use sse_client::SseClient;

/// The hub's SSE plug-in (attached on first use).
fn plugin(melody: &Melody) -> Sse {
    Sse::attach(melody)
}

/// A WebSocket handler that joins the topic `resolver` names, or refuses with 400.
fn joining(
    melody: &Melody,
    resolver: TopicResolver,
) -> impl Fn(
    axum::extract::Request,
) -> futures_util::future::BoxFuture<'static, axum::response::Response>
+ Clone
+ Send
+ Sync
+ 'static {
    melody.handler_with(move |req| match resolver.resolve(req) {
        Some(topic) => Ok(Keys::new().join(topic)),
        None => Err(UpgradeRejection::Auth(AuthRejection::new(
            StatusCode::BAD_REQUEST,
            "the request names no topic",
        ))),
    })
}

async fn sse_app(melody: &Melody, resolver: TopicResolver) -> SocketAddr {
    spawn_router(
        Router::new()
            .route("/events", get(plugin(melody).handler(resolver.clone())))
            .route(
                "/devices/{id}/events",
                get(plugin(melody).handler(TopicResolver::path_segment(1))),
            )
            .route("/ws", get(joining(melody, resolver))),
    )
    .await
}

#[tokio::test]
async fn an_event_reaches_sse_and_websocket_subscribers_of_the_topic() {
    let melody = Melody::new();
    let addr = sse_app(&melody, TopicResolver::header("x-device-id")).await;
    let mut sse = SseClient::open(addr, "/events", "X-Device-Id: device-42\r\n")
        .await
        .unwrap();
    let mut other = SseClient::open(addr, "/events", "X-Device-Id: device-7\r\n")
        .await
        .unwrap();
    let mut ws = connect_with(addr, "/ws", &[("x-device-id", "device-42")]).await;
    eventually(|| {
        melody.topic("device-42").len() == 1 && plugin(&melody).subscribers("device-42") == 1
    })
    .await;

    let event = Event::new("{\"task\":\"cancelled\"}")
        .event("task.cancelled")
        .id("1");
    assert_eq!(plugin(&melody).publish("device-42", event).unwrap(), 2);
    assert_eq!(
        sse.next_event().await,
        "event: task.cancelled\nid: 1\ndata: {\"task\":\"cancelled\"}\n\n"
    );
    assert_eq!(recv_text(&mut ws).await, "{\"task\":\"cancelled\"}");

    // A plain publish of text reaches both as well, as a data-only event.
    assert_eq!(melody.topic("device-42").send("plain").unwrap(), 2);
    assert_eq!(sse.next_event().await, "data: plain\n\n");
    assert_eq!(recv_text(&mut ws).await, "plain");

    // The other topic's subscriber saw nothing of it.
    plugin(&melody)
        .publish("device-7", Event::new("yours"))
        .unwrap();
    assert_eq!(other.next_event().await, "data: yours\n\n");
}

#[tokio::test]
async fn topics_come_from_query_path_or_a_custom_resolver_with_last_event_id() {
    let melody = Melody::new();
    let custom = TopicResolver::custom(|req, last_event_id| {
        let user = req.headers.get("x-user")?.to_str().ok()?;
        Some(format!("{user}@{}", last_event_id.unwrap_or("start")))
    });
    let addr = spawn_router(
        Router::new()
            .route(
                "/q",
                get(plugin(&melody).handler(TopicResolver::query("topic"))),
            )
            .route(
                "/devices/{id}/events",
                get(plugin(&melody).handler(TopicResolver::path_segment(1))),
            )
            .route("/c", get(plugin(&melody).handler(custom))),
    )
    .await;

    let mut by_query = SseClient::open(addr, "/q?x=1&topic=news%20feed", "")
        .await
        .unwrap();
    let mut by_path = SseClient::open(addr, "/devices/42/events", "")
        .await
        .unwrap();
    let mut by_custom = SseClient::open(addr, "/c", "X-User: ada\r\nLast-Event-ID: 17\r\n")
        .await
        .unwrap();
    eventually(|| {
        plugin(&melody).subscribers("news feed") == 1
            && plugin(&melody).subscribers("42") == 1
            && plugin(&melody).subscribers("ada@17") == 1
    })
    .await;
    plugin(&melody)
        .publish("news feed", Event::new("n"))
        .unwrap();
    plugin(&melody).publish("42", Event::new("p")).unwrap();
    plugin(&melody).publish("ada@17", Event::new("c")).unwrap();
    assert_eq!(by_query.next_event().await, "data: n\n\n");
    assert_eq!(by_path.next_event().await, "data: p\n\n");
    assert_eq!(by_custom.next_event().await, "data: c\n\n");

    // No topic: 400, for SSE and for the topic-joining WebSocket handler alike.
    let Err((status, _)) = SseClient::open(addr, "/q", "").await else {
        panic!("a request naming no topic must be refused");
    };
    assert_eq!(status, 400);
    let ws_addr = sse_app(&melody, TopicResolver::header("x-device-id")).await;
    assert_eq!(http_request(ws_addr, &upgrade_request("")).await.0, 400);
}

#[tokio::test]
async fn keep_alive_comments_flow_and_a_gone_client_is_removed() {
    let melody = Melody::new();
    plugin(&melody).keep_alive(Duration::from_millis(20));
    let addr = sse_app(&melody, TopicResolver::query("topic")).await;
    let mut sse = SseClient::open(addr, "/events?topic=t", "").await.unwrap();
    assert_eq!(sse.next_block().await, ":\n\n");
    assert_eq!(sse.next_block().await, ":\n\n");
    assert_eq!(plugin(&melody).stats().subscribers, 1);

    drop(sse);
    eventually(|| plugin(&melody).subscribers("t") == 0).await;
    assert_eq!(plugin(&melody).stats().subscribers, 0);
    assert_eq!(
        plugin(&melody).publish("t", Event::new("nobody")).unwrap(),
        0
    );
}

#[tokio::test]
async fn slow_sse_subscribers_follow_the_overflow_policy() {
    // Drop policy: events beyond the queue are dropped and counted, the stream stays.
    let dropping = Melody::with_config(Config::default().message_buffer_size(1));
    let addr = sse_app(&dropping, TopicResolver::query("topic")).await;
    let mut sse = SseClient::open(addr, "/events?topic=t", "").await.unwrap();
    eventually(|| plugin(&dropping).subscribers("t") == 1).await;
    let queued: usize = (0..50)
        .map(|i| {
            plugin(&dropping)
                .publish("t", Event::new(format!("{i}")))
                .unwrap()
        })
        .sum();
    assert!(queued < 50);
    assert_eq!(plugin(&dropping).stats().dropped, 50 - queued as u64);
    assert_eq!(sse.next_event().await, "data: 0\n\n");
    assert_eq!(plugin(&dropping).subscribers("t"), 1);

    // Close policy: the slow subscriber's stream ends after what was queued.
    let closing = Melody::with_config(
        Config::default()
            .message_buffer_size(1)
            .overflow(OverflowPolicy::CloseSession),
    );
    let addr = sse_app(&closing, TopicResolver::query("topic")).await;
    let mut sse = SseClient::open(addr, "/events?topic=t", "").await.unwrap();
    eventually(|| plugin(&closing).subscribers("t") == 1).await;
    for i in 0..5 {
        plugin(&closing)
            .publish("t", Event::new(format!("{i}")))
            .unwrap();
    }
    assert_eq!(plugin(&closing).subscribers("t"), 0);
    assert_eq!(sse.next_event().await, "data: 0\n\n");
    sse.until_end().await;
}

#[tokio::test]
async fn sse_requests_pass_the_auth_hook_and_stats_count_events() {
    let melody = Melody::new();
    melody.on_auth(|req| {
        let ok = req.headers.contains_key("authorization");
        async move {
            if ok {
                Ok(Keys::new())
            } else {
                Err(AuthRejection::unauthorized("who are you"))
            }
        }
    });
    let addr = sse_app(&melody, TopicResolver::query("topic")).await;
    let Err((status, _)) = SseClient::open(addr, "/events?topic=t", "").await else {
        panic!("an unauthenticated SSE request must be refused");
    };
    assert_eq!(status, 401);
    let mut sse = SseClient::open(addr, "/events?topic=t", "Authorization: yes\r\n")
        .await
        .unwrap();
    eventually(|| plugin(&melody).subscribers("t") == 1).await;
    plugin(&melody).publish("t", Event::new("one")).unwrap();
    melody.topic("t").send("two").unwrap();
    assert_eq!(sse.next_event().await, "data: one\n\n");
    assert_eq!(sse.next_event().await, "data: two\n\n");
    assert_eq!(plugin(&melody).stats().events, 2);
    let stats = melody.stats();
    assert_eq!(stats.rejections.auth, 1);
    assert_eq!(
        stats.connected, 0,
        "SSE subscribers are not WebSocket sessions"
    );

    melody.close().unwrap();
    assert!(plugin(&melody).publish("t", Event::new("late")).is_err());
}

/// Live topics to `EventSource` clients: `epoch:offset` event ids, and a reconnect by
/// `Last-Event-ID` that replays exactly what was missed (or says it cannot).
#[cfg(feature = "live")]
#[tokio::test]
async fn live_topics_resume_sse_subscribers_from_their_last_event_id() {
    use melody::live::{History, Live, LiveHub};

    let melody = Melody::new();
    melody.plug(Live::new().history("news:*", History::new().size(4)));
    let live = LiveHub::of(&melody).unwrap();
    let app = Router::new().route(
        "/events",
        get(live.sse_handler(TopicResolver::query("topic"))),
    );
    let addr = spawn_router(app).await;
    // Only open topics are served.
    let refused = SseClient::open(addr, "/events?topic=other", "").await;
    assert_eq!(refused.err().map(|(status, _)| status), Some(400));

    let mut first = SseClient::open(addr, "/events?topic=news:1", "")
        .await
        .unwrap();
    eventually(|| Sse::of(&melody).unwrap().subscribers("news:1") == 1).await;
    live.publish("news:1", serde_json::json!({"n": 1}))
        .await
        .unwrap();
    let epoch = live.position("news:1").unwrap().epoch;
    assert_eq!(
        first.next_event().await,
        format!("id: {epoch}:1\ndata: {{\"n\":1}}\n\n")
    );
    drop(first);
    for n in 2..=4 {
        live.publish("news:1", n).await.unwrap();
    }
    // The browser reconnects with the last id it saw: it gets 2, 3, 4, then the live stream.
    let header = format!("Last-Event-ID: {epoch}:1\r\n");
    let mut back = SseClient::open(addr, "/events?topic=news:1", &header)
        .await
        .unwrap();
    for n in 2..=4 {
        assert_eq!(
            back.next_event().await,
            format!("id: {epoch}:{n}\ndata: {n}\n\n")
        );
    }
    live.publish("news:1", 5).await.unwrap();
    assert_eq!(
        back.next_event().await,
        format!("id: {epoch}:5\ndata: 5\n\n")
    );

    // Trimmed past the id (size 4 keeps 2..=5 after one more): told, then the live stream.
    live.publish("news:1", 6).await.unwrap();
    let stale = format!("Last-Event-ID: {epoch}:1\r\n");
    let mut late = SseClient::open(addr, "/events?topic=news:1", &stale)
        .await
        .unwrap();
    assert_eq!(
        late.next_event().await,
        "event: recovery\ndata: {\"recovered\":false}\n\n"
    );
    live.publish("news:1", 7).await.unwrap();
    assert_eq!(
        late.next_event().await,
        format!("id: {epoch}:7\ndata: 7\n\n")
    );
}

/// Only topics open to SSE are streamed by the live endpoint: not those with presence (member
/// events are for the topic's sessions), not those `authorize_sse` refuses, and a stream that
/// ends leaves nothing behind.
#[cfg(feature = "live")]
#[tokio::test]
async fn live_sse_streams_only_what_they_may_see() {
    use melody::live::{History, Live, LiveHub};

    let melody = Melody::new();
    melody.plug(
        Live::new()
            .presence("room:*")
            .history("news:*", History::new())
            .topics("open:*")
            .authorize(|_, _| true)
            .authorize_sse(|parts, topic| {
                topic != "news:secret" && parts.headers.contains_key("x-reader")
            }),
    );
    let live = LiveHub::of(&melody).unwrap();
    let app = Router::new().route(
        "/events",
        get(live.sse_handler(TopicResolver::query("topic"))),
    );
    let addr = spawn_router(app).await;
    for (path, headers) in [
        ("/events?topic=room:1", "x-reader: 1\r\n"),
        ("/events?topic=news:secret", "x-reader: 1\r\n"),
        ("/events?topic=news:1", ""),
    ] {
        let refused = SseClient::open(addr, path, headers).await;
        assert_eq!(refused.err().map(|(status, _)| status), Some(400), "{path}");
    }
    let mut open = SseClient::open(addr, "/events?topic=open:1", "x-reader: 1\r\n")
        .await
        .unwrap();
    eventually(|| Sse::of(&melody).unwrap().subscribers("open:1") == 1).await;
    live.publish("open:1", serde_json::json!({"n": 1}))
        .await
        .unwrap();
    assert_eq!(open.next_event().await, "data: {\"n\":1}\n\n");
    // Streams of topics with history hold their topic while they last, and only then.
    let mut many = Vec::new();
    for n in 0..20 {
        let path = format!("/events?topic=news:{n}");
        many.push(
            SseClient::open(addr, &path, "x-reader: 1\r\n")
                .await
                .unwrap(),
        );
    }
    eventually(|| live.topics_held() == 20).await;
    drop(many);
    eventually(|| live.topics_held() == 0).await;
}
