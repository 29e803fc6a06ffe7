//! Headless-Chromium tests of the example pages (chat, gophers, multichat, typed, sse, filewatch, live).
//!
//! Each test starts an already-built example binary on a free loopback port,
//! reads the URL it prints on stdout, and runs the matching playwright-core
//! script from `tests/browser/` against it with Node.js.
//!
//! The example binaries are built by `cargo test` before the tests run; a
//! missing binary is a failure. Missing browser tooling (Node.js, Chromium,
//! or `npm ci` not run in `tests/browser/`) skips the test, unless the
//! environment variable `MELODY_TEST_REQUIRE_ALL` is `1`, which turns the
//! skip into a failure.

mod process;

use std::env;
use std::process::Command;
use std::time::Duration;

use process::{
    ExampleServer, example_binary, missing_browser_tooling, node_scripts_dir, prerequisites_met,
    run_with_timeout,
};

/// How long a browser script may run before it is killed.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(90);

#[test]
fn chat_two_pages_see_each_others_messages() {
    run_browser_test("chat");
}

#[test]
fn gophers_mouse_moves_gopher_on_other_page() {
    run_browser_test("gophers");
}

#[test]
fn multichat_messages_stay_in_their_room() {
    run_browser_test("multichat");
}

// `typed` serves /metrics, so it is built only with the `metrics` feature.
#[cfg(feature = "metrics")]
#[test]
fn typed_rooms_direct_messages_and_auth() {
    run_browser_test("typed");
}

// `sse` is built only with the `sse` feature.
#[cfg(feature = "sse")]
#[test]
fn sse_events_reach_the_page_from_websocket_and_http() {
    run_browser_test("sse");
}

// `live` is built only with the `live` feature. Its script cuts one page's connection at a
// TCP proxy of its own and checks that the page recovers every message it missed.
#[cfg(feature = "live")]
#[test]
fn live_presence_and_recovery_after_a_lost_connection() {
    run_browser_test("live");
}

#[test]
fn filewatch_pages_follow_file_edits() {
    // A folder of its own: the example watches the file's parent folder.
    let dir = env::temp_dir().join(format!("melody-filewatch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("cannot create a temporary folder");
    let file = dir.join("watched.txt");
    std::fs::write(&file, "initial content\n").expect("cannot write the watched file");
    let path = file.to_str().expect("temporary path is UTF-8");
    run_browser_test_with("filewatch", &[("FILE", path)], &[path]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `tests/browser/<example>.mjs` against the running `<example>` example.
fn run_browser_test(example: &str) {
    run_browser_test_with(example, &[], &[]);
}

/// As [`run_browser_test`], with extra environment for the example and extra script arguments.
fn run_browser_test_with(example: &str, envs: &[(&str, &str)], extra_args: &[&str]) {
    let binary = example_binary(example);
    let browser_dir = node_scripts_dir();
    if !prerequisites_met(
        &format!("browser test {example}"),
        missing_browser_tooling(&browser_dir),
    ) {
        return;
    }

    let mut server = ExampleServer::start(&format!("example {example}"), &binary, |command| {
        command
            .envs(envs.iter().copied())
            .current_dir(env!("CARGO_MANIFEST_DIR"));
    });
    let url = server.wait_for_url();

    let script = browser_dir.join(format!("{example}.mjs"));
    let run = run_with_timeout(
        Command::new("node")
            .arg(&script)
            .arg(&url)
            .args(extra_args)
            .current_dir(&browser_dir),
        SCRIPT_TIMEOUT,
    );
    assert!(
        run.success,
        "browser script {} failed against {url}: {}\n\
         --- script stdout ---\n{}\n\
         --- script stderr ---\n{}\n\
         --- example output ---\n{}",
        script.display(),
        run.outcome,
        run.stdout.trim_end(),
        run.stderr.trim_end(),
        server.output_so_far(),
    );
}
