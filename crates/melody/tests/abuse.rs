//! What a hostile client tries first, each against a real server on a real socket: request heads
//! that never end, header and topic floods, frame floods that carry no message, forged
//! envelopes, SSE field injection, readers that stop reading, malformed handshakes.
//!
//! Each test is named after what it defends; the comment above it names the finding of the
//! hardening review it covers. (The descriptor-limit finding needs a process of its own, and the
//! memory of a stalled frame a counting allocator: see `abuse_process.rs` and
//! `abuse_memory.rs`.)

mod common;

use std::time::{Duration, Instant};

use axum::{Router, routing::get};
use common::{
    Raw, WAIT, connect, connect_with, eventually, http_request, recv_text, send_text, spawn_app,
    spawn_served, upgrade_request,
};
use melody::{Config, JoinError, Melody, SessionId};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::timeout,
};

/// Reads until the server ends the connection (end of stream or reset); returns how many
/// bytes came before.
async fn read_to_end(stream: &mut (impl AsyncReadExt + Unpin)) -> usize {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return total,
            Ok(n) => total += n,
        }
    }
}

// Finding 1: a request head that trickles in is never timed out.
#[tokio::test]
async fn a_trickled_request_head_is_closed_at_the_header_timeout() {
    let melody = Melody::new();
    let app = Router::new().route("/ws", get(melody.handler()));
    let addr = spawn_served(app, |serve| {
        serve.header_read_timeout(Duration::from_millis(300))
    })
    .await;
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = tcp.into_split();
    let started = Instant::now();
    // One byte every 50 ms: the head never completes.
    let trickle = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        for byte in b"GET /ws HTTP/1.1\r\nHost: x\r\nX-Slow: ".iter().cycle() {
            tick.tick().await;
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
        }
    });
    timeout(WAIT, read_to_end(&mut reader))
        .await
        .expect("the server kept a trickling request head open");
    assert!(started.elapsed() < Duration::from_secs(3));
    trickle.abort();
}

// Finding 1: unfinished handshakes are capped; the rest wait in the backlog, not in memory.
#[tokio::test]
async fn unfinished_handshakes_are_capped_and_the_next_waits_for_a_slot() {
    let melody = Melody::new();
    let app = Router::new().route("/ws", get(melody.handler()));
    let addr = spawn_served(app, |serve| serve.max_pending(2)).await;
    let silent_a = TcpStream::connect(addr).await.unwrap();
    let _silent_b = TcpStream::connect(addr).await.unwrap();
    let mut third = TcpStream::connect(addr).await.unwrap();
    third
        .write_all(upgrade_request("").as_bytes())
        .await
        .unwrap();
    let mut byte = [0u8; 1];
    // Both slots are taken by clients that send nothing: the third is not served...
    assert!(
        timeout(Duration::from_millis(300), third.read(&mut byte))
            .await
            .is_err(),
        "served beyond the cap of unfinished handshakes"
    );
    // ...until one of them goes.
    drop(silent_a);
    let n = timeout(WAIT, third.read(&mut byte))
        .await
        .expect("the waiting client was never served")
        .unwrap();
    assert_eq!(n, 1);
}

