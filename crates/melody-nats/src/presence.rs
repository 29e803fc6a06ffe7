//! Presence by request/reply: [`gather`] asks every node on `p.presence` and waits for the
//! nodes it knows ([`Known`]) or the presence timeout, whichever comes first.

use std::{collections::BTreeSet, sync::atomic::Ordering::Relaxed};

use async_nats::{Client, Message, connection::State};
use futures_util::StreamExt;
use melody::cluster::{NodeId, NodePresence};
use tokio::{sync::watch, time::Instant};

use crate::{Error, driver::Shared, subjects::node_bytes};

/// The other nodes believed alive: a presence query stops waiting once all of them answered.
/// Learned from `hello`, `here` and presence answers; forgotten on `bye` (which ends the wait of
/// a query under way) and when a node does not answer a query in time.
#[derive(Debug)]
pub(crate) struct Known(watch::Sender<BTreeSet<NodeId>>);

impl Default for Known {
    fn default() -> Self {
        Self(watch::Sender::new(BTreeSet::new()))
    }
}

impl Known {
    pub(crate) fn insert(&self, node: NodeId) {
        self.0.send_if_modified(|known| known.insert(node));
    }

    pub(crate) fn remove(&self, node: NodeId) {
        self.0.send_if_modified(|known| known.remove(&node));
    }

    /// After a query: whoever did not answer in time is taken for gone, whoever answered for
    /// alive.
    fn update(&self, asked: &BTreeSet<NodeId>, answered: &BTreeSet<NodeId>) {
        self.0.send_if_modified(|known| {
            let before = known.clone();
            known.retain(|node| answered.contains(node) || !asked.contains(node));
            known.extend(answered);
            *known != before
        });
    }
}

/// Whether a query has heard every node it asked that is still known (a node that said goodbye
/// meanwhile is not waited for). With no node known when it asked, it waits the whole timeout:
/// a node may have joined unannounced.
fn complete(
    asked: &BTreeSet<NodeId>,
    known: &BTreeSet<NodeId>,
    answered: &BTreeSet<NodeId>,
) -> bool {
    !asked.is_empty()
        && asked
            .iter()
            .all(|node| answered.contains(node) || !known.contains(node))
}

/// One presence query: every node's snapshot, this node's taken locally, sorted by node.
///
/// # Errors
///
/// [`Error::NotStarted`] before the driver is attached, [`Error::Stopped`] after it stopped,
/// [`Error::Disconnected`] during an outage, [`Error::Subscribe`] or [`Error::Publish`] when
/// the client refuses the query.
pub(crate) async fn gather(client: &Client, shared: &Shared) -> Result<Vec<NodePresence>, Error> {
    let link = shared.link.get().ok_or(Error::NotStarted)?;
    if shared.stopped.load(Relaxed) {
        return Err(Error::Stopped);
    }
    if client.connection_state() != State::Connected {
        return Err(Error::Disconnected);
    }
    let deadline = Instant::now() + shared.presence_timeout;
    let mut known = shared.known.0.subscribe();
    let asked = known.borrow_and_update().clone();
    let mut nodes = vec![link.local_presence()];
    let reply = client.new_inbox();
    let mut replies = client.subscribe(reply.clone()).await?;
    client
        .publish_with_reply(
            shared.subjects.presence.clone(),
            reply,
            node_bytes(link.node()),
        )
        .await?;
    let mut answered = BTreeSet::new();
    let snapshot = |message: Message| {
        NodePresence::decode(&message.payload)
            .ok()
            .filter(|snapshot| snapshot.node != link.node())
    };
    while !complete(&asked, &known.borrow_and_update(), &answered) {
        tokio::select! {
            reply = tokio::time::timeout_at(deadline, replies.next()) => {
                let Ok(Some(message)) = reply else { break };
                if let Some(snapshot) = snapshot(message)
                    && answered.insert(snapshot.node)
                {
                    nodes.push(snapshot);
                }
            }
            // A node left (or joined): look again.
            Ok(()) = known.changed() => {}
        }
    }
    if !asked.is_empty() && !complete(&asked, &known.borrow(), &answered) {
        shared.counters.presence_timed_out();
    }
    shared.known.update(&asked, &answered);
    if Instant::now() < deadline {
        // Answered early: a node that answers late (slow, or unknown) is still learned, so
        // that the next query waits for it.
        let known = shared.known.0.clone();
        let node = link.node();
        tokio::spawn(async move {
            while let Ok(Some(message)) = tokio::time::timeout_at(deadline, replies.next()).await {
                if let Ok(snapshot) = NodePresence::decode(&message.payload)
                    && snapshot.node != node
                {
                    known.send_if_modified(|known| known.insert(snapshot.node));
                }
            }
        });
    }
    nodes.sort_by_key(|node| node.node);
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_waits_for_the_known_nodes_it_asked() {
        let set = |ids: &[u64]| ids.iter().map(|&id| NodeId(id)).collect::<BTreeSet<_>>();
        // Nobody known: wait the whole timeout.
        assert!(!complete(&set(&[]), &set(&[]), &set(&[1])));
        assert!(!complete(&set(&[1, 2]), &set(&[1, 2]), &set(&[1])));
        assert!(complete(&set(&[1, 2]), &set(&[1, 2]), &set(&[1, 2])));
        // Node 2 said goodbye meanwhile: not waited for.
        assert!(complete(&set(&[1, 2]), &set(&[1]), &set(&[1])));
        // A node learned meanwhile was not asked for: not waited for either.
        assert!(complete(&set(&[1]), &set(&[1, 3]), &set(&[1])));

        let known = Known::default();
        known.insert(NodeId(1));
        known.insert(NodeId(2));
        known.update(&set(&[1, 2]), &set(&[1, 3]));
        assert_eq!(*known.0.borrow(), set(&[1, 3]), "2 is gone, 3 is learned");
        known.remove(NodeId(1));
        assert_eq!(*known.0.borrow(), set(&[3]));
    }
}
