//! Live topics with their history in Redis (`RedisHistory`): the history store suite
//! (`melody/tests/live_stores/`) with a real `redis-server`, two nodes each with a cluster
//! driver and the store.

#[path = "../../melody/tests/common/mod.rs"]
mod common;
mod harness;
#[path = "../../melody/tests/common/live_client.rs"]
mod live_client;
#[path = "../../melody/tests/common/sse_client.rs"]
mod sse_client;
#[path = "../../melody/tests/live_stores/mod.rs"]
#[macro_use]
mod live_stores;

use std::time::Duration;

use harness::Redis;
use melody_redis::{RedisDriver, RedisHistory, RedisOptions};

/// One broker and one namespace per test.
struct RedisStores {
    redis: Redis,
    options: RedisOptions,
}

impl live_stores::StoreFixture for RedisStores {
    type Driver = RedisDriver;
    type Store = RedisHistory;

    async fn driver(&self) -> RedisDriver {
        RedisDriver::connect(self.redis.url(), self.options.clone())
            .await
            .expect("connect the driver")
    }

    async fn store(&self) -> RedisHistory {
        RedisHistory::connect(self.redis.url(), self.options.clone())
            .await
            .expect("connect the history store")
    }

    async fn cut_off(&self, driver: &RedisDriver) {
        driver.stop();
    }

    async fn forget(&self, topic: &str) {
        let ns = self.options.get_namespace();
        let mut connection = redis::Client::open(self.redis.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let _: () = redis::cmd("DEL")
            .arg(format!("{ns}:live:{topic}:meta"))
            .arg(format!("{ns}:live:{topic}:stream"))
            .query_async(&mut connection)
            .await
            .unwrap();
    }
}

async fn stores() -> Option<RedisStores> {
    Some(RedisStores {
        redis: harness::redis().await?,
        // A short presence bound, for the vanished-node test.
        options: RedisOptions::default()
            .namespace(harness::namespace())
            .heartbeat(Duration::from_millis(100))
            .presence_ttl(Duration::from_millis(500)),
    })
}

live_store_suite!(stores());
