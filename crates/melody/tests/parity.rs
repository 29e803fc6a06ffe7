//! Go melody parity: the rows of `docs/MELODY_PARITY.md` that no other test file covers.
//!
//! Each test pins one Go melody item to its Rust counterpart: the same numbers, the same defaults,
//! the same observable behaviour on a real server with real clients.

mod common;

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, extract::Request, response::IntoResponse, routing::get};
use common::*;
use futures_util::SinkExt;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use melody::{
    CheckOrigin, CloseCode, CloseError, Closed, Config, Error, Keys, LocalAddr, Melody,
    OverflowPolicy, RemoteAddr, Session, TrySendError, UpgradeRejection,
    compat::{MelodyCompat, SessionCompat},
};
use tokio::{net::TcpListener, sync::mpsc};
use tokio_websockets::Message;

/// A hub whose connect handler hands each new session to the test.
async fn hub_with_sessions(
    config: Config,
) -> (Melody, SocketAddr, mpsc::UnboundedReceiver<Session>) {
    let melody = Melody::with_config(config);
    let (tx, rx) = mpsc::unbounded_channel();
    melody.handle_connect(move |s| {
        let _ = tx.send(s.clone());
    });
    let addr = spawn_app(&melody).await;
    (melody, addr, rx)
}

async fn next_session(rx: &mut mpsc::UnboundedReceiver<Session>) -> Session {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("no session in time")
        .expect("hub dropped")
}

/// Go: `CloseNormalClosure = 1000` ... `CloseTLSHandshake = 1015`.
#[test]
fn close_codes_have_go_melodys_numbers() {
    let go = [
        (CloseCode::NORMAL_CLOSURE, 1000),
        (CloseCode::GOING_AWAY, 1001),
        (CloseCode::PROTOCOL_ERROR, 1002),
        (CloseCode::UNSUPPORTED_DATA, 1003),
        (CloseCode::NO_STATUS_RECEIVED, 1005),
        (CloseCode::ABNORMAL_CLOSURE, 1006),
        (CloseCode::INVALID_FRAME_PAYLOAD_DATA, 1007),
        (CloseCode::POLICY_VIOLATION, 1008),
        (CloseCode::MESSAGE_TOO_BIG, 1009),
        (CloseCode::MANDATORY_EXTENSION, 1010),
        (CloseCode::INTERNAL_SERVER_ERR, 1011),
        (CloseCode::SERVICE_RESTART, 1012),
        (CloseCode::TRY_AGAIN_LATER, 1013),
        (CloseCode::TLS_HANDSHAKE, 1015),
    ];
    for (code, number) in go {
        assert_eq!(code.as_u16(), number, "{code:?}");
        assert_eq!(u16::from(code), number, "{code:?}");
        assert_eq!(code.to_string(), number.to_string());
        assert_eq!(CloseCode::new(number), Some(code));
    }
    // Only the codes that may never be sent are reserved.
    let reserved: Vec<u16> = go
        .iter()
        .filter(|(code, _)| code.is_reserved())
        .map(|(_, number)| *number)
        .collect();
    assert_eq!(reserved, [1005, 1006, 1015]);
}

/// Go: `New()` uses `newConfig()`: WriteWait 10 s, PongWait 60 s, PingPeriod 54 s,
/// MaxMessageSize 512, MessageBufferSize 256, ConcurrentMessageHandling false.
#[test]
fn new_has_go_melodys_default_config() {
    for config in [
        Melody::new().config().clone(),
        Melody::default().config().clone(),
        Config::default(),
    ] {
        assert_eq!(config.write_wait, Duration::from_secs(10));
        assert_eq!(config.pong_wait, Duration::from_secs(60));
        assert_eq!(config.ping_period, Duration::from_secs(54));
        assert_eq!(config.max_message_size, 512);
        assert_eq!(config.message_buffer_size, 256);
        assert!(!config.concurrent_message_handling);
        // Rust-only settings, and the one deliberate difference: Go melody's upgrader accepts
        // every origin, ours accepts the same origin only.
        assert_eq!(config.overflow, OverflowPolicy::DropMessage);
        assert!(matches!(config.check_origin, CheckOrigin::SameOrigin));
    }
    assert!(!Melody::new().is_closed());
    assert_eq!(Melody::new().len(), 0);
}

