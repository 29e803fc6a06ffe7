//! `leave` events for the members of a node that vanished from the cluster without saying
//! goodbye (a crash, a network split): each node watches the cluster's presence and, when a
//! node is gone, tells its own sessions of the presence topics that the vanished node's members
//! left.
//!
//! A node that stops cleanly disconnects its sessions first, and their `leave` events reach the
//! other nodes as usual; a delivery sink sees those and strikes the members off, and a vanished
//! node's leaves are only sent one watch later, so that what is in flight arrives first and
//! nobody gets a `leave` twice.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, Weak},
    time::Duration,
};

use super::{
    state::{LiveState, announce, lock},
    wire::{self, Member},
};
use crate::{
    Melody, SessionId,
    cluster::{Cluster, NodeId},
    core::hub::WeakMelody,
    plugin::{Delivery, Origin, Reach, Sink},
};

/// The other nodes' members of presence topics, as last seen.
type Remote = HashMap<NodeId, HashMap<Arc<str>, HashSet<SessionId>>>;

/// What the watch shares with the sink that strikes off members whose `leave` arrived.
#[derive(Default)]
pub(crate) struct Watch {
    remote: Mutex<Remote>,
    /// Nodes seen gone once: their leaves go out at the next watch if they are still gone.
    vanished: Mutex<HashSet<NodeId>>,
}

impl Watch {
    /// The other nodes' members of `topic`, as last seen.
    pub(crate) fn members(&self, topic: &str) -> Vec<SessionId> {
        lock(&self.remote)
            .values()
            .filter_map(|topics| topics.get(topic))
            .flatten()
            .copied()
            .collect()
    }
}

/// Strikes off the members whose `leave` came from another node.
pub(crate) struct LeavesSeen {
    pub(crate) watch: Arc<Watch>,
    pub(crate) state: Weak<LiveState>,
}

impl Sink for LeavesSeen {
    fn deliver(&self, delivery: &Delivery<'_>) -> Reach {
        if delivery.origin() != Origin::Peer {
            return Reach::default();
        }
        let (Some(topic), Some(text)) = (delivery.target().topic(), delivery.message().as_str())
        else {
            return Reach::default();
        };
        if !text.starts_with("{\"type\":\"leave\"") {
            return Reach::default();
        }
        let presence = self
            .state
            .upgrade()
            .is_some_and(|state| state.settings.features(topic).presence);
        if let (true, Some(id)) = (presence, leaving_member(text)) {
            for topics in lock(&self.watch.remote).values_mut() {
                if let Some(members) = topics.get_mut(topic) {
                    members.remove(&id);
                }
            }
        }
        Reach::default()
    }
}

/// The member id of a `leave` event.
fn leaving_member(text: &str) -> Option<SessionId> {
    let event: serde_json::Value = serde_json::from_str(text).ok()?;
    event["data"]["member"]["id"].as_str()?.parse().ok()
}

/// Watches the cluster's presence every `every` while the hub lives.
pub(crate) async fn watch(
    melody: WeakMelody,
    state: Weak<LiveState>,
    watch: Arc<Watch>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
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
        let seen: Remote = presence
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
        let gone = update(&watch, seen);
        for (topic, ids) in gone {
            for id in ids {
                let member = Member {
                    id,
                    info: serde_json::Value::Null,
                };
                let event = wire::presence_event("leave", &topic, &member);
                announce_here(&melody, &topic, event);
            }
        }
    }
}

/// Takes in a fresh presence; the members to announce gone: those of nodes that were already
/// missing at the previous watch and still are (and did not leave on their own meanwhile).
fn update(watch: &Watch, seen: Remote) -> Vec<(Arc<str>, HashSet<SessionId>)> {
    let mut remote = lock(&watch.remote);
    let mut vanished = lock(&watch.vanished);
    let mut gone = Vec::new();
    let missing: Vec<NodeId> = remote
        .keys()
        .filter(|node| !seen.contains_key(node))
        .copied()
        .collect();
    for node in missing {
        if vanished.remove(&node) {
            if let Some(topics) = remote.remove(&node) {
                gone.extend(topics.into_iter().filter(|(_, ids)| !ids.is_empty()));
            }
        } else {
            vanished.insert(node);
        }
    }
    vanished.retain(|node| !seen.contains_key(node));
    for (node, topics) in seen {
        remote.insert(node, topics);
    }
    gone
}

/// To this node's sessions of `topic` only: every node tells its own.
fn announce_here(melody: &Melody, topic: &str, event: crate::Message) {
    announce(melody, topic, None, event, true);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(node: u64, topic: &str, ids: &[u64]) -> Remote {
        let ids = ids.iter().map(|&id| SessionId::from(id)).collect();
        HashMap::from([(NodeId(node), HashMap::from([(Arc::from(topic), ids)]))])
    }

    #[test]
    fn a_node_is_announced_gone_after_two_watches_without_it() {
        let watch = Watch::default();
        assert!(update(&watch, remote(1, "room", &[7, 8])).is_empty());
        // Missing once: not yet (its own leaves may still be on their way).
        assert!(update(&watch, Remote::new()).is_empty());
        // A leave seen meanwhile strikes 8 off.
        for topics in lock(&watch.remote).values_mut() {
            topics.get_mut("room").unwrap().remove(&SessionId::from(8));
        }
        let gone = update(&watch, Remote::new());
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].1, HashSet::from([SessionId::from(7)]));
        // Once only.
        assert!(update(&watch, Remote::new()).is_empty());
    }

    #[test]
    fn a_node_back_in_time_is_not_announced() {
        let watch = Watch::default();
        update(&watch, remote(1, "room", &[7]));
        assert!(update(&watch, Remote::new()).is_empty());
        assert!(update(&watch, remote(1, "room", &[7])).is_empty());
        assert!(update(&watch, Remote::new()).is_empty());
        assert!(
            leaving_member(r#"{"type":"leave","data":{"topic":"t","member":{"id":"42"}}}"#)
                == Some(SessionId::from(42))
        );
    }
}
