//! The `live` rooms example as a cluster: several processes sharing one Redis or one NATS, with
//! each room's history in the broker (`RedisHistory`, or `NatsHistory` on JetStream) and
//! presence events across nodes. A page that loses its connection to one node and comes back on
//! another recovers what it missed.
//!
//! Two nodes on one machine, with a local Redis (`redis-server` on its default port 6379):
//!
//! ```sh
//! # terminal 1
//! ADDR=127.0.0.1:5000 cargo run --release -p melody-cluster --example live-cluster
//! # terminal 2
//! ADDR=127.0.0.1:5001 cargo run --release -p melody-cluster --example live-cluster
//! ```
//!
//! Open <http://127.0.0.1:5000/> and <http://127.0.0.1:5001/>: both pages are in the same
//! rooms, see each other join and leave, and share each room's last messages. `REDIS_URL` names
//! another Redis; `NATS_URL` (e.g. `nats://127.0.0.1:4222`, a `nats-server -js`) makes the
//! nodes share NATS instead, with the histories in JetStream. `MESSAGE_RATE=0` lifts the
//! per-client rate limit (20 a second) for `melody-bench live`.

#[path = "../../melody/examples/live/rooms.rs"]
mod rooms;

use melody::cluster::Cluster;
use melody_nats::{NatsDriver, NatsHistory, NatsOptions};
use melody_redis::{RedisDriver, RedisHistory, RedisOptions};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let nats = std::env::var("NATS_URL").ok();
    let url = nats.clone().unwrap_or_else(|| {
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
    });
    let melody = rooms::hub();
    // Presence events travel as topic sends: the cluster carries them to the other nodes.
    let live = rooms::rooms().history("room:*", rooms::history());
    let live = if nats.is_some() {
        Cluster::attach(
            &melody,
            NatsDriver::connect(&url, NatsOptions::default()).await?,
        )?;
        live.store(NatsHistory::connect(&url, NatsOptions::default()).await?)
    } else {
        Cluster::attach(
            &melody,
            RedisDriver::connect(&url, RedisOptions::default()).await?,
        )?;
        live.store(RedisHistory::connect(&url, RedisOptions::default()).await?)
    };
    melody.plug(live);

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:5000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "live: open http://{}/ ({} at {url})",
        listener.local_addr()?,
        if nats.is_some() { "nats" } else { "redis" }
    );
    melody::serve(listener, rooms::app(&melody)).await?;
    Ok(())
}
