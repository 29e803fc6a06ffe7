//! The one send path: a selection of sessions, then `send`. [`Target`]s (everyone, a topic,
//! one session by id, each but one) can travel between nodes and reach the delivery sinks;
//! selections by a closure or a list of handles stay on this node, and their types say so.
//!
//! A message is encoded once and its bytes shared by every recipient's queue. Queuing never
//! waits: a recipient whose queue is full is dealt with by the overflow policy after the
//! selection, outside every lock, and does not fail the send.

use std::any::Any;

use super::{
    error::{Closed, SendToError},
    hub::Melody,
    outbox::PushError,
    plugin::{Delivery, Origin},
    session::{Session, SessionId},
};
use crate::protocol::message::Message;

/// Whom a send is for. It names sessions by id and topics by name, never by handle, so it can
/// travel to other nodes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Target {
    /// Every session.
    All,
    /// Every session but one (the sender).
    AllExcept(SessionId),
    /// Every member of a topic.
    Topic(String),
    /// Every member of a topic but one.
    TopicExcept(String, SessionId),
    /// One session, wherever it is connected.
    Session(SessionId),
}

impl Target {
    /// The topic this target names, if any.
    #[must_use]
    pub fn topic(&self) -> Option<&str> {
        match self {
            Self::Topic(topic) | Self::TopicExcept(topic, _) => Some(topic),
            _ => None,
        }
    }

    /// The session this target leaves out, if any.
    #[must_use]
    pub fn except(&self) -> Option<SessionId> {
        match self {
            Self::AllExcept(id) | Self::TopicExcept(_, id) => Some(*id),
            _ => None,
        }
    }
}

impl Melody {
    /// Queues `message` on every session `select` hands to its callback; full queues are dealt
    /// with after the selection, outside any lock. Returns how many it was queued for.
    pub(crate) fn fan_out(
        &self,
        message: &Message,
        select: impl FnOnce(&mut dyn FnMut(&Session)),
    ) -> usize {
        let mut queued = 0;
        let mut full = Vec::new();
        select(
            &mut |session: &Session| match session.enqueue(message.clone()) {
                Ok(()) => queued += 1,
                Err((PushError::Full, _)) => full.push(session.clone()),
                Err((PushError::Closed, _)) => {}
            },
        );
        for session in full {
            session.overflowed();
        }
        queued
    }

    /// Sends to a target's sessions on this node, then to the sinks.
    pub(crate) fn dispatch(
        &self,
        target: &Target,
        message: &Message,
        origin: Origin,
        node_only: bool,
        context: Option<&(dyn Any + Sync)>,
    ) -> Result<usize, Closed> {
        let hub = &self.hub;
        if hub.is_closed() {
            return Err(Closed);
        }
        // With shared compression, a message for many sessions carries one slot for its
        // compressed form: the first session that writes it compresses, the others reuse it.
        let compression = &hub.config.compression;
        let shared;
        let message = if compression.is_enabled()
            && !compression.is_dedicated()
            && message.len() >= compression.threshold()
            && !matches!(target, Target::Session(_))
        {
            shared = message.with_deflate_slot(compression.max_window_bits());
            &shared
        } else {
            message
        };
        let local = match target {
            Target::All => self.fan_out(message, |queue| hub.registry.for_each(queue)),
            Target::AllExcept(except) => self.fan_out(message, |queue| {
                hub.registry.for_each(|s| {
                    if s.id() != *except {
                        queue(s);
                    }
                });
            }),
            Target::Topic(topic) => {
                self.fan_out(message, |queue| hub.topics.for_each(topic, queue))
            }
            Target::TopicExcept(topic, except) => self.fan_out(message, |queue| {
                hub.topics.for_each(topic, |s| {
                    if s.id() != *except {
                        queue(s);
                    }
                });
            }),
            Target::Session(id) => match hub.registry.get(*id) {
                Some(session) => self.fan_out(message, |queue| queue(&session)),
                None => 0,
            },
        };
        let delivery = Delivery::new(target, message, origin, node_only, context);
        Ok(local + hub.plugins.deliver(&delivery).local)
    }
}

