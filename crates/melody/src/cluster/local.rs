//! [`LocalBus`]: a driver that joins the hubs of one process, for tests, examples and several
//! hubs in one binary.

use std::sync::{Arc, Mutex};

use super::{Driver, DriverFuture, Link, NodePresence, Outgoing};

/// Connects the hubs of one process: what one sends, the others deliver, at once and in order.
/// It keeps presence too (every node's, read directly).
///
/// ```
/// use melody::{Melody, cluster::{Cluster, LocalBus}};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let bus = LocalBus::new();
/// let (a, b) = (Melody::new(), Melody::new());
/// Cluster::attach(&a, bus.clone()).unwrap();
/// Cluster::attach(&b, bus).unwrap();
/// // a.all().send(..) now reaches b's sessions too.
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct LocalBus {
    links: Arc<Mutex<Vec<Link>>>,
}

impl LocalBus {
    /// A new, empty bus.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The links of the hubs still attached.
    fn links(&self) -> Vec<Link> {
        let mut links = self
            .links
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        links.retain(Link::is_attached);
        links.clone()
    }
}

impl Driver for LocalBus {
    fn start(&self, link: Link) {
        self.links
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(link);
    }

    fn publish<'a>(&'a self, batch: &'a [Outgoing]) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            let links = self.links();
            for outgoing in batch {
                for link in &links {
                    // Each link skips its own node's frames.
                    link.receive(&outgoing.frame);
                }
            }
            Ok(())
        })
    }

    fn presence(&self) -> Option<DriverFuture<'_, Vec<NodePresence>>> {
        let snapshots = self.links().iter().map(Link::local_presence).collect();
        Some(Box::pin(std::future::ready(Ok(snapshots))))
    }
}
