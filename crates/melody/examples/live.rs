//! Chat rooms on live topics: who is online (presence events), each room's last messages on
//! joining (history), and whatever was missed during a lost connection recovered on
//! reconnecting (docs/PROTOCOL.md).
//!
//! ```sh
//! cargo run --release --features live --example live   # then open the printed URL
//! ```
//!
//! Listens on `ADDR` (default `127.0.0.1:5000`). The page asks for a name and sends it as
//! `?name=` (1 to 32 letters, digits, `_`, `-` or `.`; anything else is refused with close code
//! 4401; the name `expired` is refused as an expired credential, `token expired`). Rooms are the
//! topics `room:<anything>`; `say` publishes to a room the sender is in. For
//! `melody-bench live`: `HISTORY=0` turns history off, `MESSAGE_RATE=0` lifts the per-client
//! message rate limit (20 a second).

// Shared with `melody-cluster`'s `live-cluster`.
#[path = "live/rooms.rs"]
mod rooms;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let melody = rooms::hub();
    let mut live = rooms::rooms();
    // `HISTORY=0` leaves history off (`melody-bench live` measures what it costs).
    if std::env::var("HISTORY").map_or(true, |value| value != "0") {
        live = live.history("room:*", rooms::history());
    }
    melody.plug(live);

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:5000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("live: open http://{}/", listener.local_addr()?);
    melody::serve(listener, rooms::app(&melody)).await
}
