//! `leave` events for the members of a node that vanished from the cluster without saying
//! goodbye (a crash, a network split): each node watches the cluster's presence and, when a
//! node is gone, tells its own sessions of the presence topics that the vanished node's members
//! left.
//!
//! A node that stops cleanly disconnects its sessions first, and their `leave` events reach the
//! other nodes as usual; a delivery sink sees those (and the `join`s, with the members' info)
//! and keeps [`Remote`] up to date, and a vanished
//! node's leaves are only sent one watch later, so that what is in flight arrives first and
//! nobody gets a `leave` twice.

use std::{
    sync::{Arc, Weak},
    time::{Duration, Instant},
};

use serde_json::Value;

use super::{
    remote::{ByNode, Remote},
    state::{LiveState, announce},
    wire::{self, Member},
};
use crate::{
    Melody,
    cluster::Cluster,
    core::hub::WeakMelody,
    plugin::{Delivery, Origin, Reach, Sink},
};

/// Keeps [`Remote`] up to date with the `join` and `leave` events other nodes send.
pub(crate) struct PeerPresence {
    pub(crate) remote: Arc<Remote>,
    pub(crate) state: Weak<LiveState>,
}

impl Sink for PeerPresence {
    fn deliver(&self, delivery: &Delivery<'_>) -> Reach {
        if delivery.origin() != Origin::Peer {
            return Reach::default();
        }
        let (Some(topic), Some(text)) = (delivery.target().topic(), delivery.message().as_str())
        else {
            return Reach::default();
        };
        let joining = text.starts_with("{\"type\":\"join\"");
        if !joining && !text.starts_with("{\"type\":\"leave\"") {
            return Reach::default();
        }
        let presence = self
            .state
            .upgrade()
            .is_some_and(|state| state.settings.features(topic).presence);
        match (presence, event_member(text)) {
            (true, Some(member)) if joining => self.remote.joined(topic, member),
            (true, Some(member)) => self.remote.left(topic, member.id),
            _ => {}
        }
        Reach::default()
    }
}

/// The member of a `join` or `leave` event.
fn event_member(text: &str) -> Option<Member> {
    let mut event: serde_json::Value = serde_json::from_str(text).ok()?;
    let member = event["data"]["member"].take();
    Some(Member {
        id: member["id"].as_str()?.parse().ok()?,
        info: member.get("info").cloned().unwrap_or_default(),
    })
}

/// Watches the cluster's presence every `every` while the hub lives.
pub(crate) async fn watch(
    melody: WeakMelody,
    state: Weak<LiveState>,
    remote: Arc<Remote>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let started = Instant::now();
        let (Some(melody), Some(state)) = (melody.upgrade(), state.upgrade()) else {
            return;
        };
        let Some(cluster) = Cluster::of(&melody) else {
            continue;
        };
        // A presence that cannot be read (a broker outage) tells nothing: try again later.
        let Ok(presence) = cluster.presence().await else {
            continue;
        };
        let here = cluster.node();
        let seen: ByNode = presence
            .into_iter()
            .filter(|node| node.node != here)
            .map(|node| {
                let topics = node
                    .topics
                    .into_iter()
                    .filter(|(topic, _)| state.settings.features(topic).presence)
                    .map(|(topic, ids)| (Arc::from(topic), ids.into_iter().collect()))
                    .collect();
                (node.node, topics)
            })
            .collect();
        let gone = remote.update(seen, started);
        for (topic, ids) in gone {
            for id in ids {
                let member = Member {
                    id,
                    info: Value::Null,
                };
                let event = wire::presence_event("leave", &topic, &member);
                announce_here(&melody, &topic, event);
            }
        }
    }
}

/// To this node's sessions of `topic` only: every node tells its own.
fn announce_here(melody: &Melody, topic: &str, event: crate::Message) {
    announce(melody, topic, None, event, true);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SessionId;

    #[test]
    fn events_name_their_member() {
        let leave = event_member(r#"{"type":"leave","data":{"topic":"t","member":{"id":"42"}}}"#);
        assert_eq!(
            leave.map(|m| (m.id, m.info)),
            Some((SessionId::from(42), Value::Null))
        );
        let join = r#"{"type":"join","data":{"topic":"t","member":{"id":"7","info":{"n":1}}}}"#;
        assert_eq!(event_member(join).unwrap().info["n"], 1);
        assert!(event_member(r#"{"type":"join","data":{"member":{"id":7}}}"#).is_none());
    }
}
