//! The backplane: one hub across many nodes.
//!
//! With a [`Backplane`] attached ([`Melody::set_backplane`]), every broadcast, topic publish and
//! direct send also goes to the other nodes, each of which fans it out to its own sessions. A
//! delivery is encoded once per node ([`Delivery::encode`]); a delivery that arrives from the
//! backplane is only fanned out locally, never published again, so there are no loops.
//!
//! What crosses nodes: [`Melody::broadcast`], [`Melody::broadcast_others`], [`Melody::publish`],
//! [`Melody::publish_others`] (and their binary and envelope forms), `publish_event` (feature
//! `sse`; as a publish of its data), and [`Melody::send_to`] for a session that is not on this
//! node. What stays local: filters and lists
//! ([`Melody::broadcast_filter`], [`Melody::broadcast_multiple`]), since closures and session
//! handles do not travel.
//!
//! Backends live in their own crates (`melody-redis`, `melody-nats`); [`LocalBackplane`] connects
//! hubs inside one process, for tests and examples.

use std::{
    fmt,
    sync::{Arc, Weak},
};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::{Melody, Message, SessionId, melody::Hub};

/// The error type of backplane operations.
pub type BackplaneError = Box<dyn std::error::Error + Send + Sync>;

/// A node of the cluster: one hub in one process. Random, so ids of different nodes differ.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u64);

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({:016x})", self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Who a delivery is for. It travels between nodes, so it names sessions by id and topics by
/// name, never by handle.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Target {
    /// Every session.
    All,
    /// Every session but one (the sender).
    AllExcept(SessionId),
    /// Every member of a topic (and its SSE subscribers).
    Topic(String),
    /// Every member of a topic but one.
    TopicExcept(String, SessionId),
    /// One session, wherever it is connected.
    Session(SessionId),
}

impl Target {
    /// The topic this target names, if any (backends may route by it).
    #[must_use]
    pub fn topic(&self) -> Option<&str> {
        match self {
            Self::Topic(topic) | Self::TopicExcept(topic, _) => Some(topic),
            _ => None,
        }
    }
}

/// One message on its way between nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The node it was sent from.
    pub origin: NodeId,
    /// Who it is for.
    pub target: Target,
    /// What it carries.
    pub message: Message,
}

/// A delivery that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed backplane delivery: {0}")]
pub struct DecodeError(&'static str);

const VERSION: u8 = 1;

impl Delivery {
    /// The wire form: version, origin, target, kind, payload. Compact and self-contained.
    ///
    /// ```
    /// use melody::{Message, backplane::{Delivery, NodeId, Target}};
    ///
    /// let delivery = Delivery {
    ///     origin: NodeId(7),
    ///     target: Target::Topic("room:lobby".into()),
    ///     message: Message::text("hello"),
    /// };
    /// assert_eq!(Delivery::decode(&delivery.encode()).unwrap(), delivery);
    /// ```
    #[must_use]
    pub fn encode(&self) -> Bytes {
        let payload = self.message.payload();
        let mut out = BytesMut::with_capacity(32 + payload.len());
        out.put_u8(VERSION);
        out.put_u64(self.origin.0);
        let (tag, topic, session) = match &self.target {
            Target::All => (0, None, None),
            Target::AllExcept(id) => (1, None, Some(*id)),
            Target::Topic(topic) => (2, Some(topic), None),
            Target::TopicExcept(topic, id) => (3, Some(topic), Some(*id)),
            Target::Session(id) => (4, None, Some(*id)),
        };
        out.put_u8(tag);
        if let Some(id) = session {
            out.put_u64(id.as_u64());
        }
        if let Some(topic) = topic {
            out.put_u32(u32::try_from(topic.len()).unwrap_or(u32::MAX));
            out.put_slice(topic.as_bytes());
        }
        out.put_u8(u8::from(self.message.is_binary()));
        out.put_slice(payload);
        out.freeze()
    }

    /// Reads the wire form back; never panics on any input.
    ///
    /// # Errors
    ///
    /// [`DecodeError`] when the bytes are not a delivery of this version.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut input = bytes;
        let need = |input: &[u8], n: usize| {
            if input.remaining() < n {
                Err(DecodeError("truncated"))
            } else {
                Ok(())
            }
        };
        need(input, 10)?;
        if input.get_u8() != VERSION {
            return Err(DecodeError("unknown version"));
        }
        let origin = NodeId(input.get_u64());
        let tag = input.get_u8();
        let session = if matches!(tag, 1 | 3 | 4) {
            need(input, 8)?;
            Some(SessionId::new(input.get_u64()))
        } else {
            None
        };
        let topic = if matches!(tag, 2 | 3) {
            need(input, 4)?;
            let len = input.get_u32() as usize;
            need(input, len)?;
            let topic = std::str::from_utf8(&input[..len])
                .map_err(|_| DecodeError("topic is not utf-8"))?;
            let topic = topic.to_owned();
            input.advance(len);
            Some(topic)
        } else {
            None
        };
        let target = match (tag, topic, session) {
            (0, None, None) => Target::All,
            (1, None, Some(id)) => Target::AllExcept(id),
            (2, Some(topic), None) => Target::Topic(topic),
            (3, Some(topic), Some(id)) => Target::TopicExcept(topic, id),
            (4, None, Some(id)) => Target::Session(id),
            _ => return Err(DecodeError("unknown target")),
        };
        need(input, 1)?;
        let message = match input.get_u8() {
            0 => Message::try_text(Bytes::copy_from_slice(input))
                .map_err(|_| DecodeError("text is not utf-8"))?,
            1 => Message::binary(Bytes::copy_from_slice(input)),
            _ => return Err(DecodeError("unknown message kind")),
        };
        Ok(Self {
            origin,
            target,
            message,
        })
    }
}

