//! The other nodes' members of presence topics, as this node knows them: the cluster's presence
//! at each watch (ids, by node), and between watches the `join` and `leave` events the other
//! nodes send (with the members' info). Replies list them beside this node's own members, and
//! a node that vanished has its members announced gone (`nodes.rs`).
//!
//! Only leaf locks: nothing here calls out while holding one, so these may be taken under a
//! topic's lock.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Instant,
};

use serde_json::Value;

use super::{state::lock, wire::Member};
use crate::{SessionId, cluster::NodeId};

/// Members of presence topics by node, as a presence watch saw them.
pub(crate) type ByNode = HashMap<NodeId, HashMap<Arc<str>, HashSet<SessionId>>>;

/// What this node knows of the other nodes' members.
#[derive(Default)]
pub(crate) struct Remote {
    by_node: Mutex<ByNode>,
    /// Nodes seen gone once: their leaves go out at the next watch if they are still gone.
    vanished: Mutex<HashSet<NodeId>>,
    /// Members the other nodes announced (`join`), with their info: kept until their `leave`,
    /// or until two watches that started after the announcement no longer find them (then
    /// they are announced gone here: their node vanished, or their `leave` was lost).
    joined: Mutex<HashMap<Arc<str>, HashMap<SessionId, Joined>>>,
    /// When the previous watch started.
    watched: Mutex<Option<Instant>>,
}

struct Joined {
    info: Value,
    at: Instant,
    /// The last watch did not find it.
    missed: bool,
}

impl Remote {
    /// Another node announced `member` in `topic`.
    pub(crate) fn joined(&self, topic: &str, member: Member) {
        let joined = Joined {
            info: member.info,
            at: Instant::now(),
            missed: false,
        };
        lock(&self.joined)
            .entry(Arc::from(topic))
            .or_default()
            .insert(member.id, joined);
    }

    /// Another node announced that `id` left `topic`.
    pub(crate) fn left(&self, topic: &str, id: SessionId) {
        for topics in lock(&self.by_node).values_mut() {
            if let Some(members) = topics.get_mut(topic) {
                members.remove(&id);
            }
        }
        let mut joined = lock(&self.joined);
        if let Some(members) = joined.get_mut(topic) {
            members.remove(&id);
            if members.is_empty() {
                joined.remove(topic);
            }
        }
    }

    /// The other nodes' members of `topic`, with their info where an announcement told it.
    pub(crate) fn members(&self, topic: &str) -> Vec<Member> {
        let joined = lock(&self.joined);
        let announced = joined.get(topic);
        let mut members: Vec<Member> = announced
            .into_iter()
            .flatten()
            .map(|(id, joined)| Member {
                id: *id,
                info: joined.info.clone(),
            })
            .collect();
        let by_node = lock(&self.by_node);
        let watched = by_node
            .values()
            .filter_map(|topics| topics.get(topic))
            .flatten();
        for id in watched {
            if !announced.is_some_and(|announced| announced.contains_key(id)) {
                members.push(Member {
                    id: *id,
                    info: Value::Null,
                });
            }
        }
        members.sort_unstable_by_key(|member| member.id);
        members.dedup_by_key(|member| member.id);
        members
    }

