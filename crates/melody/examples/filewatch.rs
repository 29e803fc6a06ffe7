//! Go melody's filewatch: every open page shows a file's content and updates live when it changes.
//!
//! ```sh
//! cargo run --release --example filewatch -- notes.txt   # then open the printed URL and edit the file
//! ```
//!
//! The file is the first argument, else `FILE`, else `file.txt` (created if missing). The watcher
//! follows the file's directory, so editors that save by writing a temporary file and renaming it
//! over the original, or that delete and recreate it, are seen too. Listens on `ADDR` (default
//! `127.0.0.1:5000`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::{env, fs, iter, thread};

use axum::{Router, response::Html, routing::get};
use melody::Melody;
use notify::{RecursiveMode, Watcher};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = env::args_os()
        .nth(1)
        .or_else(|| env::var_os("FILE"))
        .map_or_else(|| PathBuf::from("file.txt"), PathBuf::from);
    if !path.exists() {
        fs::write(&path, "Hello from melody's filewatch! Edit this file.\n")?;
    }
    let path = std::path::absolute(path)?;

    // The last content sent to everyone. Connecting and broadcasting both happen under this lock,
    // so a page that connects while the file changes still ends up with the newest content.
    let current = Arc::new(Mutex::new(read(&path).unwrap_or_default()));

    let melody = Melody::new();
    let content = Arc::clone(&current);
    melody.on_connect(move |session| {
        let content = content.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = session.send(content.as_str());
    });

    // Watch the directory, not the file: a file replaced by a rename is a new file.
    let (events, changes) = mpsc::channel();
    let mut watcher = notify::recommended_watcher(events)?;
    let dir = path.parent().ok_or("the file has no parent directory")?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    let hub = melody.clone();
    let name = path
        .file_name()
        .ok_or("the path has no file name")?
        .to_owned();
    let watched = path.clone();
    thread::spawn(move || {
        let _watcher = watcher; // Watching stops when it is dropped.
        let concerns_file = |event: &notify::Result<notify::Event>| {
            // Reading the file ourselves raises access events: skip them, or we would loop.
            event.as_ref().is_ok_and(|event| {
                !event.kind.is_access() && event.paths.iter().any(|p| p.file_name() == Some(&name))
            })
        };
        while let Ok(first) = changes.recv() {
            // Take the rest of a burst (truncate, write, rename, …) too and read the file once.
            let burst: Vec<_> = iter::once(first).chain(changes.try_iter()).collect();
            if !burst.iter().any(concerns_file) {
                continue;
            }
            // The file may be briefly missing while it is replaced; the next event brings it back.
            let Some(new) = read(&watched) else { continue };
            let mut content = current.lock().unwrap_or_else(PoisonError::into_inner);
            if *content != new {
                let _ = hub.all().send(new.as_str());
                *content = new;
            }
        }
    });

    let app = Router::new()
        .route("/", get(|| async { Html(include_str!("filewatch.html")) }))
        .route("/ws", get(melody.handler()));

    let addr = env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:5000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let url = listener.local_addr()?;
    println!(
        "filewatch: open http://{url}/ (watching {})",
        path.display()
    );
    std::io::stdout().flush()?;
    melody::serve(listener, app).await?;
    Ok(())
}

/// The file's content as text (invalid UTF-8 is replaced), or `None` if it cannot be read.
fn read(path: &Path) -> Option<String> {
    let bytes = fs::read(path).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}
