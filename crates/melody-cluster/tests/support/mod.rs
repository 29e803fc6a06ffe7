//! What the cluster's browser test needs around it: a real broker (`redis-server` or
//! `nats-server`) on a free loopback port, the `cluster` example processes, and a bounded run
//! of the node script. Every child process is killed on drop; every wait has a deadline.
//!
//! Missing tooling (a broker binary, Node.js, Chromium, playwright-core) skips the test with a
//! printed reason, unless `MELODY_TEST_REQUIRE_ALL=1`, which turns the skip into a failure.
#![allow(dead_code, unreachable_pub)]

#[path = "../../../melody/tests/process/mod.rs"]
mod process;

pub use process::{ExampleServer, example_binary, run_with_timeout};

use std::{
    env,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

/// How long a broker may take to accept connections.
const BROKER_STARTUP: Duration = Duration::from_secs(10);

/// Whether a missing prerequisite must fail the test instead of skipping it.
fn require_all() -> bool {
    env::var("MELODY_TEST_REQUIRE_ALL").as_deref() == Ok("1")
}

/// Prints why the test is skipped (or panics under `MELODY_TEST_REQUIRE_ALL=1`).
pub fn skip(test: &str, reason: &str) {
    assert!(
        !require_all(),
        "{test}: prerequisite missing (MELODY_TEST_REQUIRE_ALL=1): {reason}"
    );
    // Straight to stderr, past the test harness's capture, so a skip shows in every run's log.
    let _ = writeln!(std::io::stderr(), "skipping {test}: {reason}");
}

/// `program` on `PATH`, or in the sbin/bin folders that a non-login `PATH` may lack.
fn find_program(program: &str) -> Option<PathBuf> {
    let on_path = env::var_os("PATH").and_then(|paths| {
        env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    });
    on_path.or_else(|| {
        ["/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"]
            .iter()
            .map(|dir| Path::new(dir).join(program))
            .find(|path| path.is_file())
    })
}

/// The shared browser scripts (`harness.mjs`) and their `node_modules`, in the melody crate.
pub fn melody_browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../melody/tests/browser")
}

/// Why the browser tooling cannot run, or `None` when it is all there.
pub fn missing_browser_tooling() -> Option<String> {
    process::missing_browser_tooling(&melody_browser_dir())
}

/// Which broker a cluster shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Redis,
    Nats,
}

impl Kind {
    fn program(self) -> &'static str {
        match self {
            Self::Redis => "redis-server",
            Self::Nats => "nats-server",
        }
    }

    /// The environment variable the `cluster` example reads this broker's URL from.
    pub fn env_var(self) -> &'static str {
        match self {
            Self::Redis => "REDIS_URL",
            Self::Nats => "NATS_URL",
        }
    }
}

/// A broker process of this test's own on a free loopback port; killed on drop.
pub struct Broker {
    pub kind: Kind,
    pub url: String,
    child: Child,
}

impl Broker {
    /// Starts a broker, or returns why it cannot (its binary is missing).
    pub fn start(kind: Kind) -> Result<Self, String> {
        let program = find_program(kind.program()).ok_or_else(|| {
            format!(
                "{} is not installed (not on PATH nor in /usr/sbin, /usr/bin)",
                kind.program()
            )
        })?;
        let deadline = Instant::now() + BROKER_STARTUP;
        loop {
            // Another process may take the port between finding it and the broker binding it:
            // then the broker exits, and we try another port until the deadline.
            let port = free_port();
            let mut command = Command::new(&program);
            match kind {
                Kind::Redis => command.args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ]),
                Kind::Nats => command.args(["-a", "127.0.0.1", "-p", &port.to_string()]),
            };
            let child = command
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|err| panic!("cannot start {}: {err}", program.display()));
            let scheme = match kind {
                Kind::Redis => "redis",
                Kind::Nats => "nats",
            };
            let mut broker = Self {
                kind,
                url: format!("{scheme}://127.0.0.1:{port}"),
                child,
            };
            if broker.wait_ready(port, deadline) {
                return Ok(broker);
            }
            assert!(
                Instant::now() < deadline,
                "{} did not accept connections within {BROKER_STARTUP:?}",
                program.display()
            );
        }
    }

    /// Polls until the broker answers, its process exits, or the deadline passes.
    fn wait_ready(&mut self, port: u16, deadline: Instant) -> bool {
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if answers(self.kind, port) {
                return true;
            }
            thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a broker of `kind` answers on `port`: `+PONG` to a Redis `PING`, the `INFO` line a
/// NATS server greets every client with.
fn answers(kind: Kind, port: u16) -> bool {
    let attempt = || -> std::io::Result<bool> {
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(1)))?;
        stream.set_write_timeout(Some(Duration::from_secs(1)))?;
        let mut reply = [0u8; 5];
        match kind {
            Kind::Redis => {
                stream.write_all(b"PING\r\n")?;
                stream.read_exact(&mut reply)?;
                Ok(&reply == b"+PONG")
            }
            Kind::Nats => {
                stream.read_exact(&mut reply)?;
                Ok(&reply == b"INFO ")
            }
        }
    };
    attempt().unwrap_or(false)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("cannot find a free loopback port")
        .port()
}

/// Starts a `cluster` node on a free port with its broker in `broker_var` = `broker_url` (the
/// other broker variable removed, so the caller's environment cannot change the choice).
pub fn start_node(label: &str, binary: &Path, broker_var: &str, broker_url: &str) -> ExampleServer {
    ExampleServer::start(&format!("node {label}"), binary, |command| {
        command
            .env_remove("REDIS_URL")
            .env_remove("NATS_URL")
            .env(broker_var, broker_url);
    })
}
