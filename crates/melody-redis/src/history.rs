//! [`RedisHistory`]: live topics' histories in Redis, shared by every node (feature `live`).
//!
//! | name | kind | what |
//! | --- | --- | --- |
//! | `{ns}:live:{topic}:meta` | hash, expires after the ttl | the stream's `epoch` and last `offset` |
//! | `{ns}:live:{topic}:stream` | stream, same expiry | the kept publications: id `<offset>-0`, fields `d` (the JSON) and `t` (Redis time, ms) |
//! | `{ns}:live` | channel | every publication, to every node: `[topic, epoch, offset, data]` |
//!
//! Appending is one Lua script: the offset is counted, the entry added (trimmed to the history's
//! size), both keys' expiry set to its ttl, and the publication published, atomically. Redis runs
//! one script at a time, so every node's publications to a topic get one order, and the channel
//! hands them to every node in that order. A topic that had no publication for its ttl loses
//! both keys: its next publication starts a new epoch, and clients that come back are told that
//! their history is gone.

use std::{
    fmt,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::StreamExt;
use melody::live::{
    Feed, History, HistoryStore, ReadFrom, StoreFuture, StreamPosition, StreamRead, new_epoch,
};
use redis::{
    Client, Script,
    aio::{ConnectionManager, PubSub},
};
use serde_json::value::RawValue;
use tokio::{runtime::Handle, task::AbortHandle, time::timeout};

use crate::{Error, RedisOptions, driver::lock};

/// Appends a publication: counts its offset, adds it, trims, sets the expiry, publishes.
const APPEND: &str = r"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[2]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
end
local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], offset .. '-0', 'd', ARGV[1], 't', now)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('PUBLISH', ARGV[5], cjson.encode({ARGV[6], epoch, offset, ARGV[1]}))
return {epoch, offset}
";

/// Reads a stream (starting it when there is none): epoch, last offset, oldest unexpired
/// offset, and publications (after an offset, or the latest), unexpired only.
const READ: &str = r"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  -- A subscriber gets a position even before the first publication: the stream starts here.
  epoch = ARGV[5]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
local offset = redis.call('HGET', KEYS[1], 'offset')
local time = redis.call('TIME')
local cutoff = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000) - tonumber(ARGV[4])
local oldest = false
local cursor = '-'
while not oldest do
  local batch = redis.call('XRANGE', KEYS[2], cursor, '+', 'COUNT', 16)
  if #batch == 0 then break end
  for _, entry in ipairs(batch) do
    if tonumber(entry[2][4]) >= cutoff then oldest = entry[1]; break end
  end
  cursor = '(' .. batch[#batch][1]
end
local entries = {}
if tonumber(ARGV[3]) == 0 then
  -- Nothing asked for (`COUNT 0` answers nil).
elseif ARGV[1] == 'after' then
  entries = redis.call('XRANGE', KEYS[2], '(' .. ARGV[2] .. '-0', '+', 'COUNT', ARGV[3])
else
  entries = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', ARGV[3])
end
local out = {}
for _, entry in ipairs(entries) do
  if tonumber(entry[2][4]) >= cutoff then table.insert(out, {entry[1], entry[2][2]}) end
end
if ARGV[1] ~= 'after' then
  local reversed = {}
  for i = #out, 1, -1 do table.insert(reversed, out[i]) end
  out = reversed
end
-- After every publication this read saw, on the same channel: tells the reading node that its
-- feed has caught up with the read.
redis.call('PUBLISH', ARGV[6], cjson.encode({ARGV[7], ARGV[8]}))
return {epoch, offset, oldest, out}
";

/// Live topics' histories in Redis, shared by every node that connects to the same Redis and
/// namespace: plug it into each node's live topics with
/// [`Live::store`](melody::live::Live::store).
///
/// ```no_run
/// use melody::{Melody, live::{History, Live}};
/// use melody_redis::{RedisHistory, RedisOptions};
///
/// # async fn demo() -> Result<(), melody_redis::Error> {
/// let melody = Melody::new();
/// let store = RedisHistory::connect("redis://127.0.0.1:6379", RedisOptions::default()).await?;
/// melody.plug(Live::new().history("room:*", History::new()).store(store));
/// # Ok(()) }
/// ```
///
/// See the [module docs](self) for the keys and the guarantees. Its task (the subscription
/// that feeds this node) ends when the hub is gone. Attach it to one hub only.
#[derive(Clone)]
pub struct RedisHistory {
    inner: Arc<Inner>,
}

struct Inner {
    namespace: String,
    channel: String,
    client: Client,
    manager: ConnectionManager,
    options: RedisOptions,
    runtime: Handle,
    pubsub: Mutex<Option<PubSub>>,
    task: Mutex<Option<AbortHandle>>,
    append: Script,
    read: Script,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
    }
}

