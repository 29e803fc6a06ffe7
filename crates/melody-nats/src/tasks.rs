//! The driver's two tasks, started by [`Driver::start`](melody::cluster::Driver::start):
//! `receive` reads the node's one subscription (frames, presence requests, nodes joining and
//! leaving); `watch` turns the client's connection events into reports to the cluster.
//!
//! Both end when the driver stops or its last handle goes (they are aborted), when the
//! connection is gone for good, or at their next message once the hub no longer exists.

use std::sync::Arc;

use async_nats::{Client, Event, Subscriber};
use futures_util::StreamExt;
use melody::cluster::Link;
use tokio::sync::mpsc;

use crate::{
    Error,
    driver::Shared,
    subjects::{Kind, node_bytes, parse_node},
};

/// Reads the one subscription `p.>` in order: frames go to the cluster (which decodes them),
/// presence requests are answered with this node's snapshot, `hello`, `here` and `bye` keep the
/// set of known nodes.
pub(crate) async fn receive(
    client: Client,
    shared: Arc<Shared>,
    link: Link,
    mut subscriber: Subscriber,
) {
    while let Some(message) = subscriber.next().await {
        if !link.is_attached() {
            // The hub is gone: answer nothing more (not even an empty presence).
            break;
        }
        match shared.subjects.kind(&message.subject) {
            Kind::Frame => {
                link.receive(&message.payload);
            }
            Kind::Presence => {
                let Some(reply) = message.reply else { continue };
                let snapshot = link.local_presence().encode();
                if let Err(error) = client.publish(reply, snapshot).await {
                    link.error(&Error::Publish(error));
                }
            }
            Kind::Hello => {
                if let Some(node) = parse_node(&message.payload) {
                    shared.known.insert(node);
                    let here = shared.subjects.here.clone();
                    if let Err(error) = client.publish(here, node_bytes(link.node())).await {
                        link.error(&Error::Publish(error));
                    }
                }
            }
            Kind::Here => {
                if let Some(node) = parse_node(&message.payload) {
                    shared.known.insert(node);
                }
            }
            Kind::Bye => {
                if let Some(node) = parse_node(&message.payload) {
                    shared.known.remove(node);
                }
            }
            Kind::Unknown => {
                tracing::debug!(subject = %message.subject, "NATS message on an unknown subject");
            }
        }
    }
}

/// Turns the client's connection events into the cluster's reports: a lost connection is an
/// error (once per outage, not once per failed attempt), a connection made again is a
/// reconnect, followed by a fresh `hello`.
pub(crate) async fn watch(
    client: Client,
    shared: Arc<Shared>,
    link: Link,
    mut events: mpsc::UnboundedReceiver<Event>,
) {
    // Whether the client has been connected since it started, and whether it is now.
    let (mut ever, mut connected) = (false, false);
    // One report per outage, not one per failed reconnect attempt.
    let mut reported = false;
    while let Some(event) = events.recv().await {
        if !link.is_attached() {
            break;
        }
        match event {
            Event::Connected => {
                connected = true;
                reported = false;
                if std::mem::replace(&mut ever, true) {
                    link.reconnected();
                    // Other nodes may have forgotten this one while it was away.
                    let hello = shared.subjects.hello.clone();
                    let _ = client.publish(hello, node_bytes(link.node())).await;
                }
            }
            Event::Disconnected => {
                connected = false;
                reported = true;
                shared.counters.disconnected();
                link.error(&Error::ConnectionLost);
            }
            Event::ClientError(error) if !connected => {
                if std::mem::replace(&mut reported, true) {
                    tracing::debug!(node = %link.node(), %error, "NATS reconnect attempt failed");
                } else {
                    link.error(&Error::Event(error.to_string()));
                }
            }
            Event::LameDuckMode => {
                tracing::info!(node = %link.node(), "NATS server entering lame duck mode");
            }
            Event::Draining | Event::Closed => {}
            other => link.error(&Error::Event(other.to_string())),
        }
    }
}
