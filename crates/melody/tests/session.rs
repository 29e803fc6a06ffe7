//! Sessions: writes, closes, identity, the upgrade request, session data, overflow policy.

mod common;

use std::net::SocketAddr;

use axum::{Router, extract::Request, response::IntoResponse, routing::get};
use common::*;
use melody::{
    CloseCode, CloseError, Config, DataError, Key, Keys, Melody, OverflowPolicy, Session,
    TrySendError, compat::SessionCompat, format_close_message,
};

/// A hub whose connect handler hands each new session to the test.
fn melody_with_sessions(config: Config) -> (Melody, tokio::sync::mpsc::UnboundedReceiver<Session>) {
    let melody = Melody::with_config(config);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    melody.on_connect(move |s| {
        let _ = tx.send(s.clone());
    });
    (melody, rx)
}

/// [`melody_with_sessions`], served at `/ws`.
async fn hub_with_sessions(
    config: Config,
) -> (
    Melody,
    SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<Session>,
) {
    let (melody, rx) = melody_with_sessions(config);
    let addr = spawn_app(&melody).await;
    (melody, addr, rx)
}

async fn next_session(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Session>) -> Session {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn write_and_write_binary_from_another_task() {
    let (_melody, addr, mut sessions) = hub_with_sessions(Config::default()).await;
    let mut client = connect(addr).await;
    let session = next_session(&mut sessions).await;

    let writer = session.clone();
    tokio::spawn(async move {
        writer.send("from a task").unwrap();
        writer.send(melody::Message::binary(vec![9u8; 4])).unwrap();
    })
    .await
    .unwrap();
    assert_eq!(recv_text(&mut client).await, "from a task");
    assert_eq!(&*recv(&mut client).await.into_payload(), &[9u8; 4]);
}

#[tokio::test]
async fn write_async_waits_for_room_then_delivers_in_order() {
    let (_melody, addr, mut sessions) =
        hub_with_sessions(Config::default().message_buffer_size(2)).await;
    let mut client = connect(addr).await;
    let session = next_session(&mut sessions).await;

    let writer = session.clone();
    let writes = tokio::spawn(async move {
        for i in 0..50 {
            writer.send_async(format!("m{i}")).await.unwrap();
        }
    });
    for i in 0..50 {
        assert_eq!(recv_text(&mut client).await, format!("m{i}"));
    }
    writes.await.unwrap();
}

#[tokio::test]
async fn close_sends_1000_and_later_writes_fail() {
    let (melody, addr, mut sessions) = hub_with_sessions(Config::default()).await;
    let mut client = connect(addr).await;
    let session = next_session(&mut sessions).await;

    session.send("last words").unwrap();
    assert!(!session.is_closed());
    session.close().unwrap();
    assert!(session.is_closed());
    assert!(matches!(session.close(), Err(CloseError::SessionClosed)));
    // The message that was not sent is handed back.
    match session.send("too late") {
        Err(TrySendError::Closed(message)) => assert_eq!(message.as_str(), Some("too late")),
        other => panic!("{other:?}"),
    }
    assert!(session.send_async("too late").await.is_err());

    // What was queued before the close is written before the close frame.
    assert_eq!(recv_text(&mut client).await, "last words");
    assert_eq!(recv_close(&mut client).await.0, 1000);
    eventually(|| melody.all().is_empty()).await;
}

#[tokio::test]
async fn close_with_code_and_reason() {
    let (_melody, addr, mut sessions) = hub_with_sessions(Config::default()).await;
    let mut client = connect(addr).await;
    let session = next_session(&mut sessions).await;

    // Codes a close frame may not carry are refused, not sent as something else.
    for code in [1004, 1005, 1006, 1015, 1016, 2000, 2999] {
        let code = CloseCode::new(code).unwrap();
        assert!(
            matches!(session.close_with(code, "why"), Err(CloseError::ReservedCode(c)) if c == code),
            "{code:?} was not refused"
        );
        assert!(!code.may_be_sent());
    }
    assert!(
        !session.is_closed(),
        "a refused close leaves the session open"
    );
    session
        .close_with(CloseCode::POLICY_VIOLATION, "go away")
        .unwrap();
    assert_eq!(recv_close(&mut client).await, (1008, "go away".to_owned()));
}

#[tokio::test]
async fn close_with_msg_uses_a_formatted_payload() {
    let (_melody, addr, mut sessions) = hub_with_sessions(Config::default()).await;
    let mut client = connect(addr).await;
    let session = next_session(&mut sessions).await;

    assert!(matches!(
        session.close_with_msg(&[1]),
        Err(CloseError::InvalidPayload)
    ));
    let payload = format_close_message(CloseCode::UNSUPPORTED_DATA, "text only");
    session.close_with_msg(&payload).unwrap();
    assert_eq!(
        recv_close(&mut client).await,
        (1003, "text only".to_owned())
    );
}

#[tokio::test]
async fn session_knows_its_request_and_addresses() {
    let (_melody, addr, mut sessions) = hub_with_sessions(Config::default()).await;
    let client = connect_with(addr, "/ws?room=lobby", &[("x-token", "abc")]).await;
    let session = next_session(&mut sessions).await;

    assert_eq!(session.method(), "GET");
    assert_eq!(session.uri().path(), "/ws");
    assert_eq!(session.uri().query(), Some("room=lobby"));
    assert_eq!(session.headers()["x-token"], "abc");
    assert!(session.headers().contains_key("host"));
    // The handshake's own headers are not kept.
    for name in [
        "connection",
        "upgrade",
        "sec-websocket-key",
        "sec-websocket-version",
    ] {
        assert!(!session.headers().contains_key(name), "{name}");
    }
    assert_eq!(session.request().uri, *session.uri());
    let tokio_websockets::MaybeTlsStream::Plain(stream) = client.get_ref();
    let client_addr = stream.local_addr().unwrap();
    assert_eq!(session.remote_addr(), Some(client_addr));
}

// What middleware put into the request reaches the session: the session keeps its request's
// extensions in a table of their own size, and moves every entry there (axum's own too).
#[tokio::test]
async fn extensions_from_middleware_reach_the_session() {
    #[derive(Clone, Debug, PartialEq)]
    struct User(&'static str);
    #[derive(Clone, Debug, PartialEq)]
    struct Tenant(u32);
    #[derive(Clone, Debug, PartialEq)]
    struct Trace(u64);
    let (melody, mut sessions) = melody_with_sessions(Config::default());
    let app = Router::new()
        .route("/ws", get(melody.handler()))
        .layer(axum::Extension(User("ada")))
        .layer(axum::Extension(Tenant(7)))
        .layer(axum::Extension(Trace(42)));
    let addr = spawn_served(app, |serve| serve).await;
    let _client = connect(addr).await;
    let session = next_session(&mut sessions).await;

    let extensions = &session.request().extensions;
    assert_eq!(extensions.get::<User>(), Some(&User("ada")));
    assert_eq!(extensions.get::<Tenant>(), Some(&Tenant(7)));
    assert_eq!(extensions.get::<Trace>(), Some(&Trace(42)));
    assert_eq!(
        extensions
            .get::<axum::extract::MatchedPath>()
            .map(|path| path.as_str()),
        Some("/ws")
    );
    // The addresses are the session's own, not kept twice.
    assert!(extensions.get::<melody::RemoteAddr>().is_none());
    assert!(session.remote_addr().is_some() && session.local_addr().is_some());
}

// Behind a proxy, middleware may say who the client is (`RemoteAddr`) while axum's
// `ConnectInfo` holds the proxy's address: the session's address is the client's, and the
// proxy's stays readable in the request.
#[tokio::test]
async fn a_remote_addr_from_middleware_wins_and_connect_info_stays() {
    let client: SocketAddr = "203.0.113.7:4000".parse().unwrap();
    let (melody, mut sessions) = melody_with_sessions(Config::default());
    let app = Router::new()
        .route("/ws", get(melody.handler()))
        .layer(axum::Extension(melody::RemoteAddr(client)));
    let addr = spawn_router(app).await;
    let ws = connect(addr).await;
    let session = next_session(&mut sessions).await;

    assert_eq!(session.remote_addr(), Some(client));
    let tokio_websockets::MaybeTlsStream::Plain(stream) = ws.get_ref();
    let proxy = stream.local_addr().unwrap();
    let info = session
        .request()
        .extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .expect("ConnectInfo says something else: kept");
    assert_eq!(info.0, proxy);
    assert!(
        session
            .request()
            .extensions
            .get::<melody::RemoteAddr>()
            .is_none()
    );
}

#[tokio::test]
async fn string_keys_set_get_must_get_unset() {
    let (_melody, addr, mut sessions) = hub_with_sessions(Config::default()).await;
    let _client = connect(addr).await;
    let session = next_session(&mut sessions).await;

    assert_eq!(session.get::<String>("name"), None);
    session.set("name", String::from("gopher"));
    session.set("visits", 3u32);
    assert_eq!(session.get::<String>("name").as_deref(), Some("gopher"));
    assert_eq!(session.must_get::<u32>("visits"), 3);
    // The wrong type reads as absent.
    assert_eq!(session.get::<u64>("visits"), None);
    assert!(session.get_value("visits").is_some());
    assert!(session.unset("visits"));
    assert!(!session.unset("visits"));
    let missing = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        session.must_get::<u32>("visits")
    }));
    assert!(missing.is_err());
}

