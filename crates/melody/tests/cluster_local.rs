//! The cluster conformance suite (`tests/conformance/`) against the in-process `LocalBus`, and
//! what only an in-process driver can show: a driver whose broker is always down.

mod common;
#[macro_use]
mod conformance;

use common::*;
use melody::{
    Melody, Message, SessionId,
    cluster::{Cluster, Driver, DriverFuture, Frame, Link, LocalBus, NodeId, Outgoing},
    fanout::Target,
};

/// One bus per test: every node of the test shares it.
struct Local(LocalBus);

impl conformance::Fixture for Local {
    type Driver = LocalBus;

    async fn driver(&self) -> LocalBus {
        self.0.clone()
    }
}

conformance_suite!(async { Some(Local(LocalBus::new())) });

#[test]
fn frames_round_trip_and_garbage_is_refused() {
    let frame = Frame {
        origin: NodeId(1),
        target: Target::TopicExcept("t".into(), SessionId::from(42)),
        message: Message::binary(vec![0u8, 255]),
    };
    assert_eq!(Frame::decode(&frame.encode()).unwrap(), frame);
    for bad in [
        &b""[..],
        b"\x02",
        b"\x01\0\0\0\0\0\0\0\0\x09",
        b"\x01\0\0\0\0\0\0\0\0\x02\0\0\0\xff",
    ] {
        assert!(Frame::decode(bad).is_err());
    }
}

/// A driver whose broker is always down: every batch fails.
struct Down;

impl Driver for Down {
    fn start(&self, _link: Link) {}

    fn publish<'a>(&'a self, _batch: &'a [Outgoing]) -> DriverFuture<'a, ()> {
        Box::pin(async {
            Err(std::io::Error::new(std::io::ErrorKind::NotConnected, "broker down").into())
        })
    }
}

#[tokio::test]
async fn driver_failures_are_counted_and_reach_the_handler() {
    let melody = Melody::new();
    let cluster = Cluster::attach(&melody, Down).unwrap();
    assert!(Cluster::attach(&melody, LocalBus::new()).is_err(), "once");
    let (events, mut log) = events();
    cluster.on_error(move |error| events.push(error.to_string()));
    let addr = spawn_app(&melody).await;
    let mut client = connect(addr).await;
    eventually(|| melody.all().len() == 1).await;

    // Local delivery goes on; the lost remote copy is reported.
    melody.all().send("local still works").unwrap();
    assert_eq!(recv_text(&mut client).await, "local still works");
    assert_eq!(log.next().await, "broker down");
    assert_eq!(cluster.stats().errors, 1);
    assert_eq!(cluster.stats().dropped, 1);
}