/// Everyone, or a topic's members, possibly but one: from [`Melody::all`] and
/// [`Melody::topic`]. Crosses nodes when a cluster is attached (unless [`Broadcast::local`]).
///
/// ```no_run
/// # fn demo(melody: &melody::Melody, me: &melody::Session) -> Result<(), melody::Closed> {
/// melody.all().send("to everyone")?;
/// melody.all().except(me).send("to everyone but me")?;
/// melody.topic("room:lobby").send(vec![1u8, 2, 3])?; // binary
/// melody.topic("room:lobby").except(me).local().send("to this node's members but me")?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
#[must_use = "nothing is sent until `send`"]
pub struct Broadcast<'a> {
    melody: &'a Melody,
    target: Target,
    node_only: bool,
}

impl<'a> Broadcast<'a> {
    pub(crate) fn new(melody: &'a Melody, target: Target) -> Self {
        Self {
            melody,
            target,
            node_only: false,
        }
    }

    /// Leaves one session out (typically the sender).
    pub fn except(mut self, session: impl Into<SessionId>) -> Self {
        let except = session.into();
        self.target = match self.target {
            Target::All | Target::AllExcept(_) => Target::AllExcept(except),
            Target::Topic(topic) | Target::TopicExcept(topic, _) => {
                Target::TopicExcept(topic, except)
            }
            other => other,
        };
        self
    }

    /// Stays on this node: other nodes of a cluster do not get it.
    pub fn local(mut self) -> Self {
        self.node_only = true;
        self
    }

    /// The target this selection stands for.
    #[must_use]
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Queues the message on every selected session of this node (and gives it to the delivery
    /// sinks: SSE subscribers, other nodes). Returns how many recipients on this node it was
    /// queued for. Never waits.
    ///
    /// # Errors
    ///
    /// [`Closed`] when the hub is closed. A recipient whose queue is full does not fail the
    /// send: the error handler is told and the overflow policy applies.
    ///
    /// # Ordering
    ///
    /// Each recipient gets the messages sent to it in the order they were sent; there is no
    /// order between recipients.
    pub fn send(self, message: impl Into<Message>) -> Result<usize, Closed> {
        self.melody.dispatch(
            &self.target,
            &message.into(),
            Origin::Local,
            self.node_only,
            None,
        )
    }

    /// As [`Broadcast::send`], with `context` for the delivery sinks
    /// ([`Delivery::context`](crate::plugin::Delivery::context)): a plug-in's way to hand its
    /// own sink more than the message.
    ///
    /// # Errors
    ///
    /// As [`Broadcast::send`].
    pub fn send_with(
        self,
        message: impl Into<Message>,
        context: &(dyn Any + Sync),
    ) -> Result<usize, Closed> {
        self.melody.dispatch(
            &self.target,
            &message.into(),
            Origin::Local,
            self.node_only,
            Some(context),
        )
    }

    /// The selected sessions of this node, right now.
    #[must_use]
    pub fn sessions(&self) -> Vec<Session> {
        let mut sessions = Vec::new();
        self.each_local(|s| sessions.push(s.clone()));
        sessions
    }

    /// The ids of the selected sessions of this node.
    #[must_use]
    pub fn ids(&self) -> Vec<SessionId> {
        let mut ids = Vec::new();
        self.each_local(|s| ids.push(s.id()));
        ids
    }

    /// How many sessions of this node are selected.
    #[must_use]
    pub fn len(&self) -> usize {
        let hub = &self.melody.hub;
        match &self.target {
            Target::All => hub.registry.len(),
            Target::Topic(topic) => hub.topics.len(topic),
            _ => {
                let mut count = 0;
                self.each_local(|_| count += 1);
                count
            }
        }
    }

    /// Whether no session of this node is selected.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn each_local(&self, mut f: impl FnMut(&Session)) {
        let hub = &self.melody.hub;
        let except = self.target.except();
        let mut keep = |s: &Session| {
            if Some(s.id()) != except {
                f(s);
            }
        };
        match &self.target {
            Target::All | Target::AllExcept(_) => hub.registry.for_each(&mut keep),
            Target::Topic(topic) | Target::TopicExcept(topic, _) => {
                hub.topics.for_each(topic, &mut keep);
            }
            Target::Session(id) => {
                if let Some(session) = hub.registry.get(*id) {
                    keep(&session);
                }
            }
        }
    }
}