/// A transport between the nodes of a cluster. Implementations carry encoded deliveries to
/// every other node and hand what they receive to the [`Inbox`] given to [`Backplane::start`].
///
/// `publish` is called on the broadcasting task and must not block: queue the bytes and send
/// them from a task of your own. Report failures (a broker outage) through
/// [`Inbox::report_error`]: they are counted and go to the hub's tracing output, never
/// silently lost.
pub trait Backplane: Send + Sync + 'static {
    /// Starts the backplane for a hub; `inbox` takes what other nodes send.
    fn start(&self, inbox: Inbox);

    /// Sends an encoded delivery to the other nodes. `target` is given so that a backend can
    /// route (a channel per topic, a node channel for direct sends).
    fn publish(&self, target: &Target, delivery: Bytes);

    /// The presence of every node, this one included, when the backend keeps it (each node
    /// publishes [`Inbox::local_presence`] snapshots). `None` (the default) means presence is
    /// local only.
    fn presence(&self) -> Option<PresenceFuture> {
        None
    }
}

/// What [`Backplane::presence`] returns.
pub type PresenceFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Vec<NodePresence>, BackplaneError>> + Send>,
>;

/// One node's sessions and topic members at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodePresence {
    /// The node.
    pub node: NodeId,
    /// How many sessions it has.
    pub sessions: usize,
    /// Each topic with members on the node, and their ids.
    pub topics: Vec<(String, Vec<SessionId>)>,
}

impl NodePresence {
    /// A compact wire form, for backends that store or send snapshots.
    #[must_use]
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        out.put_u8(VERSION);
        out.put_u64(self.node.0);
        out.put_u64(self.sessions as u64);
        out.put_u32(u32::try_from(self.topics.len()).unwrap_or(u32::MAX));
        for (topic, ids) in &self.topics {
            out.put_u32(u32::try_from(topic.len()).unwrap_or(u32::MAX));
            out.put_slice(topic.as_bytes());
            out.put_u32(u32::try_from(ids.len()).unwrap_or(u32::MAX));
            for id in ids {
                out.put_u64(id.as_u64());
            }
        }
        out.freeze()
    }

    /// Reads a snapshot back; never panics on any input.
    ///
    /// # Errors
    ///
    /// [`DecodeError`] when the bytes are not a snapshot of this version.
    pub fn decode(mut input: &[u8]) -> Result<Self, DecodeError> {
        fn need(input: &[u8], n: usize) -> Result<(), DecodeError> {
            if input.remaining() < n {
                Err(DecodeError("truncated"))
            } else {
                Ok(())
            }
        }
        need(input, 21)?;
        if input.get_u8() != VERSION {
            return Err(DecodeError("unknown version"));
        }
        let node = NodeId(input.get_u64());
        let sessions =
            usize::try_from(input.get_u64()).map_err(|_| DecodeError("too many sessions"))?;
        let count = input.get_u32() as usize;
        let mut topics = Vec::new();
        for _ in 0..count {
            need(input, 4)?;
            let len = input.get_u32() as usize;
            need(input, len + 4)?;
            let topic = std::str::from_utf8(&input[..len])
                .map_err(|_| DecodeError("topic is not utf-8"))?
                .to_owned();
            input.advance(len);
            let members = input.get_u32() as usize;
            need(input, members.saturating_mul(8))?;
            let ids = (0..members)
                .map(|_| SessionId::new(input.get_u64()))
                .collect();
            topics.push((topic, ids));
        }
        Ok(Self {
            node,
            sessions,
            topics,
        })
    }
}

