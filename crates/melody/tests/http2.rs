//! WebSockets over HTTP/2 (RFC 8441): a real server on a free port, hyper's HTTP/2 client with
//! prior knowledge (h2c), and a WebSocket client speaking over the stream the extended CONNECT
//! opens.

mod common;
mod process;

use std::{
    future::{Future, IntoFuture, poll_fn},
    net::SocketAddr,
    task::Poll,
    time::Duration,
};

use axum::{Router, routing::any};
use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use http::{Method, Request, Response, StatusCode, request};
use http_body_util::{BodyExt, Empty};
use hyper::{body::Incoming, client::conn::http2, ext::Protocol, upgrade::Upgraded};
use hyper_util::rt::{TokioExecutor, TokioIo};
use melody::{AuthRejection, Config, Keys, Melody};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    time::timeout,
};
use tokio_websockets::{ClientBuilder, Message, WebSocketStream};

/// One HTTP/2 connection's request handle; clones share the connection.
type H2 = http2::SendRequest<Empty<Bytes>>;

/// A WebSocket client over one stream of an HTTP/2 connection.
type Ws = WebSocketStream<TokioIo<Upgraded>>;

/// An echo hub at `/ws` (any method: HTTP/1.1 upgrades are GETs, HTTP/2 ones CONNECTs), served
/// by `melody::serve` with its default limits.
async fn spawn_echo(melody: &Melody) -> SocketAddr {
    melody.on_text(|session, text| {
        let _ = session.send(text);
    });
    melody.on_binary(|session, bytes| {
        let _ = session.send(melody::Message::binary(bytes));
    });
    spawn_h2(melody).await
}

/// Serves `melody` at `/ws` with `melody::serve` and its default limits.
async fn spawn_h2(melody: &Melody) -> SocketAddr {
    spawn_served(Router::new().route("/ws", any(melody.handler())), |serve| {
        serve
    })
    .await
}

/// An HTTP/2 connection to `addr` with prior knowledge, and the number of streams the server
/// allows at once. Returns once the server's settings have arrived: RFC 8441 lets a client
/// send `:protocol` only after the server has announced that it understands it.
async fn h2_connect(addr: SocketAddr) -> (H2, usize) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let (mut send, conn) = http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    let mut conn = Box::pin(conn);
    // hyper reads the connection in a task of its own, which wakes no one when the settings
    // arrive. A server writes its settings before any response, so once a first request has
    // its answer, they have been read.
    let first = Request::get(format!("http://{addr}/"))
        .body(Empty::new())
        .unwrap();
    let mut first = Box::pin(send.send_request(first));
    timeout(
        WAIT,
        poll_fn(|cx| {
            if let Poll::Ready(result) = conn.as_mut().poll(cx) {
                panic!("the connection ended during its handshake: {result:?}");
            }
            first.as_mut().poll(cx)
        }),
    )
    .await
    .expect("no answer to the first request")
    .expect("the first request failed");
    assert!(
        conn.is_extended_connect_protocol_enabled(),
        "the server did not enable extended CONNECT"
    );
    let streams = conn.current_max_send_streams();
    tokio::spawn(conn);
    (send, streams)
}

/// An RFC 8441 request for `path`.
fn connect_request(addr: SocketAddr, path: &str) -> request::Builder {
    Request::builder()
        .method(Method::CONNECT)
        .uri(format!("http://{addr}{path}"))
        .extension(Protocol::from_static("websocket"))
        .header("sec-websocket-version", "13")
}

async fn send(h2: &mut H2, request: request::Builder) -> Response<Incoming> {
    let request = request.body(Empty::new()).unwrap();
    timeout(WAIT, h2.send_request(request))
        .await
        .expect("no response in time")
        .expect("the request failed")
}

/// The WebSocket a `200` response opened.
async fn websocket(mut response: Response<Incoming>) -> Ws {
    assert_eq!(response.status(), StatusCode::OK, "{response:?}");
    let upgraded = timeout(WAIT, hyper::upgrade::on(&mut response))
        .await
        .expect("no upgrade in time")
        .unwrap();
    ClientBuilder::new().take_over(TokioIo::new(upgraded))
}

/// Opens a WebSocket at `/ws` over the connection.
async fn open(h2: &mut H2, addr: SocketAddr) -> Ws {
    open_at(h2, addr, "/ws").await
}

/// Opens a WebSocket at `path` over the connection.
async fn open_at(h2: &mut H2, addr: SocketAddr, path: &str) -> Ws {
    websocket(send(h2, connect_request(addr, path)).await).await
}

