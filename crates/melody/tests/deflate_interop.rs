//! permessage-deflate (RFC 7692) against a second, independent implementation: Node's `ws`
//! client, driven by `tests/browser/deflate_client.mjs`, exchanges text and binary messages
//! from 10 bytes to 1 MiB, compressible and not, with
//! - the `echo` example, whose hub compresses in shared mode (every message on its own), and
//! - a hub in dedicated mode served by the test itself, where both sides keep their
//!   compression context between messages: this is what proves context takeover interoperates
//!   both ways, each side inflating what the other compressed against earlier messages.
//!
//! Every echo must come back byte for byte; the tests then check what the handshake agreed to
//! (the server's exact answer for each offer) and which messages crossed the wire compressed.
//! `deflate.rs` covers the same ground with a hand-built client, frame by frame.
//!
//! The example binary is built by `cargo test` before the tests run. A missing Node.js or
//! `ws` package (`npm ci` not run in `tests/browser/`) skips the tests with the reason printed,
//! unless `MELODY_TEST_REQUIRE_ALL` is `1`, which turns the skip into a failure.

mod process;

use std::process::Command;
use std::time::Duration;

use axum::Router;
use melody::{Compression, Config, Melody};
use serde_json::Value;

use process::{
    ExampleServer, RunOutcome, example_binary, missing_node_packages, node_scripts_dir,
    prerequisites_met, run_with_timeout,
};

/// How long one run of the script may take: it bounds itself at 60 s (a run takes a few
/// seconds with unoptimised test builds); this is the backstop.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(90);

/// The server's compression threshold (`Compression::min_size`'s default): smaller messages
/// go out uncompressed.
const MIN_SIZE: u64 = 256;

/// How many messages a run sends: 5 sizes, text and binary, compressible and random, first one
/// at a time and then all at once.
const MESSAGES_PER_RUN: usize = 5 * 2 * 2 * 2;

/// A shared-mode hub's answer to every permessage-deflate offer it can serve.
const SHARED_ANSWER: &str =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

// Shared mode: the `echo` example.

#[test]
fn shared_mode_with_the_default_ws_client() {
    let Some(report) = run_against_echo_example("default") else {
        return;
    };
    report.assert_echoed(Some(SHARED_ANSWER));
}

#[test]
fn shared_mode_with_a_ws_client_offering_no_context_takeover() {
    let Some(report) = run_against_echo_example("no-context") else {
        return;
    };
    report.assert_echoed(Some(SHARED_ANSWER));
}

#[test]
fn shared_mode_honours_a_10_bit_server_window() {
    let Some(report) = run_against_echo_example("window10") else {
        return;
    };
    report.assert_echoed(Some(&format!("{SHARED_ANSWER}; server_max_window_bits=10")));
    assert_eq!(report.summary["params"]["server_max_window_bits"], 10);
}

#[test]
fn shared_mode_declines_an_8_bit_server_window_and_runs_uncompressed() {
    let Some(report) = run_against_echo_example("window8") else {
        return;
    };
    report.assert_echoed(None);
}

/// Shared mode answers `client_no_context_takeover` to every offer (RFC 7692 section 7.1.1.2
/// lets a server do so), so that it never keeps a decompression context per session. A `ws`
/// client set to `clientNoContextTakeover: false` treats that answer as unacceptable and
/// fails the handshake: such a client needs a hub in dedicated mode.
#[test]
fn shared_mode_is_refused_by_a_ws_client_that_insists_on_its_context() {
    let Some(report) = run_against_echo_example("context") else {
        return;
    };
    assert!(!report.run.success, "{}", report.describe());
    assert_eq!(
        report.summary["answer"],
        SHARED_ANSWER,
        "{}",
        report.describe()
    );
    assert_eq!(
        report.failures(),
        ["handshake refused: Invalid Sec-WebSocket-Extensions header"],
        "{}",
        report.describe()
    );
}

