//! Hostile clients against the example servers themselves, each run as its own process: what a
//! public deployment of an example meets (hardening review, findings 2, 4, 7 and 10).

mod common;
mod process;

use std::{net::SocketAddr, path::Path, time::Duration};

use common::{WAIT, recv_text, send_text};
use futures_util::StreamExt;
use process::{ExampleServer, example_binary};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::timeout,
};

/// Starts an example and returns it with the address it listens on.
fn start(
    name: &str,
    configure: impl FnOnce(&mut std::process::Command),
) -> (ExampleServer, SocketAddr) {
    let mut server =
        ExampleServer::start(&format!("example {name}"), &example_binary(name), configure);
    let url = server.wait_for_url();
    (server, address_of(&url))
}

/// `127.0.0.1:PORT` out of `http://127.0.0.1:PORT/...`.
fn address_of(url: &str) -> SocketAddr {
    let rest = url.trim_start_matches("http://");
    rest[..rest.find('/').unwrap_or(rest.len())]
        .parse()
        .unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn ws(addr: SocketAddr, path: &str) -> common::Client {
    common::connect_with(addr, path, &[]).await
}

// Finding 2: at the descriptor limit, accept fails; the server must wait and go on, and the
// sessions already open must stay up.
#[test]
fn the_hyper_example_survives_running_out_of_descriptors() {
    let binary = example_binary("hyper");
    let mut server = ExampleServer::start(
        "example hyper (64 descriptors)",
        Path::new("/bin/sh"),
        |command| {
            command
                .arg("-c")
                .arg("ulimit -n 64 && exec \"$0\"")
                .arg(&binary);
        },
    );
    let addr = address_of(&server.wait_for_url());
    runtime().block_on(async {
        let mut before = ws(addr, "/ws").await;
        // More connections than the server has descriptors: the kernel completes them all,
        // the server's accepts fail with EMFILE.
        let mut idle = Vec::new();
        for _ in 0..100 {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        let mut starved = TcpStream::connect(addr).await.unwrap();
        starved
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut byte = [0u8; 1];
        assert!(
            timeout(Duration::from_millis(500), starved.read(&mut byte))
                .await
                .is_err(),
            "the server was not out of descriptors: the test proves nothing"
        );
        drop(idle);
        drop(starved);
        // Descriptors are free again: new clients are served, and the old session lived on.
        let mut after = timeout(WAIT, ws(addr, "/ws"))
            .await
            .expect("no longer accepting");
        send_text(&mut after, "still here").await;
        assert_eq!(recv_text(&mut before).await, "still here");
        assert_eq!(recv_text(&mut after).await, "still here");
    });
    assert!(server.is_running(), "{}", server.output_so_far());
}

// Finding 7: the typed example takes its token as the user name, sent with every message.
#[cfg(feature = "metrics")]
#[test]
fn the_typed_example_refuses_a_token_that_is_not_a_short_name() {
    let (_server, addr) = start("typed", |_| {});
    runtime().block_on(async {
        let long = "a".repeat(60_000);
        for token in [long.as_str(), "", "%3Cscript%3E", "a%20b"] {
            let request = common::upgrade_request("").replacen(
                "GET /ws HTTP/1.1",
                &format!("GET /ws?token={token} HTTP/1.1"),
                1,
            );
            let (status, _) = common::http_request(addr, &request).await;
            assert!(
                status == 401 || status == 431,
                "token {:.20}: {status}",
                token
            );
        }
        let mut client = ws(addr, "/ws?token=ada").await;
        let welcome = recv_text(&mut client).await;
        assert!(welcome.contains("\"welcome\""), "{welcome}");
    });
}

// Finding 4: no client can make a server message appear in another client's stream.
#[cfg(feature = "metrics")]
#[test]
fn the_typed_example_forwards_only_direct_messages() {
    let (_server, addr) = start("typed", |_| {});
    runtime().block_on(async {
        let mut attacker = ws(addr, "/ws?token=mallory").await;
        let mut victim = ws(addr, "/ws?token=alice").await;
        let _ = recv_text(&mut attacker).await;
        let welcome: serde_json::Value =
            serde_json::from_str(&recv_text(&mut victim).await).unwrap();
        let victim_id = welcome["data"]["client_id"].as_str().unwrap().to_owned();
        let forged = serde_json::json!({
            "type": "welcome", "target": victim_id, "data": { "client_id": "0", "user": "admin" }
        });
        send_text(&mut attacker, &forged.to_string()).await;
        let reply: serde_json::Value =
            serde_json::from_str(&recv_text(&mut attacker).await).unwrap();
        assert_eq!(reply["data"]["reason"], "direct send not allowed");
        let dm = serde_json::json!({ "type": "dm", "target": victim_id, "data": { "text": "hi" } });
        send_text(&mut attacker, &dm.to_string()).await;
        let got: serde_json::Value = serde_json::from_str(&recv_text(&mut victim).await).unwrap();
        assert_eq!(got["type"], "dm", "the victim saw {got}");
    });
}

// Finding 10: a newcomer to gophers costs one message, however many visitors there are.
#[test]
fn a_gophers_newcomer_gets_everyone_in_one_message() {
    let (_server, addr) = start("gophers", |_| {});
    runtime().block_on(async {
        let mut visitors = Vec::new();
        for i in 0..30 {
            let mut visitor = ws(addr, "/ws").await;
            let _iam = recv_text(&mut visitor).await;
            send_text(&mut visitor, &format!("{i} {i}")).await;
            visitors.push(visitor);
        }
        // Wait until the last move has been seen by the first visitor: all positions are in.
        let first = &mut visitors[0];
        timeout(WAIT, async {
            loop {
                if recv_text(first).await.ends_with(" 29 29") {
                    break;
                }
            }
        })
        .await
        .unwrap();
        let mut newcomer = ws(addr, "/ws").await;
        let snapshot = recv_text(&mut newcomer).await;
        assert_eq!(snapshot.lines().count(), 30, "{snapshot}");
        assert!(snapshot.lines().all(|line| line.starts_with("set ")));
        let iam = recv_text(&mut newcomer).await;
        let id = iam.strip_prefix("iam ").expect("iam ID").to_owned();
        // Only numbers are passed on: the first move of the newcomer anyone sees is "7 8".
        send_text(&mut newcomer, "<img src=x onerror=alert(1)> 5").await;
        send_text(&mut newcomer, "7 8").await;
        let moved = timeout(WAIT, async {
            loop {
                let text = recv_text(&mut visitors[1]).await;
                if text.starts_with(&format!("set {id} ")) {
                    return text;
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(moved, format!("set {id} 7 8"));
        drop(newcomer.next());
    });
}
