//! Child processes for the end-to-end tests: example servers started on a free port (their
//! URL read from what they print), commands run with captured output and a time limit, and
//! the checks that the Node.js tooling they drive is installed.
//! Shared by `tests/browser.rs`, `tests/deflate_interop.rs` and the `melody-cluster` crate's
//! tests (through `#[path]`).
#![allow(dead_code, unreachable_pub)]

use std::env;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

/// Chromium executable used when the `CHROMIUM` environment variable is unset.
const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";

/// The folder of the Node.js test scripts (`tests/browser/` of the melody crate) and their
/// `node_modules`. Written from the manifest folder's parent so that it also holds in a sibling
/// crate that includes this module.
pub fn node_scripts_dir() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .unwrap_or(manifest_dir)
        .join("melody")
        .join("tests")
        .join("browser")
}

/// Why Node.js scripts using `packages` cannot run from `scripts_dir` (no `node` on `PATH`, or
/// a package not installed by `npm ci`), or `None` when they can.
pub fn missing_node_packages(scripts_dir: &Path, packages: &[&str]) -> Option<String> {
    let node_runs = Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !node_runs {
        return Some("`node` was not found on PATH".to_owned());
    }
    packages.iter().find_map(|package| {
        let installed = scripts_dir.join("node_modules").join(package);
        (!installed.is_dir()).then(|| {
            format!(
                "{} is missing (run `npm ci` in {})",
                installed.display(),
                scripts_dir.display()
            )
        })
    })
}

/// Why the browser tooling cannot run (Node.js, Chromium, playwright-core installed in
/// `browser_dir`), or `None` when it is all there.
pub fn missing_browser_tooling(browser_dir: &Path) -> Option<String> {
    let chromium =
        env::var_os("CHROMIUM").map_or_else(|| PathBuf::from(DEFAULT_CHROMIUM), PathBuf::from);
    if !chromium.is_file() {
        return Some(format!(
            "Chromium not found at {} (set CHROMIUM to its path)",
            chromium.display()
        ));
    }
    missing_node_packages(browser_dir, &["playwright-core"])
}

/// Whether a test whose prerequisites were checked (`missing`, from one of the `missing_*`
/// functions) may go on. When something is missing it may not: the test is skipped with the
/// reason printed, or fails if `MELODY_TEST_REQUIRE_ALL` is `1` (as in CI, where nothing may
/// be skipped unnoticed).
pub fn prerequisites_met(test: &str, missing: Option<String>) -> bool {
    let Some(reason) = missing else {
        return true;
    };
    assert!(
        env::var("MELODY_TEST_REQUIRE_ALL").as_deref() != Ok("1"),
        "{test}: prerequisite missing (MELODY_TEST_REQUIRE_ALL=1): {reason}"
    );
    // Straight to stderr, past the test harness's capture, so a skip shows in every log.
    let _ = std::io::Write::write_fmt(
        &mut std::io::stderr(),
        format_args!("skipping {test}: {reason}\n"),
    );
    false
}

/// How long an example may take to print its URL.
pub const URL_TIMEOUT: Duration = Duration::from_secs(30);

/// Path of the example binary `name` that `cargo test` built next to this test.
///
/// This test runs as `target/<profile>/deps/browser-<hash>`; examples live in
/// `target/<profile>/examples/`.
pub fn example_binary(name: &str) -> PathBuf {
    let exe = env::current_exe().expect("cannot locate the running test executable");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("unexpected test executable location {}", exe.display()));
    let binary = profile_dir
        .join("examples")
        .join(format!("{name}{}", env::consts::EXE_SUFFIX));
    assert!(
        binary.is_file(),
        "example binary {} not found; run `cargo test` so examples are built",
        binary.display()
    );
    binary
}

/// Returns the first `http://` URL in `line`, up to the next whitespace.
pub fn extract_url(line: &str) -> Option<&str> {
    extract_url_with_scheme(line, "http")
}

/// Returns the first `<scheme>://` URL in `line`, up to the next whitespace.
pub fn extract_url_with_scheme<'a>(line: &'a str, scheme: &str) -> Option<&'a str> {
    let start = line.find(&format!("{scheme}://"))?;
    let rest = &line[start..];
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    Some(&rest[..end])
}

/// One line of output from the example, tagged with its stream.
enum OutputLine {
    /// A line the example wrote to stdout.
    Stdout(String),
    /// A line the example wrote to stderr.
    Stderr(String),
}

/// A running example server; the process is killed when this is dropped.
pub struct ExampleServer {
    /// How the failure messages name it.
    label: String,
    /// The example process.
    child: Child,
    /// Lines of the example's stdout and stderr, as they are read.
    output: Receiver<OutputLine>,
    /// Every line received from `output` so far, for failure messages.
    seen: Vec<String>,
}