// Finding 3: a bare `\r` in published data must not start a field of its own.
#[cfg(feature = "sse")]
#[tokio::test]
async fn sse_data_cannot_inject_fields() {
    use melody::sse::TopicResolver;
    let melody = Melody::new();
    let app = Router::new().route(
        "/events",
        get(melody::sse::Sse::attach(&melody).handler(TopicResolver::query("topic"))),
    );
    let addr = common::spawn_router(app).await;
    let mut sse = TcpStream::connect(addr).await.unwrap();
    sse.write_all(b"GET /events?topic=t HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    eventually(|| melody::sse::Sse::attach(&melody).subscribers("t") == 1).await;
    melody
        .topic("t")
        .send("hello\rid: 666\revent: evil\r\nretry: 1\rdata")
        .unwrap();
    melody.topic("t").send("end").unwrap();
    let mut received = Vec::new();
    timeout(WAIT, async {
        let mut buf = [0u8; 4096];
        while !received.windows(9).any(|w| w == b"data: end") {
            let n = sse.read(&mut buf).await.unwrap();
            assert!(n > 0);
            received.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap();
    let body = String::from_utf8_lossy(&received);
    let body = &body[body.find("\r\n\r\n").unwrap() + 4..];
    // Lines as an EventSource parses them: ended by \r\n, \r or \n.
    let lines: Vec<&str> = body
        .split("\r\n")
        .flat_map(|l| l.split(['\r', '\n']))
        .collect();
    for line in &lines {
        for field in ["id:", "event:", "retry:"] {
            assert!(!line.starts_with(field), "injected field: {line:?}");
        }
    }
    assert!(lines.contains(&"data: id: 666"), "{lines:?}");
}

// Finding 4: a client must not make any envelope appear in another client's stream.
#[tokio::test]
async fn direct_sends_are_opt_in_per_type_and_marked_as_a_peers() {
    let melody = Melody::new();
    melody.on_connect(|session| {
        let _ = session.send(
            melody::router::Envelope::encode("welcome", serde_json::json!({ "id": session.id() }))
                .unwrap(),
        );
    });
    melody.plug(
        melody::router::Router::new()
            .on("chat", |_, _| async { Ok(()) })
            .allow_direct("dm"),
    );
    let addr = spawn_app(&melody).await;
    let mut attacker = connect(addr).await;
    let mut victim = connect(addr).await;
    let attacker_welcome: serde_json::Value =
        serde_json::from_str(&recv_text(&mut attacker).await).unwrap();
    let victim_welcome: serde_json::Value =
        serde_json::from_str(&recv_text(&mut victim).await).unwrap();
    // Ids travel as strings (safe in JavaScript).
    let victim_id = victim_welcome["data"]["id"].as_str().unwrap().to_owned();
    let attacker_id = attacker_welcome["data"]["id"].as_str().unwrap().to_owned();

    let forged =
        serde_json::json!({ "type": "welcome", "target": victim_id, "data": { "id": "0" } });
    send_text(&mut attacker, &forged.to_string()).await;
    let reply: serde_json::Value = serde_json::from_str(&recv_text(&mut attacker).await).unwrap();
    assert_eq!(reply["type"], "error");
    assert_eq!(reply["data"]["reason"], "direct send not allowed");

    let dm = serde_json::json!({ "type": "dm", "target": victim_id, "data": "hi" });
    send_text(&mut attacker, &dm.to_string()).await;
    // The victim's next message is the dm, not the forged welcome.
    let got: serde_json::Value = serde_json::from_str(&recv_text(&mut victim).await).unwrap();
    assert_eq!(got["type"], "dm");
    assert_eq!(got["from"], attacker_id.as_str());
    assert_eq!(got["target"], victim_id.as_str());
}

// Finding 4: ids are random, not a counter one can count down from.
#[tokio::test]
async fn session_ids_are_random_and_travel_as_strings() {
    let melody = Melody::new();
    let addr = spawn_app(&melody).await;
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(connect(addr).await);
    }
    eventually(|| melody.all().len() == 20).await;
    let mut ids: Vec<u64> = melody
        .all()
        .sessions()
        .iter()
        .map(|s| s.id().as_u64())
        .collect();
    ids.sort_unstable();
    let close_neighbours = ids.windows(2).filter(|w| w[1] - w[0] < 1 << 32).count();
    assert_eq!(close_neighbours, 0, "ids look sequential: {ids:?}");
    let id = SessionId::from(ids[0]);
    assert_eq!(
        serde_json::to_value(id).unwrap(),
        serde_json::Value::String(ids[0].to_string())
    );
}

// Finding 5: an SSE subscriber that stops reading is dropped after the write wait, and
// `melody::serve` closes its connection.
#[cfg(feature = "sse")]
#[tokio::test]
async fn a_stalled_sse_subscriber_is_dropped_and_disconnected() {
    use melody::sse::TopicResolver;
    let melody = Melody::with_config(
        Config::default()
            .write_wait(Duration::from_millis(300))
            .message_buffer_size(8),
    );
    let app = Router::new().route(
        "/events",
        get(melody::sse::Sse::attach(&melody).handler(TopicResolver::query("topic"))),
    );
    let addr = spawn_served(app, |serve| serve.write_timeout(Duration::from_millis(300))).await;
    let mut sse = TcpStream::connect(addr).await.unwrap();
    sse.write_all(b"GET /events?topic=t HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    eventually(|| melody::sse::Sse::attach(&melody).subscribers("t") == 1).await;
    // The client reads nothing while events of 64 KiB keep coming.
    let event = "x".repeat(64 * 1024);
    timeout(WAIT, async {
        let mut tick = tokio::time::interval(Duration::from_millis(2));
        while melody::sse::Sse::attach(&melody).subscribers("t") > 0 {
            let _ = melody.topic("t").send(event.as_str());
            tick.tick().await;
        }
    })
    .await
    .expect("a subscriber that stopped reading was kept");
    // The connection itself is closed by the write timeout while the client still reads
    // nothing: its response body is dropped (the stream could not have ended otherwise, with
    // events queued behind a full socket). Reading first would let the stream drain and end
    // normally, and prove nothing.
    timeout(WAIT, async {
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        while melody::sse::Sse::attach(&melody).stats().subscribers > 0 {
            tick.tick().await;
        }
    })
    .await
    .expect("the stalled connection was kept open");
    // What was buffered can still be read, then it ends.
    timeout(WAIT, read_to_end(&mut sse))
        .await
        .expect("the stalled connection was kept open");
}

/// Sends `frames` copies of one empty frame at once (twice the default burst), then returns the
/// close code the server answers with.
async fn flood(raw: &mut Raw, first_byte: u8, frames: usize) -> u16 {
    let mask = [1u8, 2, 3, 4];
    let frame = [first_byte, 0x80, mask[0], mask[1], mask[2], mask[3]];
    let all: Vec<u8> = frame
        .iter()
        .copied()
        .cycle()
        .take(frame.len() * frames)
        .collect();
    // The server may close before it has read everything: a failed write is expected then.
    let _ = raw.stream.write_all(&all).await;
    raw.read_close_code().await
}

// Finding 6: empty continuation frames carry no message but cost work.
#[tokio::test]
async fn a_flood_of_empty_continuation_frames_is_closed_with_1008() {
    let melody = Melody::new();
    let addr = spawn_app(&melody).await;
    let mut raw = Raw::connect(addr).await;
    raw.send_frame(0x01, b"").await; // a text message that never ends
    assert_eq!(flood(&mut raw, 0x00, 40_000).await, 1008);
    assert_eq!(melody.stats().rejections.frame_rate, 1);
}

// Finding 6: unsolicited pongs.
#[tokio::test]
async fn a_pong_flood_is_closed_with_1008() {
    let melody = Melody::new();
    let addr = spawn_app(&melody).await;
    let mut raw = Raw::connect(addr).await;
    assert_eq!(flood(&mut raw, 0x8A, 40_000).await, 1008);
}

// Finding 6: pings, each of which the server must answer.
#[tokio::test]
async fn a_ping_flood_is_closed_with_1008() {
    let melody = Melody::new();
    let addr = spawn_app(&melody).await;
    let mut raw = Raw::connect(addr).await;
    assert_eq!(flood(&mut raw, 0x89, 40_000).await, 1008);
}

// Finding 6: the limit is per session and generous: a busy client is not cut off.
#[tokio::test]
async fn a_burst_within_the_frame_budget_is_served() {
    let melody = Melody::with_config(Config::default().frame_rate_limit(1_000, 2_000));
    melody.on_text(|session, text| {
        if &*text == "last" {
            let _ = session.send("done");
        }
    });
    let addr = spawn_app(&melody).await;
    let mut client = connect(addr).await;
    for _ in 0..1_500 {
        send_text(&mut client, "x").await;
    }
    send_text(&mut client, "last").await;
    assert_eq!(recv_text(&mut client).await, "done");
}

// Finding 7: a session keeps a bounded copy of the request head.
#[tokio::test]
async fn oversized_request_heads_are_refused_with_431() {
    let melody = Melody::new();
    let addr = spawn_app(&melody).await;
    let padding: String = (0..95)
        .map(|i| format!("X-Pad-{i}: {}\r\n", "a".repeat(4000)))
        .collect();
    let (status, _) = http_request(addr, &upgrade_request(&padding)).await;
    assert_eq!(status, 431);
    assert_eq!(melody.all().len(), 0);
    // A normal one is fine.
    let (status, _) = http_request(addr, &upgrade_request("Cookie: a=b\r\n")).await;
    assert_eq!(status, 101);
}

// `melody::serve` bounds every request head, upgrade or not, at 16 KiB by default.
#[tokio::test]
async fn serve_refuses_request_heads_over_its_header_limit_with_431() {
    let app = Router::new().route("/", get(|| async { "ok" }));
    let addr = spawn_served(app, |serve| serve).await;
    let head = |bytes: usize| {
        format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\nConnection: close\r\n\r\n",
            "a".repeat(bytes)
        )
    };
    let (status, _) = http_request(addr, &head(20 * 1024)).await;
    assert_eq!(status, 431);
    let (status, _) = http_request(addr, &head(12 * 1024)).await;
    assert_eq!(status, 200);
}

// Finding 7: or only the headers the application asks for.
#[tokio::test]
async fn only_the_kept_headers_stay_on_the_session() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let melody = Melody::with_config(Config::default().keep_headers([http::header::COOKIE]));
    melody.on_connect(move |session| {
        let _ = tx.send(session.clone());
    });
    let addr = spawn_app(&melody).await;
    let _client = connect_with(
        addr,
        "/ws",
        &[("cookie", "a=b"), ("user-agent", "hostile/1.0")],
    )
    .await;
    let session = timeout(WAIT, rx.recv()).await.unwrap().unwrap();
    assert_eq!(session.headers().len(), 1);
    assert_eq!(session.headers()["cookie"], "a=b");
    // axum's copy of the URI is not kept a second time, nor the address the session keeps.
    let extensions = &session.request().extensions;
    assert!(extensions.get::<axum::extract::OriginalUri>().is_none());
    assert!(
        extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .is_none()
    );
    assert!(session.remote_addr().is_some());
}

// Finding 7: topics per session are capped.
#[tokio::test]
async fn topics_per_session_are_capped() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let melody = Melody::with_config(Config::default().max_topics_per_session(3));
    melody.on_connect(move |session| {
        let _ = tx.send(session.clone());
    });
    let addr = spawn_app(&melody).await;
    let _client = connect(addr).await;
    let session = timeout(WAIT, rx.recv()).await.unwrap().unwrap();
    for topic in ["a", "b", "c"] {
        assert_eq!(session.join(topic), Ok(true));
    }
    assert_eq!(session.join("a"), Ok(false));
    assert_eq!(session.join("d"), Err(JoinError::TooManyTopics { max: 3 }));
    session.leave("a");
    assert_eq!(session.join("d"), Ok(true));
    assert_eq!(Config::default().max_topics_per_session, 128);
}

// Finding 10: handshakes RFC 6455 section 4.2.1 forbids.
#[tokio::test]
async fn malformed_handshakes_get_client_errors() {
    let melody = Melody::new();
    let addr = spawn_app(&melody).await;
    let http10 = upgrade_request("").replacen("HTTP/1.1", "HTTP/1.0", 1);
    assert_eq!(http_request(addr, &http10).await.0, 400);
    let two_keys = upgrade_request("Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\n");
    assert_eq!(http_request(addr, &two_keys).await.0, 400);
    let no_host = upgrade_request("").replacen("Host: localhost\r\n", "", 1);
    assert_eq!(http_request(addr, &no_host).await.0, 400);
    assert_eq!(melody.all().len(), 0);
}

// Beyond the review: under concurrent message handling, a client cannot start tasks faster than
// its handlers finish.
#[tokio::test]
async fn concurrent_handler_calls_of_a_session_are_bounded() {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };
    let started = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let melody = Melody::with_config(
        Config::default()
            .concurrent_message_handling(true)
            .message_buffer_size(1024),
    );
    let (s, f, r) = (started.clone(), finished.clone(), release.clone());
    melody.on_text_async(move |_, _| {
        let (s, f, r) = (s.clone(), f.clone(), r.clone());
        async move {
            s.fetch_add(1, Ordering::SeqCst);
            let _ = r.acquire().await.unwrap();
            f.fetch_add(1, Ordering::SeqCst);
        }
    });
    let addr = spawn_app(&melody).await;
    let mut client = connect(addr).await;
    for _ in 0..100 {
        send_text(&mut client, "work").await;
    }
    eventually(|| started.load(Ordering::SeqCst) == 64).await;
    // Nothing more starts while 64 are running.
    let more = timeout(
        Duration::from_millis(300),
        eventually(|| started.load(Ordering::SeqCst) > 64),
    )
    .await;
    assert!(more.is_err(), "more than 64 handler calls started");
    release.add_permits(100);
    eventually(|| finished.load(Ordering::SeqCst) == 100).await;
}