impl RedisHistory {
    /// Connects to Redis at `url` and subscribes to the namespace's publications. Must be
    /// called inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// As [`RedisDriver::connect`](crate::RedisDriver::connect).
    pub async fn connect(url: &str, options: RedisOptions) -> Result<Self, Error> {
        options.validate()?;
        let runtime = Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let client = Client::open(url)?;
        let manager = crate::driver::command_connection(&client, &options).await?;
        let namespace = options.get_namespace().to_owned();
        let channel = format!("{namespace}:live");
        let pubsub = subscribe(&client, &channel, options.command_timeout).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                namespace,
                channel,
                client,
                manager,
                options,
                runtime,
                pubsub: Mutex::new(Some(pubsub)),
                task: Mutex::new(None),
                append: Script::new(APPEND),
                read: Script::new(READ),
            }),
        })
    }

    fn keys(&self, topic: &str) -> (String, String) {
        let ns = &self.inner.namespace;
        (
            format!("{ns}:live:{topic}:meta"),
            format!("{ns}:live:{topic}:stream"),
        )
    }
}

impl HistoryStore for RedisHistory {
    fn start(&self, feed: Feed) {
        let Some(first) = lock(&self.inner.pubsub).take() else {
            tracing::warn!("redis history: started twice; only the first hub is fed");
            return;
        };
        let inner = self.inner.clone();
        let task = self
            .inner
            .runtime
            .spawn(async move { feeder(first, &inner, &feed).await });
        *lock(&self.inner.task) = Some(task.abort_handle());
    }

    fn append<'a>(
        &'a self,
        topic: &'a str,
        data: &'a RawValue,
        history: History,
    ) -> StoreFuture<'a, StreamPosition> {
        Box::pin(async move {
            let (meta, stream) = self.keys(topic);
            let mut invocation = self.inner.append.prepare_invoke();
            invocation
                .key(meta)
                .key(stream)
                .arg(data.get())
                .arg(new_epoch())
                .arg(history.size)
                .arg(millis(history.ttl))
                .arg(&self.inner.channel)
                .arg(topic);
            let mut connection = self.inner.manager.clone();
            let (epoch, offset): (String, u64) = timeout(
                self.inner.options.command_timeout,
                invocation.invoke_async(&mut connection),
            )
            .await
            .map_err(|_| Error::Timeout)?
            .map_err(Error::from)?;
            Ok(StreamPosition { epoch, offset })
        })
    }

    fn read<'a>(
        &'a self,
        topic: &'a str,
        from: ReadFrom,
        count: usize,
        history: History,
        marker: u64,
    ) -> StoreFuture<'a, StreamRead> {
        Box::pin(async move {
            let (meta, stream) = self.keys(topic);
            let (mode, after) = match from {
                ReadFrom::After(offset) => ("after", offset),
                _ => ("latest", 0),
            };
            let mut invocation = self.inner.read.prepare_invoke();
            invocation
                .key(meta)
                .key(stream)
                .arg(mode)
                .arg(after)
                .arg(count)
                .arg(millis(history.ttl))
                .arg(new_epoch())
                .arg(&self.inner.channel)
                .arg(topic)
                .arg(marker.to_string());
            let mut connection = self.inner.manager.clone();
            let reply: Vec<redis::Value> = timeout(
                self.inner.options.command_timeout,
                invocation.invoke_async(&mut connection),
            )
            .await
            .map_err(|_| Error::Timeout)?
            .map_err(Error::from)?;
            parse_read(reply)
        })
    }
}

/// The read script's answer as a [`StreamRead`].
fn parse_read(reply: Vec<redis::Value>) -> Result<StreamRead, melody::live::StoreError> {
    let mut fields = reply.into_iter();
    let (Some(epoch), Some(offset), Some(oldest), Some(entries)) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Ok(StreamRead::default());
    };
    let epoch: String = redis::from_redis_value(epoch)?;
    let offset: u64 = redis::from_redis_value(offset)?;
    let oldest: Option<String> = redis::from_redis_value(oldest)?;
    let entries: Vec<(String, String)> = redis::from_redis_value(entries)?;
    let mut publications = Vec::with_capacity(entries.len());
    for (id, data) in entries {
        publications.push((entry_offset(&id)?, Arc::from(RawValue::from_string(data)?)));
    }
    Ok(StreamRead {
        position: Some(StreamPosition { epoch, offset }),
        oldest: oldest.as_deref().map(entry_offset).transpose()?,
        publications,
    })
}

