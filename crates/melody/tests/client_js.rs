//! The TypeScript client (`clients/js`, npm package `melody-client`) against the real `live`
//! example: its end-to-end suite (`clients/js/test/e2e/*.test.mjs`, Node's test runner on
//! `ws`) connects, subscribes, asks for presence and sends `say` requests; loses a connection
//! at a TCP proxy and recovers every missed message once, in order; stops on a refused name
//! (4401) and refreshes an expired token; and notices a half-open connection by its heartbeat.
//!
//! The suite imports the committed bundle `clients/js/dist/melody-client.js` (the one the
//! examples serve), so it needs no build step, only `ws` from `npm ci` in `clients/js`. The
//! example binary is built by `cargo test` before the tests run; a missing Node.js or `ws`
//! skips the test with the reason printed, unless `MELODY_TEST_REQUIRE_ALL` is `1`, which
//! turns the skip into a failure.
#![cfg(feature = "live")]

mod process;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use process::{
    ExampleServer, example_binary, missing_node_packages, prerequisites_met, run_with_timeout,
};

/// How long the whole suite may run (it takes a few seconds; every wait in it is bounded).
const SUITE_TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn js_client_end_to_end_against_the_live_example() {
    let package = client_package_dir();
    if !prerequisites_met(
        "js client end-to-end tests",
        missing_node_packages(&package, &["ws"]),
    ) {
        return;
    }

    let mut server = ExampleServer::start("example live", &example_binary("live"), |_| {});
    let url = server.wait_for_url();

    // One file at a time: two of them time a connection's loss, which a busy CPU would skew.
    let run = run_with_timeout(
        Command::new("node")
            .args([
                "--test",
                "--test-reporter=spec",
                "--test-concurrency=1",
                "test/e2e/",
            ])
            .env("MELODY_LIVE_URL", &url)
            .current_dir(&package),
        SUITE_TIMEOUT,
    );
    assert!(
        run.success,
        "the js client's end-to-end suite failed against {url}: {}\n\
         --- node --test stdout ---\n{}\n\
         --- node --test stderr ---\n{}\n\
         --- example output ---\n{}",
        run.outcome,
        run.stdout.trim_end(),
        run.stderr.trim_end(),
        server.output_so_far(),
    );
}

/// `clients/js` at the workspace root (as the messages show it: without `..`).
fn client_package_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clients/js");
    dir.canonicalize().unwrap_or(dir)
}
