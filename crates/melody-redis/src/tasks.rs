//! The driver's background work: the subscriber (receives what other nodes publish, reconnects
//! with backoff), the presence heartbeat, and the presence read.

use std::{
    sync::{Arc, atomic::Ordering::Relaxed},
    time::Duration,
};

use futures_util::StreamExt;
use melody::cluster::{Link, NodePresence};
use redis::{
    Client,
    aio::{ConnectionManager, PubSub},
};
use tokio::time::{MissedTickBehavior, timeout};

use crate::{Error, RedisOptions, options::Names, stats::Counters};

/// A pub/sub connection subscribed to the namespace's broadcast channel and topic pattern.
pub(crate) async fn subscribe(
    client: &Client,
    names: &Names,
    limit: Duration,
) -> Result<PubSub, Error> {
    let connect = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(&names.all).await?;
        pubsub.psubscribe(&names.topic_pattern).await?;
        Ok::<_, redis::RedisError>(pubsub)
    };
    timeout(limit, connect)
        .await
        .map_err(|_| Error::Timeout)?
        .map_err(Error::from)
}

/// Receives what the other nodes publish and hands it to the cluster; reconnects with backoff
/// and re-subscribes when the connection is lost. Ends when the hub is gone.
pub(crate) async fn subscriber(
    first: PubSub,
    client: Client,
    names: Arc<Names>,
    options: RedisOptions,
    link: Link,
    counters: Arc<Counters>,
) {
    let own = link.node().0.to_be_bytes();
    let mut pubsub = Some(first);
    while link.is_attached() {
        let connection = match pubsub.take() {
            Some(connection) => connection,
            None => {
                let mut delay = options.reconnect_min;
                let connection = loop {
                    tokio::time::sleep(delay).await;
                    if !link.is_attached() {
                        return;
                    }
                    match subscribe(&client, &names, options.command_timeout).await {
                        Ok(connection) => break connection,
                        Err(error) => {
                            tracing::debug!(%error, ?delay, "redis driver: reconnect failed");
                            delay = (delay * 2).min(options.reconnect_max);
                        }
                    }
                };
                counters.subscribed.store(true, Relaxed);
                Counters::add(&counters.reconnects, 1);
                link.reconnected();
                connection
            }
        };
        let (mut sink, mut stream) = connection.split();
        let mut health = tokio::time::interval(options.health_check);
        health.set_missed_tick_behavior(MissedTickBehavior::Delay);
        health.reset();
        let lost = loop {
            tokio::select! {
                message = stream.next() => {
                    let Some(message) = message else { break Error::Disconnected };
                    health.reset();
                    Counters::add(&counters.received, 1);
                    let payload = message.get_payload_bytes();
                    // A frame starts with a version byte and the origin node: skip this node's
                    // own without handing them over (the cluster would skip them too).
                    if payload.first() == Some(&1) && payload.get(1..9) == Some(&own[..]) {
                        continue;
                    }
                    link.receive(payload);
                }
                _ = health.tick() => {
                    if !link.is_attached() {
                        return;
                    }
                    let ping = timeout(options.command_timeout, sink.ping::<redis::Value>()).await;
                    if !matches!(ping, Ok(Ok(_))) {
                        break Error::HealthCheck;
                    }
                }
            }
        };
        counters.subscribed.store(false, Relaxed);
        link.error(&lost);
    }
}

/// Writes this node's presence snapshot every heartbeat, with the presence ttl as its expiry.
/// Ends when the hub is gone.
pub(crate) async fn heartbeat(
    mut conn: ConnectionManager,
    names: Arc<Names>,
    options: RedisOptions,
    link: Link,
    counters: Arc<Counters>,
) {
    let node = link.node().to_string();
    let key = names.presence_key(&node);
    let ttl = u64::try_from(options.presence_ttl.as_millis()).unwrap_or(u64::MAX);
    let mut tick = tokio::time::interval(options.heartbeat);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        if !link.is_attached() {
            return;
        }
        let snapshot = link.local_presence().encode();
        let write = redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(&key)
            .arg(&snapshot[..])
            .arg("PX")
            .arg(ttl)
            .ignore()
            .cmd("SADD")
            .arg(&names.nodes)
            .arg(&node)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&names.nodes)
            .arg(ttl)
            .ignore()
            .query_async::<()>(&mut conn)
            .await;
        match write {
            Ok(()) => failing = false,
            Err(error) => {
                Counters::add(&counters.heartbeat_errors, 1);
                // One report per outage, not one a second.
                if !failing {
                    link.error(&Error::Heartbeat(error));
                }
                failing = true;
            }
        }
    }
}

/// Every node's presence: this node's live, the others' from their last heartbeat.
pub(crate) async fn read_presence(
    mut conn: ConnectionManager,
    names: Arc<Names>,
    link: Link,
    limit: Duration,
) -> Result<Vec<NodePresence>, Error> {
    let read = async {
        let own = link.node().to_string();
        let nodes: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&names.nodes)
            .query_async(&mut conn)
            .await?;
        let others: Vec<String> = nodes.into_iter().filter(|n| *n != own).collect();
        let snapshots: Vec<Option<Vec<u8>>> = if others.is_empty() {
            Vec::new()
        } else {
            let keys: Vec<String> = others.iter().map(|n| names.presence_key(n)).collect();
            redis::cmd("MGET").arg(keys).query_async(&mut conn).await?
        };
        let mut all = vec![link.local_presence()];
        let mut expired = Vec::new();
        for (node, snapshot) in others.into_iter().zip(snapshots) {
            match snapshot.map(|bytes| NodePresence::decode(&bytes)) {
                Some(Ok(presence)) => all.push(presence),
                Some(Err(error)) => {
                    tracing::debug!(%node, %error, "unreadable presence snapshot");
                }
                None => expired.push(node),
            }
        }
        if !expired.is_empty() {
            // Tidy the set: a node whose snapshot expired is gone (a live one re-adds itself at
            // its next heartbeat).
            let _: Result<(), _> = redis::cmd("SREM")
                .arg(&names.nodes)
                .arg(expired)
                .query_async(&mut conn)
                .await;
        }
        all.sort_by_key(|presence| presence.node);
        Ok::<_, redis::RedisError>(all)
    };
    timeout(limit, read)
        .await
        .map_err(|_| Error::Timeout)?
        .map_err(Error::from)
}
