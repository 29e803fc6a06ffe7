//! Subprotocols (`Sec-WebSocket-Protocol`): selection in the server's preference order, the
//! answer header, the session's view, and the two policies for a client that offers none the
//! server speaks.

mod common;

use common::*;
use melody::{Config, Melody};

/// A hub with `config` whose sessions report their subprotocol as their first message.
async fn hub(config: Config) -> std::net::SocketAddr {
    let melody = Melody::with_config(config);
    melody.on_connect(|session| {
        let _ = session.send(format!("{:?}", session.subprotocol()));
    });
    spawn_app(&melody).await
}

/// The `Sec-WebSocket-Protocol` line of a response head, if any.
fn answered(head: &str) -> Option<String> {
    head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("sec-websocket-protocol")
            .then(|| value.trim().to_owned())
    })
}

#[tokio::test]
async fn the_first_supported_offer_in_server_order_is_selected_and_answered() {
    let addr = hub(Config::default().subprotocols(["chat", "superchat"])).await;
    let (status, head) = http_request(
        addr,
        &upgrade_request("Sec-WebSocket-Protocol: x-unknown, chat\r\n"),
    )
    .await;
    assert_eq!(status, 101);
    assert_eq!(answered(&head).as_deref(), Some("chat"));

    // The server's preference wins over the client's order, across several header lines.
    let (_, head) = http_request(
        addr,
        &upgrade_request("Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: superchat\r\n"),
    )
    .await;
    assert_eq!(answered(&head).as_deref(), Some("chat"));
    let (_, head) = http_request(
        addr,
        &upgrade_request("Sec-WebSocket-Protocol: superchat,chat\r\n"),
    )
    .await;
    assert_eq!(answered(&head).as_deref(), Some("chat"));

    // Names are case-sensitive: `Chat` is not `chat`.
    let (status, head) =
        http_request(addr, &upgrade_request("Sec-WebSocket-Protocol: Chat\r\n")).await;
    assert_eq!(status, 101);
    assert_eq!(answered(&head), None);
}

#[tokio::test]
async fn a_session_knows_its_subprotocol() {
    let addr = hub(Config::default().subprotocols(["chat"])).await;
    let mut client = connect_with(
        addr,
        "/ws",
        &[("sec-websocket-protocol", "x-unknown, chat")],
    )
    .await;
    assert_eq!(recv_text(&mut client).await, r#"Some("chat")"#);

    // A client that offers nothing, or nothing the server speaks, still connects (the default
    // policy) and has no subprotocol.
    let mut plain = connect(addr).await;
    assert_eq!(recv_text(&mut plain).await, "None");
    let mut other = connect_with(addr, "/ws", &[("sec-websocket-protocol", "mqtt")]).await;
    assert_eq!(recv_text(&mut other).await, "None");
}

#[tokio::test]
async fn a_required_subprotocol_refuses_clients_without_one() {
    let melody = Melody::with_config(
        Config::default()
            .subprotocols(["graphql-transport-ws"])
            .require_subprotocol(true),
    );
    let addr = spawn_app(&melody).await;
    let (status, head) = http_request(
        addr,
        &upgrade_request("Sec-WebSocket-Protocol: graphql-ws\r\n"),
    )
    .await;
    assert_eq!(status, 400, "{head}");
    let (status, _) = http_request(addr, &upgrade_request("")).await;
    assert_eq!(status, 400);
    assert_eq!(melody.all().len(), 0);
    let (status, head) = http_request(
        addr,
        &upgrade_request("Sec-WebSocket-Protocol: graphql-ws, graphql-transport-ws\r\n"),
    )
    .await;
    assert_eq!(status, 101);
    assert_eq!(answered(&head).as_deref(), Some("graphql-transport-ws"));
}

#[tokio::test]
async fn without_a_list_the_header_is_not_answered() {
    let addr = hub(Config::default()).await;
    let (status, head) =
        http_request(addr, &upgrade_request("Sec-WebSocket-Protocol: chat\r\n")).await;
    assert_eq!(status, 101);
    assert_eq!(answered(&head), None);
}
