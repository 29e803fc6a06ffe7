//! Headless-Chromium test of the `cluster` example: two nodes (two processes, two ports) share
//! one real broker, a page is opened on each, and
//!
//! - each node's `/presence` comes to count both nodes and both pages (polled, bounded);
//! - what is typed in either page shows in both — so every message of page B's reaching page A
//!   (and back) crossed the broker;
//! - a burst typed in one page shows in the other in the order it was typed;
//! - neither node reports a cluster failure.
//!
//! Each test starts its own `redis-server` or `nats-server` on a free loopback port, then two
//! `cluster` example processes (built by `cargo test` before the tests run; a missing binary is
//! a failure) with `ADDR=127.0.0.1:0`, reads the URL each prints, and runs
//! `tests/cluster.mjs <url A> <url B>` with Node.js (playwright-core from the melody crate's
//! `tests/browser/node_modules`). A missing broker binary or missing browser tooling skips the
//! test with a printed reason, unless `MELODY_TEST_REQUIRE_ALL=1`, which makes it a failure.

mod support;

use std::{path::Path, process::Command, time::Duration};

use support::{Broker, Kind, start_node};

/// How long the browser script may run before it is killed (its own limit is 60 s).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(90);

#[test]
fn cluster_pages_on_two_nodes_chat_over_redis() {
    run_cluster_test("cluster_pages_on_two_nodes_chat_over_redis", Kind::Redis);
}

#[test]
fn cluster_pages_on_two_nodes_chat_over_nats() {
    run_cluster_test("cluster_pages_on_two_nodes_chat_over_nats", Kind::Nats);
}

fn run_cluster_test(test: &str, kind: Kind) {
    let binary = support::example_binary("cluster");
    if let Some(reason) = support::missing_browser_tooling() {
        support::skip(test, &reason);
        return;
    }
    let broker = match Broker::start(kind) {
        Ok(broker) => broker,
        Err(reason) => {
            support::skip(test, &reason);
            return;
        }
    };

    let mut a = start_node("A", &binary, kind.env_var(), &broker.url);
    let mut b = start_node("B", &binary, kind.env_var(), &broker.url);
    let url_a = a.wait_for_url();
    let url_b = b.wait_for_url();
    assert_ne!(url_a, url_b, "the two nodes must listen on different ports");

    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("cluster.mjs");
    let run = support::run_with_timeout(
        Command::new("node")
            .arg(&script)
            .arg(&url_a)
            .arg(&url_b)
            .current_dir(env!("CARGO_MANIFEST_DIR")),
        SCRIPT_TIMEOUT,
    );
    assert!(
        run.success,
        "browser script {} failed against {url_a} and {url_b} ({kind:?} at {}): {}\n\
         --- script stdout ---\n{}\n\
         --- script stderr ---\n{}\n\
         --- node A output ---\n{}\n\
         --- node B output ---\n{}",
        script.display(),
        broker.url,
        run.outcome,
        run.stdout.trim_end(),
        run.stderr.trim_end(),
        a.output_so_far(),
        b.output_so_far(),
    );

    // The broker stayed up throughout: neither node may have reported a cluster failure (a
    // frame dropped or lost, a lost connection). The example prints each as `cluster: …` on
    // stderr.
    for (label, node) in [("A", &mut a), ("B", &mut b)] {
        let output = node.output_so_far();
        assert!(
            !output
                .lines()
                .any(|line| line.starts_with("[stderr] cluster:")),
            "node {label} reported a cluster failure ({kind:?} at {}):\n{output}",
            broker.url,
        );
    }
}