/// Where a backplane hands deliveries from other nodes, and how it learns about this node.
#[derive(Clone)]
pub struct Inbox {
    hub: Weak<Hub>,
    node: NodeId,
}

impl Inbox {
    /// This node's id: a backend skips deliveries whose origin it is.
    #[must_use]
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// Fans a delivery received from the backplane out to this node's sessions. Deliveries from
    /// this node itself are ignored. Returns how many local sessions it was queued for.
    ///
    /// # Errors
    ///
    /// [`DecodeError`] for bytes that are not a delivery (counted, never a panic).
    pub fn deliver(&self, bytes: &[u8]) -> Result<usize, DecodeError> {
        let Some(hub) = self.hub.upgrade() else {
            return Ok(0);
        };
        let delivery = Delivery::decode(bytes).inspect_err(|_| hub.counters.backplane_error())?;
        if delivery.origin == self.node {
            return Ok(0);
        }
        hub.counters.backplane_received();
        let melody = Melody::from_hub(hub);
        Ok(melody
            .deliver_locally(&delivery.target, &delivery.message)
            .unwrap_or(0))
    }

    /// Records a backplane failure (a lost connection, a publish that failed): it is counted in
    /// [`Stats::backplane_errors`](crate::Stats), logged, and passed to the hub's
    /// [`Melody::handle_backplane_error`] handler.
    pub fn report_error(&self, error: &(dyn std::error::Error + 'static)) {
        if let Some(hub) = self.hub.upgrade() {
            hub.counters.backplane_error();
            if let Some(handler) = &hub.handlers().backplane_error {
                handler(error);
            }
        }
        tracing::warn!(node = %self.node, %error, "backplane error");
    }

    /// Whether the hub this inbox feeds still exists; a backend can stop its tasks when not.
    #[must_use]
    pub fn is_attached(&self) -> bool {
        self.hub.strong_count() > 0
    }

    /// Records that the backend reconnected to its broker.
    pub fn reconnected(&self) {
        if let Some(hub) = self.hub.upgrade() {
            hub.counters.backplane_reconnected();
        }
        tracing::info!(node = %self.node, "backplane reconnected");
    }

    /// This node's sessions and topic members right now.
    #[must_use]
    pub fn local_presence(&self) -> NodePresence {
        let Some(hub) = self.hub.upgrade() else {
            return NodePresence {
                node: self.node,
                ..NodePresence::default()
            };
        };
        let topics = hub
            .topics
            .names()
            .into_iter()
            .map(|topic| {
                let ids = hub
                    .topics
                    .members(&topic)
                    .iter()
                    .map(crate::Session::id)
                    .collect();
                (topic, ids)
            })
            .collect();
        NodePresence {
            node: self.node,
            sessions: hub.registry.len(),
            topics,
        }
    }
}

impl fmt::Debug for Inbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbox").field("node", &self.node).finish()
    }
}

impl Melody {
    /// Attaches a backplane: from now on broadcasts, publishes and direct sends reach the
    /// sessions of every node that shares it. Set it once, before serving.
    ///
    /// # Panics
    ///
    /// When a backplane is already set.
    pub fn set_backplane(&self, backplane: impl Backplane) -> &Self {
        let backplane: Arc<dyn Backplane> = Arc::new(backplane);
        let hub = self.hub();
        assert!(
            hub.backplane.set(backplane.clone()).is_ok(),
            "a backplane is already set"
        );
        backplane.start(Inbox {
            hub: Arc::downgrade(hub),
            node: hub.node,
        });
        self
    }