/// Go: `m.Config` is the hub's configuration. Ours is fixed at `with_config` and read back with
/// `config()`.
#[test]
fn config_returns_the_settings_the_hub_was_built_with() {
    let melody = Melody::with_config(
        Config::default()
            .write_wait(Duration::from_millis(1500))
            .pong_wait(Duration::from_secs(7))
            .ping_period(Duration::from_secs(3))
            .max_message_size(4096)
            .message_buffer_size(9)
            .concurrent_message_handling(true)
            .overflow(OverflowPolicy::CloseSession)
            .check_origin(CheckOrigin::Any),
    );
    let config = melody.config();
    assert_eq!(config.write_wait, Duration::from_millis(1500));
    assert_eq!(config.pong_wait, Duration::from_secs(7));
    assert_eq!(config.ping_period, Duration::from_secs(3));
    assert_eq!(config.max_message_size, 4096);
    assert_eq!(config.message_buffer_size, 9);
    assert!(config.concurrent_message_handling);
    assert_eq!(config.overflow, OverflowPolicy::CloseSession);
    assert!(matches!(config.check_origin, CheckOrigin::Any));
    // Every clone of the handle is the same hub with the same settings.
    assert_eq!(melody.clone().config().message_buffer_size, 9);
}

/// Go: `MaxMessageSize` is the largest message read; a bigger one ends the session (1009).
#[tokio::test]
async fn max_message_size_is_the_largest_accepted_message() {
    let melody = Melody::with_config(Config::default().max_message_size(16));
    let (events, mut log) = events();
    melody.handle_error(move |_, error| events.push(error.to_string()));
    melody.handle_message(|s, text| {
        let _ = s.write(text);
    });
    let addr = spawn_app(&melody).await;

    let mut client = connect(addr).await;
    let exactly = "x".repeat(16);
    send_text(&mut client, &exactly).await;
    assert_eq!(recv_text(&mut client).await, exactly);
    client.send(Message::binary(vec![0u8; 17])).await.unwrap();
    assert_eq!(recv_close(&mut client).await.0, 1009);
    assert_eq!(
        log.next().await,
        "message of 17 bytes exceeds the limit of 16 bytes"
    );
}

/// Go: `MessageBufferSize` is "the max amount of messages that can be in a session's buffer
/// before it starts dropping them": exactly that many fit, the next ones are dropped and
/// reported as `ErrMessageBufferFull`.
#[tokio::test]
async fn message_buffer_size_is_the_number_of_messages_a_session_holds() {
    let melody = Melody::with_config(Config::default().message_buffer_size(3));
    let (events, mut log) = events();
    let on_error = events.clone();
    melody.handle_error(move |_, error| on_error.push(format!("error {error}")));
    let (tx, mut sessions) = mpsc::unbounded_channel();
    melody.handle_connect(move |s| {
        // The session task runs this handler, so nothing is written while it runs: the queue
        // fills up to its capacity and no further.
        let results: Vec<&str> = (0..5)
            .map(|i| match s.write(format!("m{i}")) {
                Ok(()) => "ok",
                Err(TrySendError::Full(_)) => "full",
                Err(_) => "other",
            })
            .collect();
        events.push(results.join(","));
        let _ = tx.send(s.clone());
    });
    let addr = spawn_app(&melody).await;

    let mut client = connect(addr).await;
    assert_eq!(log.next().await, "error session message buffer is full");
    assert_eq!(log.next().await, "error session message buffer is full");
    assert_eq!(log.next().await, "ok,ok,ok,full,full");
    let session = next_session(&mut sessions).await;
    for i in 0..3 {
        assert_eq!(recv_text(&mut client).await, format!("m{i}"));
    }
    // The dropped messages were never written: the next message is the one written now.
    session.write("after").unwrap();
    assert_eq!(recv_text(&mut client).await, "after");
    assert!(!session.is_closed());
}

/// Go: `ConcurrentMessageHandling` runs each (plain, blocking) message handler in its own
/// goroutine. Here the first handler blocks until the second has run: only possible when they
/// run in parallel. Run one at a time, the first gives up after `WAIT` and the order is wrong.
///
/// The handler blocks inside `block_in_place`: a plain handler that blocks a Tokio worker
/// thread outright can keep the runtime from reading any socket until it returns (see
/// `docs/MELODY_PARITY.md`), which is not what this test is about.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_message_handling_runs_plain_handlers_in_parallel() {
    let melody = Melody::with_config(Config::default().concurrent_message_handling(true));
    let (events, mut log) = events();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let release = Mutex::new(release);
    let released = Mutex::new(released);
    melody.handle_message(move |_, text| match &*text {
        "first" => {
            let got =
                tokio::task::block_in_place(|| released.lock().unwrap().recv_timeout(WAIT).is_ok());
            events.push(format!("first released={got}"));
        }
        _ => {
            events.push("second");
            release.lock().unwrap().send(()).unwrap();
        }
    });
    let addr = spawn_app(&melody).await;

    let mut client = connect(addr).await;
    send_text(&mut client, "first").await;
    send_text(&mut client, "second").await;
    assert_eq!(log.next().await, "second");
    assert_eq!(log.next().await, "first released=true");
}

