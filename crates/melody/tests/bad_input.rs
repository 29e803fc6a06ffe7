//! Every refusal is explicit: HTTP statuses before the upgrade, close codes after it, and no
//! other session notices.

mod common;

use common::*;
use futures_util::SinkExt;
use melody::{CheckOrigin, Config, Melody};
use tokio_websockets::Message;

async fn status_of(melody: &Melody, request: &str) -> (u16, String) {
    let addr = spawn_app(melody).await;
    http_request(addr, request).await
}

#[tokio::test]
async fn a_non_get_upgrade_gets_405() {
    let request = upgrade_request("").replacen("GET", "POST", 1);
    let request = request.replacen("\r\n\r\n", "\r\nContent-Length: 0\r\n\r\n", 1);
    let (status, head) = status_of(&Melody::new(), &request).await;
    assert_eq!(status, 405, "{head}");
    assert!(head.to_ascii_lowercase().contains("allow: get"), "{head}");
}

#[tokio::test]
async fn a_plain_request_gets_400() {
    let (status, _) = status_of(&Melody::new(), "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_missing_or_bad_key_gets_400() {
    let no_key = upgrade_request("").replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "");
    assert_eq!(status_of(&Melody::new(), &no_key).await.0, 400);
    let bad_key = upgrade_request("").replace("dGhlIHNhbXBsZSBub25jZQ==", "not base64!");
    assert_eq!(status_of(&Melody::new(), &bad_key).await.0, 400);
}

#[tokio::test]
async fn a_wrong_version_gets_426_naming_the_supported_one() {
    let request =
        upgrade_request("").replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8");
    let (status, head) = status_of(&Melody::new(), &request).await;
    assert_eq!(status, 426, "{head}");
    let head = head.to_ascii_lowercase();
    assert!(head.contains("upgrade: websocket"), "{head}");
    assert!(head.contains("sec-websocket-version: 13"), "{head}");
}

#[tokio::test]
async fn same_origin_by_default_cross_origin_gets_403() {
    let melody = Melody::new();
    let addr = spawn_app(&melody).await;
    // Host is "localhost" in the raw request.
    let same = upgrade_request("Origin: http://localhost\r\n");
    assert_eq!(http_request(addr, &same).await.0, 101);
    let cross = upgrade_request("Origin: http://evil.example\r\n");
    assert_eq!(http_request(addr, &cross).await.0, 403);
    // No Origin: not a browser, accepted (as gorilla does).
    assert_eq!(http_request(addr, &upgrade_request("")).await.0, 101);
}

#[tokio::test]
async fn allow_list_any_and_custom_origin_checks() {
    let listed = Melody::with_config(
        Config::default().check_origin(CheckOrigin::allow_list(["https://*.example.com"])),
    );
    let addr = spawn_app(&listed).await;
    let ok = upgrade_request("Origin: https://app.example.com\r\n");
    assert_eq!(http_request(addr, &ok).await.0, 101);
    let bad = upgrade_request("Origin: https://example.org\r\n");
    assert_eq!(http_request(addr, &bad).await.0, 403);

    let any = Melody::with_config(Config::default().check_origin(CheckOrigin::Any));
    let addr = spawn_app(&any).await;
    let anywhere = upgrade_request("Origin: https://anywhere.example\r\n");
    assert_eq!(http_request(addr, &anywhere).await.0, 101);

    let custom = Melody::with_config(
        Config::default().check_origin(CheckOrigin::custom(|req| req.uri.query() == Some("ok"))),
    );
    let addr = spawn_app(&custom).await;
    assert_eq!(http_request(addr, &upgrade_request("")).await.0, 403);
    let with_query = upgrade_request("").replacen("/ws", "/ws?ok", 1);
    assert_eq!(http_request(addr, &with_query).await.0, 101);
}

/// A hub that echoes text to everyone, with a bystander client connected, for checking that a
/// bad peer affects nobody else.
async fn hub_with_bystander(config: Config) -> (std::net::SocketAddr, Client, Melody) {
    let melody = Melody::with_config(config);
    melody.on_text(|s, text| {
        let _ = s.melody().all().send(text);
    });
    let addr = spawn_app(&melody).await;
    let bystander = connect(addr).await;
    eventually(|| melody.all().len() == 1).await;
    (addr, bystander, melody)
}

async fn bystander_still_served(bystander: &mut Client) {
    send_text(bystander, "still fine").await;
    assert_eq!(recv_text(bystander).await, "still fine");
}

#[tokio::test]
async fn a_message_over_the_limit_closes_with_1009() {
    let (addr, mut bystander, _melody) = hub_with_bystander(Config::default()).await;
    let mut client = connect(addr).await;
    // The default limit is 512 bytes.
    client.send(Message::text("x".repeat(513))).await.unwrap();
    assert_eq!(recv_close(&mut client).await.0, 1009);
    bystander_still_served(&mut bystander).await;
}

#[tokio::test]
async fn a_fragmented_message_over_the_limit_closes_with_1009() {
    let (addr, mut bystander, _melody) = hub_with_bystander(Config::default()).await;
    let mut raw = Raw::connect(addr).await;
    raw.send_frame(0x01, &[b'a'; 300]).await; // text, not final
    raw.send_frame(0x80, &[b'a'; 300]).await; // continuation, final: 600 > 512
    assert_eq!(raw.read_close_code().await, 1009);
    bystander_still_served(&mut bystander).await;
}

#[tokio::test]
async fn invalid_utf8_closes_with_1007() {
    let (addr, mut bystander, _melody) = hub_with_bystander(Config::default()).await;
    let mut raw = Raw::connect(addr).await;
    raw.send_frame(0x81, &[0xce, 0xba, 0xff, 0xfe]).await;
    assert_eq!(raw.read_close_code().await, 1007);
    bystander_still_served(&mut bystander).await;
}

#[tokio::test]
async fn protocol_violations_close_with_1002() {
    let (addr, mut bystander, melody) = hub_with_bystander(Config::default()).await;
    let (events, mut log) = events();
    melody.on_error(move |_, error| events.push(error.to_string()));
    let cases: [(&str, u8, &[u8]); 4] = [
        ("reserved opcode", 0x83, b"x"),
        ("reserved bit", 0xC1, b"x"),
        ("continuation without start", 0x80, b"x"),
        ("fragmented ping", 0x09, b""),
    ];
    for (case, first_byte, payload) in cases {
        let mut raw = Raw::connect(addr).await;
        raw.send_frame(first_byte, payload).await;
        assert_eq!(raw.read_close_code().await, 1002, "{case}");
        let error = log.next().await;
        assert!(error.starts_with("protocol violation"), "{case}: {error}");
    }
    bystander_still_served(&mut bystander).await;
}

#[tokio::test]
async fn garbage_after_the_handshake_is_refused_without_a_panic() {
    let (addr, mut bystander, _melody) = hub_with_bystander(Config::default()).await;
    for garbage in [&b"\x00\x00\x00"[..], b"GET / HTTP/1.1\r\n\r\n", &[0xff; 64]] {
        let mut raw = Raw::connect(addr).await;
        tokio::io::AsyncWriteExt::write_all(&mut raw.stream, garbage)
            .await
            .unwrap();
        // Unmasked frames and nonsense end in a close (1002) or a dropped connection.
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(
            WAIT,
            tokio::io::AsyncReadExt::read_to_end(&mut raw.stream, &mut rest),
        )
        .await
        .expect("server must end the connection");
    }
    bystander_still_served(&mut bystander).await;
}