#[tokio::test]
async fn session_data_cannot_mismatch_silently() {
    const USER: Key<String> = Key::new("user");
    const VISITS: Key<u32> = Key::new("visits");
    let (_melody, addr, mut sessions) = hub_with_sessions(Config::default()).await;
    let _client = connect(addr).await;
    let session = next_session(&mut sessions).await;

    // `&str` and `String` are interchangeable: text is stored as a String.
    session.set("name", "gopher");
    assert_eq!(session.get::<String>("name").as_deref(), Some("gopher"));
    // Typed keys fix the type at compile time.
    session.set(USER, "ada".to_owned());
    session.set(VISITS, 7);
    assert_eq!(session.get(USER).as_deref(), Some("ada"));
    assert_eq!(session.get(VISITS), Some(7));
    // A read of the wrong type says what is there.
    assert_eq!(
        session.try_get::<u64>("visits"),
        Err(DataError::WrongType {
            key: "visits".into(),
            stored: "u32",
            requested: "u64",
        })
    );
    assert_eq!(
        session.try_get::<u32>("nothing"),
        Err(DataError::Missing {
            key: "nothing".into()
        })
    );
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        session.must_get::<u64>("visits")
    }))
    .unwrap_err();
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(message.contains("holds a u32, not a u64"), "{message}");
}