/// Go: `m.HandleRequest(w, r)` called from the application's own route handler.
#[tokio::test]
async fn handle_request_upgrades_a_request_from_any_route() {
    let melody = Melody::new();
    let (events, mut log) = events();
    melody.handle_connect(move |s| {
        events.push(format!(
            "connect path={} keys={}",
            s.uri().path(),
            s.get_value("anything").is_some()
        ));
    });
    melody.handle_message(|s, text| {
        let _ = s.write(format!("echo {}", &*text));
    });
    let hub = melody.clone();
    let app = Router::new().route(
        "/chat/ws",
        get(move |req: Request| {
            let hub = hub.clone();
            async move { hub.handle_request(req).await.into_response() }
        }),
    );
    let addr = spawn_router(app).await;

    let mut client = connect_with(addr, "/chat/ws", &[]).await;
    assert_eq!(log.next().await, "connect path=/chat/ws keys=false");
    assert_eq!(melody.len(), 1);
    send_text(&mut client, "hi").await;
    assert_eq!(recv_text(&mut client).await, "echo hi");
}

/// `handle_request` on a request the server cannot upgrade (no hyper `OnUpgrade`) is refused
/// with 500 instead of hanging or panicking.
#[tokio::test]
async fn handle_request_without_an_upgradable_connection_is_refused_with_500() {
    let melody = Melody::new();
    let request = http::Request::get("/ws")
        .header("host", "localhost")
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(())
        .unwrap();
    let response = melody.handle_request(request).await;
    assert_eq!(response.status(), 500);
    assert_eq!(UpgradeRejection::NotUpgradable.status(), 500);
    assert_eq!(melody.len(), 0);
}

/// Go: `HandleRequestWithKeys` populates `Session.Keys`; `Set`, `Get`, `UnSet` work on that
/// same map.
#[tokio::test]
async fn keys_given_at_upgrade_are_the_sessions_string_keys() {
    let melody = Melody::new();
    let (events, mut log) = events();
    melody.handle_connect(move |s| {
        let before = s.get::<String>("room").unwrap_or_default();
        s.set("room", String::from("kitchen"));
        let after = s.get::<String>("room").unwrap_or_default();
        let had_plan = s.unset("plan");
        events.push(format!(
            "{before} {after} {had_plan} {}",
            s.get::<u32>("plan").is_none()
        ));
    });
    let hub = melody.clone();
    let app = Router::new().route(
        "/ws",
        get(move |req: Request| {
            let hub = hub.clone();
            async move {
                let keys = Keys::new()
                    .with("room", String::from("lobby"))
                    .with("plan", 2u32);
                hub.handle_request_with_keys(req, keys)
                    .await
                    .into_response()
            }
        }),
    );
    let addr = spawn_router(app).await;
    let _client = connect(addr).await;
    assert_eq!(log.next().await, "lobby kitchen true true");
}

/// Go: `Session.LocalAddr()` and `Session.RemoteAddr()` are the two ends of the connection.
#[tokio::test]
async fn local_and_remote_addr_are_the_two_ends_of_the_connection() {
    let melody = Melody::new();
    let (tx, mut sessions) = mpsc::unbounded_channel();
    melody.handle_connect(move |s| {
        let _ = tx.send(s.clone());
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hub = melody.clone();
    tokio::spawn(async move {
        loop {
            let (stream, peer) = listener.accept().await.unwrap();
            let local = stream.local_addr().unwrap();
            let hub = hub.clone();
            let service = service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(RemoteAddr(peer));
                req.extensions_mut().insert(LocalAddr(local));
                let upgrade = hub.handle_request(req);
                async move { Ok::<_, Infallible>(upgrade.await) }
            });
            tokio::spawn(
                http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades(),
            );
        }
    });

    let client = connect(addr).await;
    let session = next_session(&mut sessions).await;
    let tokio_websockets::MaybeTlsStream::Plain(stream) = client.get_ref();
    assert_eq!(session.local_addr(), Some(stream.peer_addr().unwrap()));
    assert_eq!(session.local_addr(), Some(addr));
    assert_eq!(session.remote_addr(), Some(stream.local_addr().unwrap()));
    // Kept once, as the session's own: not also as request extensions.
    assert!(session.request().extensions.get::<RemoteAddr>().is_none());
    assert!(session.request().extensions.get::<LocalAddr>().is_none());
}

