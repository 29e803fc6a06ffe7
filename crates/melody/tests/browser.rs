//! Headless-Chromium tests of the `chat` and `gophers` examples.
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

use std::env;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

/// How long an example may take to print its URL.
const URL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a browser script may run before it is killed.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(90);

/// Chromium executable used when the `CHROMIUM` environment variable is unset.
const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";

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
    if let Some(reason) = missing_prerequisite() {
        assert!(
            env::var("MELODY_TEST_REQUIRE_ALL").as_deref() != Ok("1"),
            "browser test prerequisite missing (MELODY_TEST_REQUIRE_ALL=1): {reason}"
        );
        eprintln!("skipping browser test: {reason}");
        return;
    }

    let mut server = ExampleServer::start(&binary, envs);
    let url = server.wait_for_url();

    let script = browser_dir().join(format!("{example}.mjs"));
    let run = run_with_timeout(
        Command::new("node")
            .arg(&script)
            .arg(&url)
            .args(extra_args)
            .current_dir(browser_dir()),
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

/// The folder holding the playwright-core scripts and their `node_modules`.
fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("browser")
}

/// Path of the example binary `name` that `cargo test` built next to this test.
///
/// This test runs as `target/<profile>/deps/browser-<hash>`; examples live in
/// `target/<profile>/examples/`.
fn example_binary(name: &str) -> PathBuf {
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

/// Returns why the browser tooling cannot run, or `None` when it is all there.
fn missing_prerequisite() -> Option<String> {
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

    let chromium =
        env::var_os("CHROMIUM").map_or_else(|| PathBuf::from(DEFAULT_CHROMIUM), PathBuf::from);
    if !chromium.is_file() {
        return Some(format!(
            "Chromium not found at {} (set CHROMIUM to its path)",
            chromium.display()
        ));
    }

    let playwright = browser_dir().join("node_modules").join("playwright-core");
    if !playwright.is_dir() {
        return Some(format!(
            "{} is missing (run `npm ci` in {})",
            playwright.display(),
            browser_dir().display()
        ));
    }
    None
}

/// Returns the first `http://` URL in `line`, up to the next whitespace.
fn extract_url(line: &str) -> Option<&str> {
    let start = line.find("http://")?;
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
struct ExampleServer {
    /// The example process.
    child: Child,
    /// Lines of the example's stdout and stderr, as they are read.
    output: Receiver<OutputLine>,
    /// Every line received from `output` so far, for failure messages.
    seen: Vec<String>,
}

impl ExampleServer {
    /// Starts `binary` on a free loopback port with its output captured.
    fn start(binary: &Path, envs: &[(&str, &str)]) -> Self {
        let mut child = Command::new(binary)
            .env("ADDR", "127.0.0.1:0")
            .envs(envs.iter().copied())
            .current_dir(env!("CARGO_MANIFEST_DIR"))
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
            child,
            output,
            seen: Vec::new(),
        }
    }

    /// Waits for the first stdout line containing an `http://` URL and returns that URL.
    fn wait_for_url(&mut self) -> String {
        let deadline = Instant::now() + URL_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(OutputLine::Stdout(line)) => {
                    let url = extract_url(&line).map(str::to_owned);
                    self.seen.push(line);
                    if let Some(url) = url {
                        return url;
                    }
                }
                Ok(OutputLine::Stderr(line)) => self.seen.push(format!("[stderr] {line}")),
                Err(RecvTimeoutError::Timeout) => panic!(
                    "example printed no http:// URL on stdout within {URL_TIMEOUT:?}; output:\n{}",
                    self.output_so_far()
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "example exited ({}) before printing an http:// URL; output:\n{}",
                    self.exit_status(),
                    self.output_so_far()
                ),
            }
        }
    }

    /// Everything the example has printed so far, one line each.
    fn output_so_far(&mut self) -> String {
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
struct RunOutcome {
    /// Whether it exited successfully within the time limit.
    success: bool,
    /// Its exit status, or a note that it was killed.
    outcome: String,
    /// Everything it wrote to stdout.
    stdout: String,
    /// Everything it wrote to stderr.
    stderr: String,
}

/// Runs `command` with captured output, killing it if it outlives `timeout`.
fn run_with_timeout(command: &mut Command, timeout: Duration) -> RunOutcome {
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