/// A refusal's status and body.
async fn refusal(response: Response<Incoming>) -> (StatusCode, String) {
    let status = response.status();
    let body = timeout(WAIT, response.into_body().collect())
        .await
        .expect("no body in time")
        .unwrap()
        .to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// The next data message (the client answers pings itself).
async fn next(ws: &mut Ws) -> Message {
    timeout(WAIT, async {
        loop {
            let message = ws.next().await.expect("stream ended").unwrap();
            if !message.is_ping() && !message.is_pong() {
                return message;
            }
        }
    })
    .await
    .expect("no message in time")
}

async fn next_text(ws: &mut Ws) -> String {
    let message = next(ws).await;
    message
        .as_text()
        .unwrap_or_else(|| panic!("expected text, got {message:?}"))
        .to_owned()
}

/// Reads on to the end of the stream, as the close handshake requires.
async fn until_end(ws: &mut Ws) {
    timeout(WAIT, async { while ws.next().await.is_some() {} })
        .await
        .expect("stream did not end after close");
}

#[tokio::test]
async fn text_and_binary_echo_over_http2() {
    // Big enough for messages that span many HTTP/2 frames.
    let melody = Melody::with_config(Config::default().max_message_size(256 * 1024));
    let (events, mut log) = events();
    melody.on_connect(move |s| {
        events.push(format!(
            "connected remote={} local={}",
            s.remote_addr().is_some(),
            s.local_addr().is_some()
        ));
    });
    let addr = spawn_echo(&melody).await;
    let (mut h2, _) = h2_connect(addr).await;

    let response = send(&mut h2, connect_request(addr, "/ws")).await;
    // RFC 8441: no Upgrade, no Connection, no Sec-WebSocket-Accept.
    for name in ["upgrade", "connection", "sec-websocket-accept"] {
        assert!(!response.headers().contains_key(name), "{response:?}");
    }
    let mut ws = websocket(response).await;
    assert_eq!(log.next().await, "connected remote=true local=true");

    ws.send(Message::text("over a stream")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "over a stream");
    let big = vec![7u8; 200_000];
    ws.send(Message::binary(big.clone())).await.unwrap();
    let echoed = next(&mut ws).await;
    assert!(echoed.is_binary());
    assert_eq!(echoed.as_payload()[..], big[..]);
}

#[tokio::test]
async fn many_websockets_share_one_connection_each_its_own_session() {
    let melody = Melody::new();
    let (events, mut log) = events();
    melody.on_connect(move |s| events.push(format!("connected {}", s.id())));
    melody.on_text(|s, text| {
        let _ = s.melody().all().send(format!("{}: {text}", s.id()));
    });
    let addr = spawn_h2(&melody).await;
    let (h2, _) = h2_connect(addr).await;

    // Opened at once, on clones of the one connection's handle.
    let opening = (0..3).map(|_| {
        let mut h2 = h2.clone();
        async move { open(&mut h2, addr).await }
    });
    let mut sockets = futures_util::future::join_all(opening).await;
    let mut ids = vec![log.next().await, log.next().await, log.next().await];
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "three distinct sessions: {ids:?}");
    assert_eq!(melody.all().len(), 3);

    sockets[1].send(Message::text("hello")).await.unwrap();
    let first = next_text(&mut sockets[0]).await;
    assert!(first.ends_with(": hello"), "{first}");
    for ws in &mut sockets[1..] {
        assert_eq!(next_text(ws).await, first);
    }

    // One session closing leaves the others, and the connection, open.
    sockets[0].close().await.unwrap();
    until_end(&mut sockets[0]).await;
    sockets[2].send(Message::text("still here")).await.unwrap();
    let second = next_text(&mut sockets[1]).await;
    assert!(second.ends_with(": still here"), "{second}");
    assert_eq!(next_text(&mut sockets[2]).await, second);
    let mut another = open(&mut h2.clone(), addr).await;
    another.send(Message::text("late")).await.unwrap();
    assert!(next_text(&mut another).await.ends_with(": late"));
    // Sessions on HTTP/2 streams keep their tasks (a parked session waits on its TCP stream's
    // readiness, and many streams share one connection).
    assert_eq!(melody.stats().parks, 0);
}