// Dedicated mode: a hub served here, so that its counters can be read too.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedicated_mode_with_the_default_ws_client_keeps_context_both_ways() {
    run_against_dedicated_hub("default", Some("permessage-deflate")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedicated_mode_with_a_ws_client_that_insists_on_its_context() {
    run_against_dedicated_hub("context", Some("permessage-deflate")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedicated_mode_agrees_to_no_context_takeover_when_offered() {
    run_against_dedicated_hub("no-context", Some(SHARED_ANSWER)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedicated_mode_honours_a_10_bit_server_window() {
    run_against_dedicated_hub(
        "window10",
        Some("permessage-deflate; server_max_window_bits=10"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedicated_mode_declines_an_8_bit_server_window_and_runs_uncompressed() {
    run_against_dedicated_hub("window8", None).await;
}

/// Runs the script in `mode` against a freshly started `echo` example (shared mode); `None`
/// when the tooling is missing and the test is skipped.
fn run_against_echo_example(mode: &str) -> Option<Report> {
    let binary = example_binary("echo");
    if !client_ready(&format!("deflate interop {mode} (echo example)")) {
        return None;
    }
    let mut server = ExampleServer::start("example echo", &binary, |_| {});
    let url = server.wait_for_url_with_scheme("ws");
    let mut report = run_client(&url, mode);
    report.server_output = server.output_so_far();
    Some(report)
}

/// Runs the script in `mode` against a dedicated-mode echo hub served in this test's runtime,
/// expecting `answer`, and checks the hub's compression count against what the client saw.
async fn run_against_dedicated_hub(mode: &str, answer: Option<&str>) {
    if !client_ready(&format!("deflate interop {mode} (dedicated hub)")) {
        return;
    }
    let melody = Melody::with_config(
        Config::default()
            .compression(Compression::dedicated())
            .max_message_size(2 << 20),
    );
    melody.on_text(|session, text| {
        let _ = session.send(text);
    });
    melody.on_binary(|session, bytes| {
        let _ = session.send(melody::Message::binary(bytes));
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("cannot bind a loopback port");
    let url = format!("ws://{}/", listener.local_addr().expect("bound address"));
    let app = Router::new().fallback(melody.handler());
    tokio::spawn(async move { melody::serve(listener, app).await });

    let mode_owned = mode.to_owned();
    let report = tokio::task::spawn_blocking(move || run_client(&url, &mode_owned))
        .await
        .expect("the script runner panicked");
    report.assert_echoed(answer);

    // Every compressed echo the client inflated was compressed by the hub, once. The hub's
    // count also takes in the messages it tried to compress alone and then sent as they were
    // (not smaller), so it is exact only when the hub keeps its context and keeps every
    // compression.
    let compressions = melody.stats().compressions;
    let compressed_echoes = report.summary["compressedEchoes"]
        .as_u64()
        .expect("the summary counts compressed echoes");
    if server_keeps_context(answer) {
        assert_eq!(
            compressed_echoes,
            compressions,
            "the hub counted {compressions} compressions\n{}",
            report.describe()
        );
    } else {
        assert!(
            compressed_echoes <= compressions,
            "{compressed_echoes} compressed echoes, the hub counted {compressions} compressions\n{}",
            report.describe()
        );
    }
}

/// Whether the server keeps its compression context under the agreement `answer` (dedicated
/// mode, unless the client asked otherwise).
fn server_keeps_context(answer: Option<&str>) -> bool {
    answer.is_some_and(|answer| !answer.contains("server_no_context_takeover"))
}

/// Whether Node.js and `ws` are installed; otherwise the test skips (or fails, when
/// everything is required).
fn client_ready(test: &str) -> bool {
    prerequisites_met(test, missing_node_packages(&node_scripts_dir(), &["ws"]))
}

/// What one run of `deflate_client.mjs` did.
struct Report {
    /// The script process: exit status and output.
    run: RunOutcome,
    /// The JSON summary it printed last on stdout (`Value::Null` if it printed none).
    summary: Value,
    /// What the server printed, for failure messages (empty for a hub in the test).
    server_output: String,
}

/// Runs the script against `url` in `mode` and parses its summary.
fn run_client(url: &str, mode: &str) -> Report {
    let dir = node_scripts_dir();
    let run = run_with_timeout(
        Command::new("node")
            .arg(dir.join("deflate_client.mjs"))
            .arg(url)
            .arg(mode)
            .current_dir(&dir),
        SCRIPT_TIMEOUT,
    );
    let summary = run
        .stdout
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or(Value::Null);
    Report {
        run,
        summary,
        server_output: String::new(),
    }
}

impl Report {
    /// The failures the script listed.
    fn failures(&self) -> Vec<&str> {
        self.summary["failures"]
            .as_array()
            .map(|failures| failures.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }

    /// Everything about the run, for a failure message.
    fn describe(&self) -> String {
        format!(
            "script: {}\n--- script stderr ---\n{}\n--- script stdout ---\n{}\n--- server output ---\n{}",
            self.run.outcome,
            self.run.stderr.trim_end(),
            self.run.stdout.trim_end(),
            self.server_output,
        )
    }

    /// Checks that every message came back intact, that the server answered `answer`, and
    /// that each echo crossed the wire compressed exactly when the server should have
    /// compressed it under that agreement.
    fn assert_echoed(&self, answer: Option<&str>) {
        let describe = self.describe();
        assert!(self.run.success, "the ws client failed\n{describe}");
        assert_eq!(self.summary["answer"].as_str(), answer, "{describe}");
        let results = self.summary["results"]
            .as_array()
            .unwrap_or_else(|| panic!("no results in the summary\n{describe}"));
        assert_eq!(results.len(), MESSAGES_PER_RUN, "{describe}");
        // A server keeping its context compresses everything from the threshold up: the
        // client's window must see every message its compressor saw. A server compressing each
        // message alone sends as it is what compression would not make smaller.
        let server_context = server_keeps_context(answer);

        for result in results {
            let what = format!(
                "{} {} {} of {} bytes",
                result["phase"], result["type"], result["content"], result["size"]
            );
            assert_eq!(
                result["intact"], true,
                "{what} did not come back intact\n{describe}"
            );
            let size = result["size"].as_u64().expect("sizes are numbers");
            let echo_compressed = result["echoCompressed"] == true;
            let expected = if answer.is_none() || size < MIN_SIZE {
                Some(false)
            } else if result["content"] == "json" || server_context {
                Some(true)
            } else if result["type"] == "binary" {
                // Random bytes never get smaller.
                Some(false)
            } else {
                // Random text may or may not shrink a little (UTF-8's lead bytes are guessable).
                None
            };
            if let Some(expected) = expected {
                assert_eq!(
                    echo_compressed, expected,
                    "{what}: echo compressed is {echo_compressed}, expected {expected}\n{describe}"
                );
            }
            if answer.is_none() {
                assert_eq!(result["sentCompressed"], false, "{what}\n{describe}");
            }
        }
        // With its context kept and a full window, the server compresses the binary copy of
        // the 4 KiB text message sent just before it mostly as references back to that message
        // (at level 1 about a quarter of the first one's size): the client could only inflate
        // it with its own context kept too.
        if server_context && !answer.is_some_and(|answer| answer.contains("window_bits")) {
            for phase in ["one by one", "all at once"] {
                let wire = |kind: &str| {
                    results
                        .iter()
                        .find(|result| {
                            result["phase"] == phase
                                && result["type"] == kind
                                && result["content"] == "json"
                                && result["size"] == 4096
                        })
                        .and_then(|result| result["echoCompressedBytes"].as_u64())
                        .unwrap_or_else(|| panic!("no 4 KiB {kind} result in {phase}\n{describe}"))
                };
                let (text, binary) = (wire("text"), wire("binary"));
                assert!(
                    binary * 2 < text,
                    "{phase}: the repeated 4 KiB message took {binary} compressed bytes, the \
                     first {text}: no context kept\n{describe}"
                );
            }
        }
        // The client's compressed messages reached the server in every run that agreed to
        // compression (ws compresses from 1 KiB at the least).
        if answer.is_some() {
            assert!(
                results
                    .iter()
                    .any(|result| result["sentCompressed"] == true),
                "the client compressed nothing\n{describe}"
            );
        }
    }
}