    /// Runs `f` on every backplane failure: a publish that did not reach the broker (its message
    /// is lost for the other nodes), a lost broker connection, an undecodable delivery.
    ///
    /// ```
    /// let melody = melody::Melody::new();
    /// melody.handle_backplane_error(|error| eprintln!("backplane: {error}"));
    /// ```
    pub fn handle_backplane_error(
        &self,
        f: impl Fn(&(dyn std::error::Error + 'static)) + Send + Sync + 'static,
    ) -> &Self {
        let f: crate::handlers::BackplaneErrorFn = Arc::new(f);
        self.set_handler(|h| h.backplane_error = Some(f.clone()))
    }

    /// Whether a backplane is set.
    pub(crate) fn has_backplane(&self) -> bool {
        self.hub().backplane.get().is_some()
    }

    /// This hub's node id.
    #[must_use]
    pub fn node_id(&self) -> NodeId {
        self.hub().node
    }

    /// Presence across the cluster: one snapshot per node. Without a backplane, or with one that
    /// keeps no presence, only this node's. Eventually consistent: see the backend's bound.
    ///
    /// # Errors
    ///
    /// The backend's error when it cannot be asked (a broker outage).
    pub async fn presence(&self) -> Result<Vec<NodePresence>, BackplaneError> {
        let local = || {
            Inbox {
                hub: Arc::downgrade(self.hub()),
                node: self.hub().node,
            }
            .local_presence()
        };
        match self.hub().backplane.get().and_then(|b| b.presence()) {
            Some(presence) => presence.await,
            None => Ok(vec![local()]),
        }
    }

    /// Sessions connected across the cluster (see [`Melody::presence`]).
    ///
    /// # Errors
    ///
    /// As [`Melody::presence`].
    pub async fn cluster_len(&self) -> Result<usize, BackplaneError> {
        Ok(self
            .presence()
            .await?
            .iter()
            .map(|node| node.sessions)
            .sum())
    }

    /// The ids of `topic`'s members across the cluster (see [`Melody::presence`]).
    ///
    /// # Errors
    ///
    /// As [`Melody::presence`].
    pub async fn cluster_members(&self, topic: &str) -> Result<Vec<SessionId>, BackplaneError> {
        Ok(self
            .presence()
            .await?
            .into_iter()
            .flat_map(|node| node.topics)
            .filter(|(name, _)| name == topic)
            .flat_map(|(_, ids)| ids)
            .collect())
    }

    /// Sends a message to the other nodes, if a backplane is set.
    pub(crate) fn publish_remote(&self, target: Target, message: &Message) {
        if let Some(backplane) = self.hub().backplane.get() {
            let delivery = Delivery {
                origin: self.hub().node,
                target,
                message: message.clone(),
            };
            self.hub().counters.backplane_sent();
            backplane.publish(&delivery.target, delivery.encode());
        }
    }

    /// Fans a delivery out to this node's sessions only.
    fn deliver_locally(&self, target: &Target, message: &Message) -> Result<usize, crate::Error> {
        match target {
            Target::All => self.fan_out(message, |queue| self.hub().registry.for_each(queue)),
            Target::AllExcept(except) => self.fan_out(message, |queue| {
                self.hub().registry.for_each(|s| {
                    if s.id() != *except {
                        queue(s);
                    }
                });
            }),
            Target::Topic(topic) => self.publish_local(topic, message, None),
            Target::TopicExcept(topic, except) => self.publish_local(topic, message, Some(*except)),
            Target::Session(id) => match self.session(*id) {
                Some(session) => session.write(message.clone()).map(|()| 1),
                None => Ok(0),
            },
        }
    }
}

/// Connects the hubs of one process: what one publishes, the others deliver. For tests,
/// examples, and several hubs in one binary.
///
/// ```
/// use melody::{Melody, backplane::LocalBackplane};
///
/// let bus = LocalBackplane::new();
/// let (a, b) = (Melody::new(), Melody::new());
/// a.set_backplane(bus.clone());
/// b.set_backplane(bus.clone());
/// // a.broadcast(..) now reaches b's sessions too.
/// ```
#[derive(Clone, Default)]
pub struct LocalBackplane {
    inboxes: Arc<std::sync::Mutex<Vec<Inbox>>>,
}

impl LocalBackplane {
    /// A new, empty bus.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

impl LocalBackplane {
    fn inboxes(&self) -> Vec<Inbox> {
        self.inboxes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl fmt::Debug for LocalBackplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalBackplane").finish_non_exhaustive()
    }
}

impl Backplane for LocalBackplane {
    fn start(&self, inbox: Inbox) {
        self.inboxes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(inbox);
    }

    fn publish(&self, _target: &Target, delivery: Bytes) {
        for inbox in self.inboxes() {
            // Each inbox skips its own node's deliveries.
            let _ = inbox.deliver(&delivery);
        }
    }

    fn presence(&self) -> Option<PresenceFuture> {
        let snapshots = self.inboxes().iter().map(Inbox::local_presence).collect();
        Some(Box::pin(std::future::ready(Ok(snapshots))))
    }
}