#[tokio::test]
async fn http1_and_http2_clients_share_the_port_and_the_hub() {
    let melody = Melody::new();
    melody.on_text(|s, text| {
        let _ = s.melody().all().send(text);
    });
    let addr = spawn_h2(&melody).await;
    let mut http1 = connect(addr).await;
    let (mut h2, _) = h2_connect(addr).await;
    let mut over_h2 = open(&mut h2, addr).await;

    send_text(&mut http1, "from HTTP/1.1").await;
    assert_eq!(recv_text(&mut http1).await, "from HTTP/1.1");
    assert_eq!(next_text(&mut over_h2).await, "from HTTP/1.1");
    over_h2.send(Message::text("from HTTP/2")).await.unwrap();
    assert_eq!(next_text(&mut over_h2).await, "from HTTP/2");
    assert_eq!(recv_text(&mut http1).await, "from HTTP/2");

    // Plain HTTP/1.1 requests are served as before.
    let (status, _) = http_request(addr, "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn the_server_closes_and_the_client_closes() {
    let melody = Melody::new();
    let (events, mut log) = events();
    melody.on_text(|s, text| {
        if &*text == "close me" {
            let _ = s.close_with(melody::CloseCode::new(4000).unwrap(), "as asked");
        }
    });
    melody.on_disconnect(move |_| events.push("disconnected"));
    let addr = spawn_h2(&melody).await;
    let (mut h2, _) = h2_connect(addr).await;

    let mut ws = open(&mut h2, addr).await;
    ws.send(Message::text("close me")).await.unwrap();
    let close = next(&mut ws).await;
    let (code, reason) = close.as_close().expect("a close frame");
    assert_eq!((u16::from(code), reason), (4000, "as asked"));
    until_end(&mut ws).await;
    assert_eq!(log.next().await, "disconnected");

    let mut ws = open(&mut h2, addr).await;
    ws.close().await.unwrap();
    until_end(&mut ws).await;
    assert_eq!(log.next().await, "disconnected");
    assert_eq!(melody.all().len(), 0);
}

#[tokio::test]
async fn the_same_checks_as_http1() {
    let melody = Melody::with_config(
        Config::default()
            .max_connections(1)
            .subprotocols(["v2.chat", "chat"]),
    );
    let (events, mut log) = events();
    melody.on_connect(move |s| {
        events.push(format!(
            "subprotocol {:?} user {:?}",
            s.subprotocol(),
            s.get::<String>("user")
        ));
    });
    melody.on_auth(|req| {
        let user = req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        async move {
            match user {
                Some(user) => Ok(Keys::new().with("user", user)),
                None => Err(AuthRejection::unauthorized("who are you?")),
            }
        }
    });
    let addr = spawn_h2(&melody).await;
    let (mut h2, _) = h2_connect(addr).await;

    let response = send(&mut h2, connect_request(addr, "/ws")).await;
    assert_eq!(
        refusal(response).await,
        (StatusCode::UNAUTHORIZED, "who are you?".to_owned())
    );
    let cross_site = connect_request(addr, "/ws")
        .header("authorization", "ann")
        .header("origin", "http://evil.example");
    let (status, _) = refusal(send(&mut h2, cross_site).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The same origin: `:authority` stands for `Host`.
    let offer = connect_request(addr, "/ws")
        .header("authorization", "ann")
        .header("origin", format!("http://{addr}"))
        .header("sec-websocket-protocol", "chat, v2.chat");
    let response = send(&mut h2, offer).await;
    assert_eq!(response.headers()["sec-websocket-protocol"], "v2.chat");
    let mut ws = websocket(response).await;
    assert_eq!(
        log.next().await,
        r#"subprotocol Some("v2.chat") user Some("ann")"#
    );

    let second = connect_request(addr, "/ws").header("authorization", "bob");
    let (status, _) = refusal(send(&mut h2, second).await).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    // The slot comes back when the session ends.
    ws.close().await.unwrap();
    until_end(&mut ws).await;
    let third = connect_request(addr, "/ws").header("authorization", "cy");
    let _ws = websocket(send(&mut h2, third).await).await;
    assert_eq!(log.next().await, r#"subprotocol None user Some("cy")"#);
}

#[tokio::test]
async fn requests_that_are_not_rfc8441_handshakes_are_refused() {
    let melody = Melody::new();
    // Every path and method reaches the hub, so that a plain CONNECT (which has no path) does.
    let app = Router::new().fallback(melody.handler());
    let addr = spawn_served(app, |serve| serve).await;
    let (mut h2, _) = h2_connect(addr).await;

    let other_protocol =
        connect_request(addr, "/ws").extension(Protocol::from_static("connect-udp"));
    let (status, body) = refusal(send(&mut h2, other_protocol).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // A CONNECT without `:protocol` asks for a TCP tunnel.
    let tunnel = Request::builder()
        .method(Method::CONNECT)
        .uri(addr.to_string());
    let (status, _) = refusal(send(&mut h2, tunnel).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // HTTP/2 has no `101`: a GET is no handshake there.
    let get = Request::get(format!("http://{addr}/ws")).header("sec-websocket-version", "13");
    let (status, body) = refusal(send(&mut h2, get).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("HTTP/2 CONNECT"), "{body}");

    let mut old = connect_request(addr, "/ws");
    old.headers_mut()
        .unwrap()
        .insert("sec-websocket-version", "8".parse().unwrap());
    let response = send(&mut h2, old).await;
    assert_eq!(response.headers()["sec-websocket-version"], "13");
    assert_eq!(refusal(response).await.0, StatusCode::UPGRADE_REQUIRED);

    // Nothing was opened, and the connection still serves handshakes.
    assert_eq!(melody.all().len(), 0);
    let _ws = open(&mut h2, addr).await;
}

#[tokio::test]
async fn http2_limits_of_serve() {
    let melody = Melody::new();
    let app = Router::new().route("/ws", any(melody.handler()));
    let (_, streams) = h2_connect(spawn_served(app.clone(), |serve| serve).await).await;
    assert_eq!(streams, 100, "the default stream limit");
    let addr = spawn_served(app.clone(), |serve| {
        serve
            .max_concurrent_streams(2)
            .header_read_timeout(Duration::from_millis(200))
    })
    .await;
    let (mut h2, streams) = h2_connect(addr).await;
    assert_eq!(streams, 2);
    let _ws = open(&mut h2, addr).await;

    // A header list over `max_header_size` (16 KiB by default) gets 431 on its stream.
    let big = connect_request(addr, "/ws").header("x-big", "a".repeat(20 * 1024));
    assert_eq!(
        send(&mut h2, big).await.status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );

    // A connection whose first request never comes is closed at the header read timeout,
    // whether it stops inside the preface or after it (with its empty SETTINGS frame).
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let settings = b"\0\0\0\x04\0\0\0\0\0";
    for sent in [&preface[..16], &[&preface[..], &settings[..]].concat()] {
        let started = tokio::time::Instant::now();
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(sent).await.unwrap();
        let mut sink = Vec::new();
        let read = timeout(WAIT, tcp.read_to_end(&mut sink)).await;
        assert!(read.is_ok(), "the silent connection was not closed");
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    // Off, HTTP/2 is HTTP/1.1's parse error.
    let addr = spawn_served(app, |serve| serve.http2(false)).await;
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = http2::Builder::new(TokioExecutor::new())
        .handshake::<_, Empty<Bytes>>(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = Request::get(format!("http://{addr}/ws"))
        .body(Empty::new())
        .unwrap();
    let answer = timeout(WAIT, send.send_request(request)).await;
    assert!(
        answer.expect("the connection was not ended").is_err(),
        "HTTP/2 served with http2(false)"
    );
}

#[tokio::test]
async fn axum_serve_accepts_http2_websockets_with_its_http2_feature() {
    let melody = Melody::new();
    melody.on_text(|s, text| {
        let _ = s.send(text);
    });
    let app = Router::new().route("/ws", any(melody.handler()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let (mut h2, _) = h2_connect(addr).await;
    let mut ws = open(&mut h2, addr).await;
    ws.send(Message::text("through axum::serve")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "through axum::serve");
}

#[tokio::test]
async fn plain_hyper_serves_http2_websockets_with_extended_connect_enabled() {
    // As the crate guide shows it: hyper's HTTP/2 builder, `enable_connect_protocol()`.
    let melody = Melody::new();
    melody.on_text(|s, text| {
        let _ = s.send(text);
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hub = melody.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let melody = hub.clone();
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let upgrade = melody.upgrade(req);
                async move { Ok::<_, std::convert::Infallible>(upgrade.await) }
            });
            let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            http2.enable_connect_protocol();
            tokio::spawn(http2.serve_connection(TokioIo::new(tcp), service));
        }
    });
    let (mut h2, _) = h2_connect(addr).await;
    let mut ws = open(&mut h2, addr).await;
    ws.send(Message::text("through hyper")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "through hyper");
}

#[tokio::test]
async fn a_get_only_route_refuses_http2_handshakes() {
    // axum answers a CONNECT to a `get` route itself, with 405: mount the hub with `any` (or
    // `get(..).connect(..)`) for HTTP/2.
    let melody = Melody::new();
    let app = Router::new().route("/ws", axum::routing::get(melody.handler()));
    let addr = spawn_served(app, |serve| serve).await;
    let (mut h2, _) = h2_connect(addr).await;
    let response = send(&mut h2, connect_request(addr, "/ws")).await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn an_http2_connection_is_pending_until_its_first_request() {
    let melody = Melody::new();
    let app = Router::new().route("/ws", any(melody.handler()));
    let addr = spawn_served(app, |serve| serve.max_pending(1)).await;
    // The preface and the settings are not a request: the only pending slot stays taken.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut quiet, conn) = http2::Builder::new(TokioExecutor::new())
        .handshake::<_, Empty<Bytes>>(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut waiting = TcpStream::connect(addr).await.unwrap();
    waiting
        .write_all(upgrade_request("").as_bytes())
        .await
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(
        timeout(Duration::from_millis(300), waiting.read(&mut byte))
            .await
            .is_err(),
        "served beyond the cap of connections without a request"
    );
    // Its first request frees it.
    let first = Request::get(format!("http://{addr}/"))
        .body(Empty::new())
        .unwrap();
    timeout(WAIT, quiet.send_request(first))
        .await
        .expect("no answer in time")
        .unwrap();
    let n = timeout(WAIT, waiting.read(&mut byte))
        .await
        .expect("the waiting client was never served")
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn graceful_shutdown_ends_http2_sessions_then_their_connections() {
    let melody = Melody::new();
    let app = Router::new().route("/ws", any(melody.handler()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let hub = melody.clone();
    let server = tokio::spawn(
        melody::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
                hub.shutdown(Duration::from_secs(5)).await;
            })
            .into_future(),
    );
    let (mut h2, _) = h2_connect(addr).await;
    let mut a = open(&mut h2, addr).await;
    let mut b = open(&mut h2, addr).await;

    stop.send(()).unwrap();
    for ws in [&mut a, &mut b] {
        let close = next(ws).await;
        assert_eq!(
            close.as_close().map(|(code, _)| u16::from(code)),
            Some(1001)
        );
        until_end(ws).await;
    }
    // A WebSocket over HTTP/2 is a stream of an HTTP connection: the server returns once the
    // sessions have ended and, with them, the connection.
    timeout(WAIT, server)
        .await
        .expect("the server did not stop")
        .unwrap()
        .unwrap();
}

/// The examples serve with `melody::serve`, so HTTP/2 clients reach their hubs as HTTP/1.1
/// clients do: each is run as its own process and spoken to over h2c.
#[test]
fn the_examples_accept_http2_websockets() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (name, path) in [("chat", "/ws"), ("echo", "/"), ("hyper", "/ws")] {
        let binary = process::example_binary(name);
        let mut server = process::ExampleServer::start(&format!("example {name}"), &binary, |_| {});
        let url = server.wait_for_url();
        let rest = url.trim_start_matches("http://");
        let addr: SocketAddr = rest[..rest.find('/').unwrap_or(rest.len())]
            .parse()
            .unwrap();
        runtime.block_on(async {
            let (mut h2, _) = h2_connect(addr).await;
            let offer = connect_request(addr, path).header("sec-websocket-protocol", "chat");
            let response = send(&mut h2, offer).await;
            if name == "chat" {
                assert_eq!(response.headers()["sec-websocket-protocol"], "chat");
            }
            let mut a = websocket(response).await;
            let mut b = open_at(&mut h2, addr, path).await;
            let hello = format!("hello {name}");
            if name == "echo" {
                a.send(Message::text(hello.clone())).await.unwrap();
                assert_eq!(next_text(&mut a).await, hello);
                return;
            }
            // The chats send every message to every page. A session is registered just after
            // its handshake is answered, so `a` says hello until `b` hears one.
            let heard = timeout(WAIT, async {
                loop {
                    a.send(Message::text(hello.clone())).await.unwrap();
                    if let Ok(text) = timeout(Duration::from_millis(100), next_text(&mut b)).await {
                        break text;
                    }
                }
            })
            .await
            .expect("b never heard a");
            assert_eq!(heard, hello, "{name}");
            assert_eq!(next_text(&mut a).await, hello, "{name}");
        });
        drop(server);
    }
}