/// Go: `ErrClosed`, `ErrSessionClosed`, `ErrMessageBufferFull` keep Go's messages; `ErrWriteClosed`
/// fixes Go's word order ("tried to write to closed a session").
#[test]
fn error_values_keep_go_melodys_messages() {
    assert_eq!(Closed.to_string(), "melody instance is closed");
    assert_eq!(CloseError::SessionClosed.to_string(), "session is closed");
    assert_eq!(
        TrySendError::Full(()).to_string(),
        "session message buffer is full"
    );
    assert_eq!(
        Error::MessageBufferFull.to_string(),
        "session message buffer is full"
    );
    assert_eq!(
        TrySendError::Closed(()).to_string(),
        "tried to write to a closed session"
    );
}

/// Go's `Session.Close()` and `Melody.Close()` send a close frame with an empty payload. Ours
/// send 1000 and 1001; `close_with_msg(&[])` is the exact Go behaviour.
#[tokio::test]
async fn an_empty_close_payload_sends_an_empty_close_frame_like_go() {
    let (melody, addr, mut sessions) = hub_with_sessions(Config::default()).await;
    let mut one = Raw::connect(addr).await;
    let session = next_session(&mut sessions).await;
    session.close_with_msg(&[]).unwrap();
    assert_eq!(
        one.read_close_code().await,
        1005,
        "no status code on the wire"
    );
    assert!(matches!(
        session.close_with_msg(&[]),
        Err(CloseError::SessionClosed)
    ));

    let mut two = Raw::connect(addr).await;
    next_session(&mut sessions).await;
    melody.close_with_msg(&[]).unwrap();
    assert_eq!(
        two.read_close_code().await,
        1005,
        "no status code on the wire"
    );
    assert!(melody.is_closed());
    assert!(matches!(
        melody.close_with_msg(&[]),
        Err(CloseError::HubClosed)
    ));
}

/// Rust only: `close_with` on a session and on the hub sends any sendable code, including
/// application codes (4000-4999), and refuses codes that cannot be sent.
#[tokio::test]
async fn close_with_sends_application_codes_and_refuses_reserved_ones() {
    let (melody, addr, mut sessions) = hub_with_sessions(Config::default()).await;
    let mut one = connect(addr).await;
    let session = next_session(&mut sessions).await;
    let app_code = CloseCode::new(4000).unwrap();
    assert!(matches!(
        session.close_with(CloseCode::ABNORMAL_CLOSURE, ""),
        Err(CloseError::ReservedCode(code)) if code == CloseCode::ABNORMAL_CLOSURE
    ));
    assert!(!session.is_closed());
    session.close_with(app_code, "kicked").unwrap();
    assert_eq!(recv_close(&mut one).await, (4000, "kicked".to_owned()));

    let mut two = connect(addr).await;
    next_session(&mut sessions).await;
    assert!(matches!(
        melody.close_with(CloseCode::TLS_HANDSHAKE, ""),
        Err(CloseError::ReservedCode(_))
    ));
    assert!(!melody.is_closed());
    melody
        .close_with(CloseCode::SERVICE_RESTART, "deploy")
        .unwrap();
    assert_eq!(recv_close(&mut two).await, (1012, "deploy".to_owned()));
    assert!(matches!(
        melody.close_with(CloseCode::NORMAL_CLOSURE, ""),
        Err(CloseError::HubClosed)
    ));
}

/// Rust only: `on_binary_async` gets binary messages (not text) and is awaited; what
/// it writes after an await arrives.
#[tokio::test]
async fn on_binary_async_gets_binary_messages() {
    let melody = Melody::new();
    let (events, mut log) = events();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    melody.on_binary_async(move |session, bytes| {
        let (events, record) = (events.clone(), record.clone());
        async move {
            tokio::task::yield_now().await;
            record.lock().unwrap().push(bytes.to_vec());
            let reversed: Vec<u8> = bytes.iter().rev().copied().collect();
            session.send_async(reversed).await.unwrap();
            events.push(format!("handled {}", bytes.len()));
        }
    });
    let addr = spawn_app(&melody).await;

    let mut client = connect(addr).await;
    send_text(&mut client, "text is not for the binary handler").await;
    client.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    let reply = recv(&mut client).await;
    assert!(reply.is_binary(), "{reply:?}");
    assert_eq!(&*reply.into_payload(), &[3, 2, 1]);
    assert_eq!(log.next().await, "handled 3");
    assert_eq!(*seen.lock().unwrap(), [vec![1u8, 2, 3]]);
}
