//! A real `nats-server` for the tests: started on a free loopback port as a child process,
//! stopped and restarted on the same port for the outage test, killed on drop. Or an external
//! broker at `NATS_URL`. Without either, tests skip with a printed reason, unless
//! `MELODY_TEST_REQUIRE_ALL=1`, under which a missing broker is a failure.
#![allow(dead_code, unreachable_pub)]

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::Duration,
};

use tokio::{net::TcpStream, time::timeout};

/// How long a server may take to accept connections.
const STARTUP: Duration = Duration::from_secs(10);

pub struct Broker {
    pub url: String,
    /// The port and process of a server the harness started (None for `NATS_URL`).
    owned: Option<(u16, Option<Child>)>,
}

/// A broker for one test, or `None` (after printing why) when there is none to be had.
pub async fn broker(test: &str) -> Option<Broker> {
    if let Ok(url) = std::env::var("NATS_URL") {
        return Some(Broker { url, owned: None });
    }
    if which("nats-server").is_none() {
        let reason = "nats-server is not on PATH and NATS_URL is unset";
        assert!(
            std::env::var("MELODY_TEST_REQUIRE_ALL").as_deref() != Ok("1"),
            "{test}: {reason} (MELODY_TEST_REQUIRE_ALL=1)"
        );
        // Straight to stderr, past the test harness's capture, so a skip shows in every log.
        let _ = std::io::Write::write_fmt(
            &mut std::io::stderr(),
            format_args!("skipping {test}: {reason} (apt-get install nats-server)\n"),
        );
        return None;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut broker = Broker {
        url: format!("nats://127.0.0.1:{port}"),
        owned: Some((port, None)),
    };
    broker.start().await;
    Some(broker)
}

impl Broker {
    /// Whether the harness runs the server (and so can stop and restart it).
    pub fn is_owned(&self) -> bool {
        self.owned.is_some()
    }

    /// Starts the server on its port and waits until it accepts connections.
    pub async fn start(&mut self) {
        let (port, child) = self.owned.as_mut().expect("an external broker");
        assert!(child.is_none(), "already running");
        // JetStream on, for the history store, with its own directory (kept across a restart
        // on the same port, as a real server's disk would be).
        let store = store_dir(*port);
        let mut process = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&store)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        let port = *port;
        timeout(STARTUP, async {
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            loop {
                tick.tick().await;
                if let Some(status) = process.try_wait().unwrap() {
                    panic!("nats-server exited at start: {status}");
                }
                if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                    break;
                }
            }
        })
        .await
        .expect("nats-server did not accept connections in time");
        *child = Some(process);
    }

    /// Kills the server (as a crash would) and waits for it to exit.
    pub fn stop(&mut self) {
        let (_, child) = self.owned.as_mut().expect("an external broker");
        let mut process = child.take().expect("not running");
        let _ = process.kill();
        let _ = process.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some((port, child)) = self.owned.as_mut() {
            if let Some(process) = child.as_mut() {
                let _ = process.kill();
                let _ = process.wait();
            }
            let _ = std::fs::remove_dir_all(store_dir(*port));
        }
    }
}

/// Where the server on `port` keeps its JetStream data.
fn store_dir(port: u16) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("melody-nats-test-{port}"))
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    })
}
