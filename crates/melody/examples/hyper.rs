//! The chat served by plain hyper 1, without axum: `Melody::handle_request` takes an
//! `http::Request` and returns the `101` (or refusal) response.
//!
//! ```sh
//! cargo run --release --example hyper   # then open the printed URL in two tabs
//! ```
//!
//! Listens on `ADDR` (default `127.0.0.1:5000`). Each session gets a `visitor` key at upgrade
//! (Go melody's `HandleRequestWithKeys`) and its remote address through [`melody::RemoteAddr`].

use std::convert::Infallible;

use http_body_util::Full;
use hyper::{Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use melody::{Bytes, Keys, Melody, RemoteAddr};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let melody = Melody::new();
    melody.handle_message(|session, text| {
        let _ = session.melody().broadcast(text);
    });
    melody.handle_connect(|session| {
        let visitor: u64 = session.must_get("visitor");
        println!("visitor {visitor} joined from {:?}", session.remote_addr());
    });

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:5000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("hyper chat: open http://{}/", listener.local_addr()?);

    let mut visitors = 0u64;
    loop {
        let (stream, peer) = listener.accept().await?;
        visitors += 1;
        let (melody, visitor) = (melody.clone(), visitors);
        let service = service_fn(move |mut req: Request<Incoming>| {
            let upgrade = (req.uri().path() == "/ws").then(|| {
                req.extensions_mut().insert(RemoteAddr(peer));
                melody.handle_request_with_keys(req, Keys::new().with("visitor", visitor))
            });
            async move {
                let response = match upgrade {
                    Some(upgrade) => upgrade.await,
                    None => page(),
                };
                Ok::<_, Infallible>(response)
            }
        });
        tokio::spawn(async move {
            let connection = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(error) = connection.await {
                eprintln!("connection error: {error}");
            }
        });
    }
}

fn page() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(include_bytes!("chat.html"))));
    response.headers_mut().insert(
        "content-type",
        "text/html; charset=utf-8".parse().expect("valid header"),
    );
    response
}