/// `<offset>-0` → offset.
fn entry_offset(id: &str) -> Result<u64, melody::live::StoreError> {
    let offset = id.split_once('-').map_or(id, |(offset, _)| offset);
    Ok(offset.parse()?)
}

/// Receives every node's publications and hands them to this node; re-subscribes with
/// backoff when the connection is lost (publications made meanwhile do not reach this node's
/// live subscribers; their offsets show the gap). Ends when the hub is gone.
async fn feeder(first: PubSub, inner: &Inner, feed: &Feed) {
    let mut pubsub = Some(first);
    let mut reconnected = false;
    while feed.is_attached() {
        let connection = match pubsub.take() {
            Some(connection) => connection,
            None => {
                let mut delay = inner.options.reconnect_min;
                loop {
                    tokio::time::sleep(delay).await;
                    if !feed.is_attached() {
                        return;
                    }
                    match subscribe(&inner.client, &inner.channel, inner.options.command_timeout)
                        .await
                    {
                        Ok(connection) => break connection,
                        Err(error) => {
                            tracing::debug!(%error, ?delay, "redis history: reconnect failed");
                            delay = (delay * 2).min(inner.options.reconnect_max);
                        }
                    }
                }
            }
        };
        if reconnected {
            // Whatever was published while the connection was down did not reach this node.
            feed.lost();
        }
        reconnected = true;
        let (_sink, mut messages) = connection.split();
        while let Some(message) = messages.next().await {
            match decode(message.get_payload_bytes()) {
                Ok(Fed::Publication(topic, position, data)) => {
                    feed.publication(&topic, position, data);
                }
                Ok(Fed::Marker(topic, marker)) => feed.marker(&topic, marker),
                Err(error) => {
                    tracing::warn!(%error, "redis history: a message that does not decode");
                }
            }
        }
        tracing::warn!("redis history: subscription lost; reconnecting");
    }
}

/// What the channel carries.
#[derive(Debug)]
enum Fed {
    /// `[topic, epoch, offset, data]`, from the append script.
    Publication(String, StreamPosition, Arc<RawValue>),
    /// `[topic, marker]`, from the read script.
    Marker(String, u64),
}

fn decode(payload: &[u8]) -> Result<Fed, melody::live::StoreError> {
    use serde_json::Value;
    let fields: Vec<Value> = serde_json::from_slice(payload)?;
    let text = |value: &Value| value.as_str().map(str::to_owned).ok_or("not a string");
    Ok(match fields.as_slice() {
        [topic, epoch, offset, data] => Fed::Publication(
            text(topic)?,
            StreamPosition {
                epoch: text(epoch)?,
                offset: offset.as_u64().ok_or("not an offset")?,
            },
            Arc::from(RawValue::from_string(text(data)?)?),
        ),
        [topic, marker] => Fed::Marker(text(topic)?, text(marker)?.parse()?),
        _ => return Err("neither a publication nor a marker".into()),
    })
}

async fn subscribe(client: &Client, channel: &str, limit: Duration) -> Result<PubSub, Error> {
    timeout(limit, async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok::<_, redis::RedisError>(pubsub)
    })
    .await
    .map_err(|_| Error::Timeout)?
    .map_err(Error::from)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

impl fmt::Debug for RedisHistory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisHistory")
            .field("namespace", &self.inner.namespace)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_messages_decode() {
        let Fed::Publication(topic, position, data) =
            decode(br#"["room:1","ab",7,"{\"n\":1}"]"#).unwrap()
        else {
            panic!("a publication");
        };
        assert_eq!((topic.as_str(), position.epoch.as_str()), ("room:1", "ab"));
        assert_eq!((position.offset, data.get()), (7, r#"{"n":1}"#));
        assert!(matches!(
            decode(br#"["room:1","12"]"#).unwrap(),
            Fed::Marker(topic, 12) if topic == "room:1"
        ));
        assert!(decode(b"[1]").is_err());
        assert!(decode(br#"["t","x"]"#).is_err());
        assert!(decode(br#"["t","e",1,"not json"]"#).is_err());
        assert_eq!(entry_offset("42-0").unwrap(), 42);
        assert!(entry_offset("x-0").is_err());
    }
}
