//! The chat served without axum: `Melody::upgrade` takes an `http::Request` and returns
//! the `101` response (`200` over HTTP/2, or a refusal), and `melody::serve` runs hyper with
//! the limits a public server needs (header timeout, a cap on unfinished handshakes, accept
//! errors survived).
//!
//! ```sh
//! cargo run --release --example hyper   # then open the printed URL in two tabs
//! ```
//!
//! Listens on `ADDR` (default `127.0.0.1:5000`), for HTTP/1.1 and for HTTP/2 with prior
//! knowledge (h2c): the service routes by path alone, so an RFC 8441 CONNECT reaches
//! `upgrade_with` as a GET does. Each session gets a `visitor` key at upgrade
//! (`Melody::upgrade_with`, Go melody's `HandleRequestWithKeys`); `melody::serve` gives every request the peer's
//! address, which the session reports as `remote_addr`.

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use http_body_util::Full;
use hyper::{Request, Response, body::Incoming};
use melody::{Bytes, Keys, Melody};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let melody = Melody::new();
    melody.on_text(|session, text| {
        let _ = session.melody().all().send(text);
    });
    melody.on_connect(|session| {
        let visitor: u64 = session.must_get("visitor");
        println!("visitor {visitor} joined from {:?}", session.remote_addr());
    });

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:5000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("hyper chat: open http://{}/", listener.local_addr()?);

    let visitors = Arc::new(AtomicU64::new(0));
    let service = tower::service_fn(move |req: Request<Incoming>| {
        let upgrade = (req.uri().path() == "/ws").then(|| {
            let visitor = visitors.fetch_add(1, Ordering::Relaxed) + 1;
            melody.upgrade_with(req, Keys::new().with("visitor", visitor))
        });
        async move {
            let response = match upgrade {
                Some(upgrade) => upgrade.await,
                None => page(),
            };
            Ok::<_, Infallible>(response)
        }
    });
    melody::serve(listener, service).await
}

fn page() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(include_bytes!("chat.html"))));
    response.headers_mut().insert(
        "content-type",
        "text/html; charset=utf-8".parse().expect("valid header"),
    );
    response
}