// Beyond the review: an auth hook that never answers must not hold connections forever.
#[tokio::test]
async fn an_auth_hook_that_hangs_is_cut_off_with_503() {
    let melody = Melody::with_config(Config::default().auth_timeout(Duration::from_millis(200)));
    melody.on_auth(|_| std::future::pending());
    let addr = spawn_app(&melody).await;
    let (status, _) = http_request(addr, &upgrade_request("")).await;
    assert_eq!(status, 503);
    assert_eq!(melody.stats().rejections.auth, 1);
}

// Beyond the review: a handshake has no body; its bytes would be read as frames.
#[tokio::test]
async fn an_upgrade_request_with_a_body_is_refused() {
    let melody = Melody::new();
    let addr = spawn_app(&melody).await;
    let request = upgrade_request("Content-Length: 6\r\n") + "\u{81}\u{80}abcd";
    assert_eq!(http_request(addr, &request).await.0, 400);
}

// Beyond the review: SSE streams are connections too, bounded by `max_connections`.
#[cfg(feature = "sse")]
#[tokio::test]
async fn sse_streams_count_against_max_connections() {
    use melody::sse::TopicResolver;
    let melody = Melody::with_config(Config::default().max_connections(1));
    let app = Router::new().route("/ws", get(melody.handler())).route(
        "/events",
        get(melody::sse::Sse::attach(&melody).handler(TopicResolver::query("topic"))),
    );
    let addr = common::spawn_router(app).await;
    let mut sse = TcpStream::connect(addr).await.unwrap();
    sse.write_all(b"GET /events?topic=t HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    eventually(|| melody::sse::Sse::attach(&melody).subscribers("t") == 1).await;
    assert_eq!(http_request(addr, &upgrade_request("")).await.0, 503);
    drop(sse);
    eventually(|| melody::sse::Sse::attach(&melody).subscribers("t") == 0).await;
    let _client = connect(addr).await;
}