    /// Takes in the presence `seen` by a watch that started at `started`; the members to
    /// announce gone: those of nodes that were already missing at the previous watch and still
    /// are, and those announced before the previous watch that neither watch found (none that
    /// left on their own meanwhile, none twice).
    pub(crate) fn update(
        &self,
        seen: ByNode,
        started: Instant,
    ) -> Vec<(Arc<str>, HashSet<SessionId>)> {
        let mut by_node = lock(&self.by_node);
        let mut vanished = lock(&self.vanished);
        let mut gone: Vec<(Arc<str>, HashSet<SessionId>)> = Vec::new();
        let missing: Vec<NodeId> = by_node
            .keys()
            .filter(|node| !seen.contains_key(node))
            .copied()
            .collect();
        for node in missing {
            if vanished.remove(&node) {
                if let Some(topics) = by_node.remove(&node) {
                    gone.extend(topics.into_iter().filter(|(_, ids)| !ids.is_empty()));
                }
            } else {
                vanished.insert(node);
            }
        }
        vanished.retain(|node| !seen.contains_key(node));
        // Announced before the previous watch started and found by neither watch: gone.
        let previous = lock(&self.watched).replace(started);
        let mut joined = lock(&self.joined);
        for (topic, ids) in &gone {
            if let Some(members) = joined.get_mut(topic) {
                members.retain(|id, _| !ids.contains(id));
            }
        }
        for (topic, members) in joined.iter_mut() {
            let mut lost = HashSet::new();
            members.retain(|id, joined| {
                let found = seen.values().any(|topics| {
                    topics
                        .get(topic)
                        .is_some_and(|members| members.contains(id))
                });
                if found || previous.is_none_or(|previous| joined.at >= previous) {
                    joined.missed = false;
                    return true;
                }
                if !joined.missed {
                    joined.missed = true;
                    return true;
                }
                lost.insert(*id);
                false
            });
            if !lost.is_empty() {
                gone.push((topic.clone(), lost));
            }
        }
        joined.retain(|_, members| !members.is_empty());
        for (node, topics) in seen {
            by_node.insert(node, topics);
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(node: u64, topic: &str, ids: &[u64]) -> ByNode {
        let ids = ids.iter().map(|&id| SessionId::from(id)).collect();
        HashMap::from([(NodeId(node), HashMap::from([(Arc::from(topic), ids)]))])
    }

    fn member(id: u64, name: &str) -> Member {
        Member {
            id: SessionId::from(id),
            info: serde_json::json!({ "name": name }),
        }
    }

    fn ids(members: &[Member]) -> Vec<u64> {
        members.iter().map(|m| m.id.as_u64()).collect()
    }

    #[test]
    fn a_node_is_announced_gone_after_two_watches_without_it() {
        let remote = Remote::default();
        assert!(
            remote
                .update(seen(1, "room", &[7, 8]), Instant::now())
                .is_empty()
        );
        // Missing once: not yet (its own leaves may still be on their way).
        assert!(remote.update(ByNode::new(), Instant::now()).is_empty());
        // A leave seen meanwhile strikes 8 off.
        remote.left("room", SessionId::from(8));
        let gone = remote.update(ByNode::new(), Instant::now());
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].1, HashSet::from([SessionId::from(7)]));
        // Once only.
        assert!(remote.update(ByNode::new(), Instant::now()).is_empty());
    }

    #[test]
    fn a_member_of_a_vanished_node_is_announced_gone_once() {
        let remote = Remote::default();
        remote.update(seen(1, "room", &[7]), Instant::now());
        remote.joined("room", member(7, "bob"));
        remote.joined("room", member(8, "eve"));
        let start = Instant::now();
        // Node 1 vanishes: first missing, then gone with the member the watch saw; the one
        // only announced, two watches after the announcement. Each once.
        assert!(remote.update(ByNode::new(), start).is_empty());
        let gone = remote.update(ByNode::new(), Instant::now());
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].1, HashSet::from([SessionId::from(7)]));
        let gone = remote.update(ByNode::new(), Instant::now());
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].1, HashSet::from([SessionId::from(8)]));
        assert!(remote.update(ByNode::new(), Instant::now()).is_empty());
        assert!(remote.members("room").is_empty());
    }

    #[test]
    fn a_node_back_in_time_is_not_announced() {
        let remote = Remote::default();
        remote.update(seen(1, "room", &[7]), Instant::now());
        assert!(remote.update(ByNode::new(), Instant::now()).is_empty());
        assert!(
            remote
                .update(seen(1, "room", &[7]), Instant::now())
                .is_empty()
        );
        assert!(remote.update(ByNode::new(), Instant::now()).is_empty());
    }

    #[test]
    fn members_come_from_announcements_and_watches() {
        let remote = Remote::default();
        remote.update(seen(1, "room", &[7]), Instant::now());
        remote.joined("room", member(9, "ada"));
        let members = remote.members("room");
        assert_eq!(ids(&members), [7, 9]);
        assert_eq!(members[0].info, Value::Null, "known only from the watch");
        assert_eq!(members[1].info["name"], "ada");
        // An announcement after the watch started is kept though the watch did not see it.
        let first = Instant::now();
        remote.joined("room", member(7, "bob"));
        remote.update(seen(1, "room", &[7]), first);
        assert_eq!(remote.members("room")[0].info["name"], "bob");
        assert_eq!(ids(&remote.members("room")), [7, 9]);
        // Two later watches without 9 (its leave was lost): gone, and announced so.
        assert!(
            remote
                .update(seen(1, "room", &[7]), Instant::now())
                .is_empty()
        );
        assert_eq!(ids(&remote.members("room")), [7, 9]);
        let gone = remote.update(seen(1, "room", &[7]), Instant::now());
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].1, HashSet::from([SessionId::from(9)]));
        assert_eq!(ids(&remote.members("room")), [7]);
        remote.left("room", SessionId::from(7));
        assert!(remote.members("room").is_empty());
        assert!(remote.members("other").is_empty());
    }
}
