//! A real `redis-server` for the tests: started on a free loopback port, stopped and restarted
//! on the same port for outage tests, killed on drop. With `REDIS_URL` set, that server is used
//! instead (and the tests that restart the broker skip). With neither, tests skip with a printed
//! reason — unless `MELODY_TEST_REQUIRE_ALL=1`, under which a missing broker fails the test.
#![allow(dead_code, unreachable_pub)]

use std::{
    io::Write,
    net::TcpListener,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// The longest a server may take to accept connections.
const STARTUP: Duration = Duration::from_secs(10);

pub struct Redis {
    url: String,
    port: u16,
    child: Option<Child>,
}

fn require_all() -> bool {
    std::env::var("MELODY_TEST_REQUIRE_ALL").is_ok_and(|v| v == "1")
}

fn skip(reason: &str) -> Option<Redis> {
    assert!(
        !require_all(),
        "MELODY_TEST_REQUIRE_ALL=1 but no Redis: {reason}"
    );
    // Straight to stderr, past the test harness's capture, so a skip shows in every run's log.
    let _ = writeln!(
        std::io::stderr(),
        "skipping: {reason} (install redis-server or set REDIS_URL)"
    );
    None
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// A Redis for one test: a fresh `redis-server` of its own, or the one at `REDIS_URL`.
/// `None` (after printing why) when there is none.
pub async fn redis() -> Option<Redis> {
    if let Ok(url) = std::env::var("REDIS_URL") {
        return Some(Redis {
            url,
            port: 0,
            child: None,
        });
    }
    if !on_path("redis-server") {
        return skip("redis-server is not on PATH and REDIS_URL is not set");
    }
    restartable_redis().await
}

/// A Redis this test may stop and restart: always a `redis-server` of its own (a server at
/// `REDIS_URL` is not ours to restart).
pub async fn restartable_redis() -> Option<Redis> {
    if !on_path("redis-server") {
        return skip("the broker-restart test needs redis-server on PATH");
    }
    let port = free_port();
    let mut redis = Redis {
        url: format!("redis://127.0.0.1:{port}"),
        port,
        child: None,
    };
    redis.start().await;
    Some(redis)
}

/// A namespace of its own for each test, so tests sharing a `REDIS_URL` do not meet.
pub fn namespace() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Redis {
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Starts the server (again, on the same port) and waits until it answers PING.
    pub async fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        assert!(self.port != 0, "REDIS_URL servers are not ours to start");
        let deadline = Instant::now() + STARTUP;
        loop {
            let child = Command::new("redis-server")
                .args([
                    "--port",
                    &self.port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-server");
            self.child = Some(child);
            if self.wait_ready(deadline).await {
                return;
            }
            // The port may still be held by the server just killed: try again until the
            // deadline.
            self.kill();
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on port {}",
                self.port
            );
        }
    }

    /// Kills the server (SIGKILL, as a crash) and waits for the process to end.
    pub fn stop(&mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Polls until the server answers PING, the process exits, or the deadline passes.
    async fn wait_ready(&mut self, deadline: Instant) -> bool {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        while Instant::now() < deadline {
            tick.tick().await;
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                return false;
            }
            if ping(self.port).await {
                return true;
            }
        }
        false
    }
}

async fn ping(port: u16) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        stream.write_all(b"PING\r\n").await.ok()?;
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply).await.ok()?;
        (&reply == b"+PONG\r\n").then_some(())
    };
    tokio::time::timeout(Duration::from_secs(1), attempt)
        .await
        .ok()
        .flatten()
        .is_some()
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