/// Where a message for one session by id went: from [`ToSession::send`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reached {
    /// Queued on the session, which is on this node.
    Here,
    /// Not on this node: handed to the cluster, whose node with the session delivers it
    /// (best effort: an id connected nowhere is not reported back).
    Forwarded,
}

/// One session by id, on this node or another: from [`Melody::session`].
#[derive(Clone, Copy, Debug)]
#[must_use = "nothing is sent until `send`"]
pub struct ToSession<'a> {
    melody: &'a Melody,
    id: SessionId,
}

impl<'a> ToSession<'a> {
    pub(crate) fn new(melody: &'a Melody, id: SessionId) -> Self {
        Self { melody, id }
    }

    /// The session, if it is connected to this node.
    #[must_use]
    pub fn get(&self) -> Option<Session> {
        self.melody.hub.registry.get(self.id)
    }

    /// Queues the message on the session, or hands it to the cluster when the session is on
    /// another node. Never waits.
    ///
    /// # Errors
    ///
    /// [`SendToError::NotConnected`] when the session is not on this node and no cluster took
    /// it; [`SendToError::Full`] and [`SendToError::Closed`] as [`Session::send`]. The message
    /// is handed back.
    pub fn send(self, message: impl Into<Message>) -> Result<Reached, SendToError> {
        let message = message.into();
        let hub = &self.melody.hub;
        if hub.is_closed() {
            return Err(SendToError::Closed(message));
        }
        if let Some(session) = hub.registry.get(self.id) {
            return match session.send(message) {
                Ok(()) => Ok(Reached::Here),
                Err(super::error::TrySendError::Full(message)) => Err(SendToError::Full(message)),
                Err(super::error::TrySendError::Closed(message)) => {
                    Err(SendToError::Closed(message))
                }
            };
        }
        let target = Target::Session(self.id);
        let delivery = Delivery::new(&target, &message, Origin::Local, false, None);
        if hub.plugins.deliver(&delivery).forwarded {
            Ok(Reached::Forwarded)
        } else {
            Err(SendToError::NotConnected(message))
        }
    }
}

/// The sessions of this node a closure selects: from [`Melody::filter`]. Closures do not
/// travel, so this never leaves the node.
#[must_use = "nothing is sent until `send`"]
pub struct Filtered<'a, F> {
    melody: &'a Melody,
    filter: F,
}

impl<'a, F: Fn(&Session) -> bool> Filtered<'a, F> {
    pub(crate) fn new(melody: &'a Melody, filter: F) -> Self {
        Self { melody, filter }
    }

    /// Queues the message on every session the filter accepts. The filter runs outside every
    /// lock, on a snapshot of the sessions, so it may call anything on the hub or the session.
    ///
    /// # Errors
    ///
    /// [`Closed`] when the hub is closed.
    pub fn send(self, message: impl Into<Message>) -> Result<usize, Closed> {
        let hub = &self.melody.hub;
        if hub.is_closed() {
            return Err(Closed);
        }
        let sessions = hub.registry.snapshot();
        let message = message.into();
        Ok(self.melody.fan_out(&message, |queue| {
            sessions.iter().filter(|s| (self.filter)(s)).for_each(queue);
        }))
    }
}

impl<F> std::fmt::Debug for Filtered<'_, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filtered").finish_non_exhaustive()
    }
}

/// A list of session handles: from [`Melody::each`]. Handles do not travel, so this never
/// leaves the node.
#[must_use = "nothing is sent until `send`"]
pub struct Each<'a, I> {
    melody: &'a Melody,
    sessions: I,
}

impl<'a, 's, I: IntoIterator<Item = &'s Session>> Each<'a, I> {
    pub(crate) fn new(melody: &'a Melody, sessions: I) -> Self {
        Self { melody, sessions }
    }

    /// Queues the message on each session of the list. Unlike Go melody's
    /// `BroadcastMultiple`, a closed or full session does not stop the others from receiving
    /// it.
    ///
    /// # Errors
    ///
    /// [`Closed`] when the hub is closed.
    pub fn send(self, message: impl Into<Message>) -> Result<usize, Closed> {
        if self.melody.hub.is_closed() {
            return Err(Closed);
        }
        let message = message.into();
        Ok(self
            .melody
            .fan_out(&message, |queue| self.sessions.into_iter().for_each(queue)))
    }
}

impl<I> std::fmt::Debug for Each<'_, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Each").finish_non_exhaustive()
    }
}