impl ExampleServer {
    /// Starts `binary` on a free loopback port (`ADDR=127.0.0.1:0`) with its output captured;
    /// `configure` adds what else the command needs (environment, working folder).
    pub fn start(label: &str, binary: &Path, configure: impl FnOnce(&mut Command)) -> Self {
        let mut command = Command::new(binary);
        command.env("ADDR", "127.0.0.1:0");
        configure(&mut command);
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", binary.display()));

        let (sender, output) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        forward_lines(stdout, sender.clone(), OutputLine::Stdout);
        forward_lines(stderr, sender, OutputLine::Stderr);

        Self {
            label: label.to_owned(),
            child,
            output,
            seen: Vec::new(),
        }
    }

    /// Waits for the first stdout line containing an `http://` URL and returns that URL.
    pub fn wait_for_url(&mut self) -> String {
        self.wait_for_url_with_scheme("http")
    }

    /// Waits for the first stdout line containing a `<scheme>://` URL and returns that URL
    /// (`ws` for a server that prints its WebSocket address).
    pub fn wait_for_url_with_scheme(&mut self, scheme: &str) -> String {
        let deadline = Instant::now() + URL_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(OutputLine::Stdout(line)) => {
                    let url = extract_url_with_scheme(&line, scheme).map(str::to_owned);
                    self.seen.push(line);
                    if let Some(url) = url {
                        return url;
                    }
                }
                Ok(OutputLine::Stderr(line)) => self.seen.push(format!("[stderr] {line}")),
                Err(RecvTimeoutError::Timeout) => {
                    let output = self.output_so_far();
                    panic!(
                        "{} printed no {scheme}:// URL on stdout within {URL_TIMEOUT:?}; output:\n{output}",
                        self.label
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let (status, output) = (self.exit_status(), self.output_so_far());
                    panic!(
                        "{} exited ({status}) before printing a {scheme}:// URL; output:\n{output}",
                        self.label
                    )
                }
            }
        }
    }

    /// Whether the example is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Everything the example has printed so far, one line each.
    pub fn output_so_far(&mut self) -> String {
        for line in self.output.try_iter() {
            self.seen.push(match line {
                OutputLine::Stdout(line) => line,
                OutputLine::Stderr(line) => format!("[stderr] {line}"),
            });
        }
        self.seen.join("\n")
    }

    /// Describes the example's exit status, if it has exited.
    fn exit_status(&mut self) -> String {
        match self.child.try_wait() {
            Ok(Some(status)) => status.to_string(),
            Ok(None) => "still running".to_owned(),
            Err(err) => format!("status unknown: {err}"),
        }
    }
}

impl Drop for ExampleServer {
    fn drop(&mut self) {
        // The process may already have exited; errors here are not interesting.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `stream` line by line on a thread, sending each line tagged by `tag`.
///
/// The thread keeps draining the stream after the receiver is gone, so the
/// example never blocks on a full pipe.
fn forward_lines<R, F>(stream: R, sender: Sender<OutputLine>, tag: F)
where
    R: Read + Send + 'static,
    F: Fn(String) -> OutputLine + Send + 'static,
{
    thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            // A closed receiver only means nobody listens any more.
            let _ = sender.send(tag(line));
        }
    });
}

/// What a command run by [`run_with_timeout`] did.
pub struct RunOutcome {
    /// Whether it exited successfully within the time limit.
    pub success: bool,
    /// Its exit status, or a note that it was killed.
    pub outcome: String,
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

/// Runs `command` with captured output, killing it if it outlives `timeout`.
pub fn run_with_timeout(command: &mut Command, timeout: Duration) -> RunOutcome {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start {command:?}: {err}"));

    // Each stream is read to its end on a thread; both ends mean the process is done.
    let (sender, done) = mpsc::channel();
    let stdout = read_to_end_on_thread(
        child.stdout.take().expect("stdout is piped"),
        sender.clone(),
    );
    let stderr = read_to_end_on_thread(child.stderr.take().expect("stderr is piped"), sender);

    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    for _ in 0..2 {
        let left = deadline.saturating_duration_since(Instant::now());
        if let Err(RecvTimeoutError::Timeout) = done.recv_timeout(left) {
            timed_out = true;
            break;
        }
    }
    if timed_out {
        // Killing closes the pipes, which lets the reader threads finish.
        let _ = child.kill();
    }
    let status = child.wait();
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();

    let (success, outcome) = match status {
        _ if timed_out => (false, format!("killed after {timeout:?}")),
        Ok(status) => (status.success(), status.to_string()),
        Err(err) => (false, format!("status unknown: {err}")),
    };
    RunOutcome {
        success,
        outcome,
        stdout,
        stderr,
    }
}

/// Reads `stream` to its end on a thread, then signals `done`; joining yields the text.
fn read_to_end_on_thread<R>(mut stream: R, done: Sender<()>) -> thread::JoinHandle<String>
where
    R: Read + Send + 'static,
{
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stream.read_to_end(&mut bytes);
        let _ = done.send(());
        String::from_utf8_lossy(&bytes).into_owned()
    })
}