#[tokio::test]
async fn the_disconnect_handler_still_reads_the_sessions_topics() {
    let melody = Melody::new();
    let (events, mut log) = events();
    melody.on_connect(|session| {
        session.join("room:a").unwrap();
        session.join("room:b").unwrap();
    });
    let seen = melody.clone();
    melody.on_disconnect(move |session| {
        let mut topics = session.topics();
        topics.sort();
        // Out of the member lists already: nothing reaches it any more.
        events.push(format!("{topics:?} members {}", seen.topic("room:a").len()));
    });
    let addr = spawn_app(&melody).await;
    let client = connect(addr).await;
    eventually(|| melody.topic("room:a").len() == 1).await;
    drop(client);
    assert_eq!(log.next().await, r#"["room:a", "room:b"] members 0"#);
    assert!(melody.topics().is_empty());
}

#[tokio::test]
async fn typed_extensions() {
    #[derive(Clone, Debug, PartialEq)]
    struct User(String);

    let (_melody, addr, mut sessions) = hub_with_sessions(Config::default()).await;
    let _client = connect(addr).await;
    let session = next_session(&mut sessions).await;

    assert_eq!(session.insert_ext(User("ada".into())), None);
    assert_eq!(session.get_ext::<User>(), Some(User("ada".into())));
    assert_eq!(
        session.insert_ext(User("bob".into())),
        Some(User("ada".into()))
    );
    assert_eq!(session.remove_ext::<User>(), Some(User("bob".into())));
    assert_eq!(session.get_ext::<User>(), None);
}

#[tokio::test]
async fn handle_request_with_keys_attaches_values() {
    let melody = Melody::new();
    let (events, mut log) = events();
    melody.on_connect(move |s| {
        events.push(format!(
            "{} {}",
            s.must_get::<String>("user"),
            s.must_get::<u32>("plan")
        ));
    });
    let hub = melody.clone();
    let app = Router::new().route(
        "/ws",
        get(move |req: Request| async move {
            let user = req.uri().query().unwrap_or("anonymous").to_owned();
            hub.upgrade_with(req, Keys::new().with("user", user).with("plan", 2u32))
                .await
                .into_response()
        }),
    );
    let addr = spawn_router(app).await;
    let _client = connect_with(addr, "/ws?alice", &[]).await;
    assert_eq!(log.next().await, "alice 2");
}

#[tokio::test]
async fn session_reaches_its_hub() {
    let (melody, addr, mut sessions) = hub_with_sessions(Config::default()).await;
    let _client = connect(addr).await;
    let session = next_session(&mut sessions).await;
    assert_eq!(session.melody().all().len(), melody.all().len());
    assert!(format!("{session:?}").contains("Session"));
}

#[tokio::test]
async fn overflow_drop_policy_keeps_the_session_open() {
    let config = Config::default().message_buffer_size(1);
    assert_eq!(config.overflow, OverflowPolicy::DropMessage);
    let (_melody, addr, mut sessions) = hub_with_sessions(config).await;
    let mut client = connect(addr).await;
    let session = next_session(&mut sessions).await;

    // Fill the queue faster than the task can drain it: a burst from this thread.
    let mut dropped = 0;
    for i in 0..100 {
        if matches!(session.send(format!("{i}")), Err(TrySendError::Full(_))) {
            dropped += 1;
        }
    }
    assert!(
        dropped > 0,
        "a one-message queue must overflow under a burst"
    );
    assert!(!session.is_closed());
    assert_eq!(recv_text(&mut client).await, "0");
    // Still open and usable after the drops.
    eventually(|| session.send("after").is_ok()).await;
    loop {
        if recv_text(&mut client).await == "after" {
            break;
        }
    }
}

#[tokio::test]
async fn overflow_close_policy_closes_the_slow_session_with_1008() {
    let config = Config::default()
        .message_buffer_size(1)
        .overflow(OverflowPolicy::CloseSession);
    let (_melody, addr, mut sessions) = hub_with_sessions(config).await;
    let mut client = connect(addr).await;
    let session = next_session(&mut sessions).await;

    for i in 0..100 {
        let _ = session.send(format!("{i}"));
    }
    assert!(session.is_closed());
    loop {
        let message = recv(&mut client).await;
        if let Some((code, reason)) = message.as_close() {
            assert_eq!(u16::from(code), 1008);
            assert_eq!(reason, "message buffer full");
            break;
        }
    }
}

/// Regression: the closing handshake raced a shutdown watcher that could take queued messages
/// out of the queue and lose them. A message and a close arrive together; the replies the
/// handler queues for the message must all go out before the close is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_queued_before_a_peer_close_are_all_delivered() {
    let melody = Melody::new();
    melody.on_text(|session, _| {
        for i in 0..10 {
            session.send(format!("m{i}")).unwrap();
        }
    });
    let addr = spawn_app(&melody).await;
    for _ in 0..30 {
        let mut raw = Raw::connect(addr).await;
        raw.send_frames(&[(0x81, b"go"), (0x88, &[0x03, 0xe8])])
            .await;
        for i in 0..10 {
            let (opcode, payload) = raw.read_frame().await;
            assert_eq!(
                (opcode, payload),
                (0x1, format!("m{i}").into_bytes()),
                "reply {i}"
            );
        }
        assert_eq!(raw.read_frame().await.0, 0x8, "then the close");
    }
}
