//! Live topics with their history in NATS JetStream (`NatsHistory`): the history store suite
//! (`melody/tests/live_stores/`) with a real `nats-server -js`, two nodes each with a cluster
//! driver and the store.

mod broker;
#[path = "../../melody/tests/common/mod.rs"]
mod common;
#[path = "../../melody/tests/common/live_client.rs"]
mod live_client;
#[path = "../../melody/tests/common/sse_client.rs"]
mod sse_client;
#[path = "../../melody/tests/live_stores/mod.rs"]
#[macro_use]
mod live_stores;

use std::sync::atomic::{AtomicU64, Ordering};

use broker::Broker;
use melody_nats::{NatsDriver, NatsHistory, NatsOptions, encode_topic};

/// One broker per test, and a prefix of its own (tests may share an external broker).
struct NatsStores {
    broker: Broker,
    prefix: String,
}

impl NatsStores {
    fn options(&self) -> NatsOptions {
        NatsOptions::default().prefix(&self.prefix)
    }
}

impl live_stores::StoreFixture for NatsStores {
    type Driver = NatsDriver;
    type Store = NatsHistory;

    async fn driver(&self) -> NatsDriver {
        NatsDriver::connect(&self.broker.url, self.options())
            .await
            .expect("connect the driver")
    }

    async fn store(&self) -> NatsHistory {
        NatsHistory::connect(&self.broker.url, self.options())
            .await
            .expect("connect the history store")
    }

    async fn cut_off(&self, driver: &NatsDriver) {
        // The connection closes: the node neither answers presence nor sends anything more.
        driver.client().drain().await.expect("drain the connection");
    }

    async fn forget(&self, topic: &str) {
        let client = async_nats::connect(&self.broker.url).await.unwrap();
        let jetstream = async_nats::jetstream::new(client);
        let stream_name = format!("{}_live", self.prefix).replace('.', "_");
        let stream = jetstream.get_stream(stream_name).await.unwrap();
        stream
            .purge()
            .filter(format!("{}_live.t.{}", self.prefix, encode_topic(topic)))
            .await
            .unwrap();
    }
}

async fn stores() -> Option<NatsStores> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let test = std::thread::current()
        .name()
        .unwrap_or("melody-nats live test")
        .to_owned();
    Some(NatsStores {
        broker: broker::broker(&test).await?,
        prefix: format!(
            "melodylive.p{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ),
    })
}

live_store_suite!(stores());

/// JetStream keeps the stream on disk: after the broker restarts, the feed resumes (no node is
/// restarted) and a returning client still recovers what was published before the restart.
#[tokio::test]
async fn history_and_the_feed_survive_a_broker_restart() {
    let Some(mut fixture) = stores().await else {
        return;
    };
    if !fixture.broker.is_owned() {
        eprintln!("skipping: NATS_URL is an external broker this test cannot restart");
        return;
    }
    let (a, b) = (
        live_stores::node(&fixture).await,
        live_stores::node(&fixture).await,
    );
    let mut on_a = live_client::LiveClient::connect(a.addr).await;
    let reply = on_a.subscribe(serde_json::json!({"topic": "room:r"})).await;
    let epoch = reply["epoch"].clone();
    b.live.publish("room:r", "before").await.unwrap();
    assert_eq!(on_a.next_of("pub").await["offset"], 1);

    fixture.broker.stop();
    fixture.broker.start().await;
    // Publishing works again once the clients have reconnected.
    let published = tokio::time::timeout(common::WAIT, async {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(20));
        loop {
            tick.tick().await;
            if let Ok(published) = b.live.publish("room:r", "after").await {
                return published;
            }
        }
    })
    .await
    .expect("publishing never worked again");
    assert_eq!(published.offset, Some(2), "the stream went on where it was");
    let live = on_a.next_of("pub").await;
    assert_eq!(
        (live["offset"].as_u64(), live["data"].as_str()),
        (Some(2), Some("after"))
    );

    let mut back = live_client::LiveClient::connect(a.addr).await;
    let reply = back
        .subscribe(serde_json::json!({"topic": "room:r", "since": {"epoch": epoch, "offset": 0}}))
        .await;
    assert_eq!(reply["recovered"], true, "{reply}");
    assert_eq!(reply["publications"][0]["data"], "before");
    assert_eq!(reply["publications"][1]["data"], "after");
}
