//! Requests with exactly one reply (docs/PROTOCOL.md): a client's requests to the router's
//! handlers, and the server's requests to a client, with real clients.

mod common;

use std::{net::SocketAddr, time::Duration};

use common::*;
use melody::{
    Error, Melody, Session,
    router::{Ask, AskError, BoxError, Envelope, Reject, Router, RouterError},
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

struct Hub {
    addr: SocketAddr,
    sessions: mpsc::UnboundedReceiver<Session>,
    log: EventLog,
}

async fn hub(router: Router) -> Hub {
    let melody = Melody::new();
    let (tx, sessions) = mpsc::unbounded_channel();
    melody.on_connect(move |s| {
        let _ = tx.send(s.clone());
    });
    let (events, log) = events();
    melody.on_error(move |_, error| {
        let failed = match error {
            Error::Handler(source) => source.downcast_ref::<RouterError>(),
            _ => None,
        };
        events.push(match failed {
            Some(RouterError::Failed(message)) => format!("failed: {message}"),
            Some(RouterError::Malformed(_)) => "malformed".to_owned(),
            _ => error.to_string(),
        });
    });
    melody.plug(router);
    let addr = spawn_app(&melody).await;
    Hub {
        addr,
        sessions,
        log,
    }
}

impl Hub {
    async fn client(&mut self) -> (Client, Session) {
        let client = connect(self.addr).await;
        let session = tokio::time::timeout(WAIT, self.sessions.recv())
            .await
            .expect("no session in time")
            .unwrap();
        (client, session)
    }
}

async fn send_json(client: &mut Client, value: Value) {
    send_text(client, &value.to_string()).await;
}

async fn recv_json(client: &mut Client) -> Value {
    serde_json::from_str(&recv_text(client).await).unwrap()
}

fn app() -> Router {
    Router::new()
        .on_request("add", |_, (a, b): (i64, i64)| async move { Ok(a + b) })
        .on_request("limited", |_, n: u32| async move {
            if n > 10 {
                return Err(Reject::new("limit").message("at most 10").into());
            }
            Ok(n)
        })
        .on_request("broken", |_, _: ()| async move {
            Err::<(), BoxError>("database password is hunter2".into())
        })
        .on("note", |_, _| async move { Ok(()) })
        .on("early", |session, envelope| async move {
            // Answers before sending anything else: the reply comes first.
            envelope.reply(&session, "first")?;
            session.send(Envelope::encode("after", ())?)?;
            assert!(envelope.reply(&session, "again").is_err());
            Ok(())
        })
        .allow_direct("dm")
}

#[tokio::test]
async fn every_request_gets_exactly_one_reply() {
    let mut hub = hub(app()).await;
    let (mut c, _) = hub.client().await;
    send_json(&mut c, json!({"type": "add", "id": 1, "data": [2, 3]})).await;
    assert_eq!(
        recv_json(&mut c).await,
        json!({"type": "reply", "id": 1, "data": 5})
    );
    // A handler without a value acknowledges with null.
    send_json(&mut c, json!({"type": "note", "id": 2})).await;
    assert_eq!(
        recv_json(&mut c).await,
        json!({"type": "reply", "id": 2, "data": null})
    );
    // The same without an id: nothing comes back.
    send_json(&mut c, json!({"type": "add", "data": [1, 1]})).await;
    send_json(&mut c, json!({"type": "early", "id": 3})).await;
    assert_eq!(
        recv_json(&mut c).await,
        json!({"type": "reply", "id": 3, "data": "first"})
    );
    assert_eq!(
        recv_json(&mut c).await,
        json!({"type": "after", "data": null})
    );
    assert_silent(&mut c, Duration::from_millis(200)).await;
    assert!(hub.log.drain().is_empty());
}

#[tokio::test]
async fn errors_go_back_as_error_replies_without_internal_details() {
    let mut hub = hub(app()).await;
    let (mut c, _) = hub.client().await;
    send_json(&mut c, json!({"type": "limited", "id": 4, "data": 11})).await;
    assert_eq!(
        recv_json(&mut c).await,
        json!({"type": "error", "id": 4, "data": {"reason": "limit", "message": "at most 10"}})
    );
    send_json(&mut c, json!({"type": "broken", "id": 5})).await;
    let reply = recv_json(&mut c).await;
    assert_eq!(
        reply,
        json!({"type": "error", "id": 5, "data": {"reason": "internal error"}})
    );
    // The details reach the server's error handler only.
    hub.log
        .wait_for("failed: database password is hunter2")
        .await;
    send_json(&mut c, json!({"type": "nope", "id": 6})).await;
    assert_eq!(
        recv_json(&mut c).await,
        json!({"type": "error", "id": 6, "data": {"reason": "unknown type", "type": "nope"}})
    );
    send_json(&mut c, json!({"type": "add", "id": 7, "data": "two"})).await;
    let reply = recv_json(&mut c).await;
    assert_eq!(reply["id"], 7);
    assert_eq!(reply["data"]["reason"], "malformed envelope");
    // Malformed text whose id can be read is answered as that request.
    send_json(&mut c, json!({"type": 5, "id": 8})).await;
    let reply = recv_json(&mut c).await;
    assert_eq!(
        (reply["type"].clone(), reply["id"].clone()),
        (json!("error"), json!(8))
    );
    // Ids out of JavaScript's exact range are malformed, not truncated.
    send_json(
        &mut c,
        json!({"type": "add", "id": 9_007_199_254_740_992_u64, "data": [1, 2]}),
    )
    .await;
    let reply = recv_json(&mut c).await;
    assert_eq!(reply["data"]["reason"], "malformed envelope");
    assert!(reply.get("id").is_none());
}

#[tokio::test]
async fn a_direct_send_is_acknowledged_to_its_sender_and_is_no_request_to_its_recipient() {
    let mut hub = hub(app()).await;
    let (mut a, _) = hub.client().await;
    let (mut b, b_session) = hub.client().await;
    let target = b_session.id().to_string();
    send_json(
        &mut a,
        json!({"type": "dm", "id": 10, "target": target, "data": "hi"}),
    )
    .await;
    let got = recv_json(&mut b).await;
    assert_eq!(got["data"], "hi");
    assert!(got.get("id").is_none(), "{got}");
    assert_eq!(
        recv_json(&mut a).await,
        json!({"type": "reply", "id": 10, "data": null})
    );
    send_json(
        &mut a,
        json!({"type": "dm", "id": 11, "target": "1", "data": "hi"}),
    )
    .await;
    assert_eq!(
        recv_json(&mut a).await,
        json!({"type": "error", "id": 11, "data": {"reason": "target not connected", "target": "1"}})
    );
    assert_silent(&mut a, Duration::from_millis(100)).await;
}

#[tokio::test]
async fn the_server_asks_a_client_and_gets_its_reply() {
    let mut hub = hub(app()).await;
    let (mut c, session) = hub.client().await;
    let asking = tokio::spawn({
        let session = session.clone();
        async move {
            session
                .ask::<String>("name?", json!({"why": "test"}), WAIT)
                .await
        }
    });
    let request = recv_json(&mut c).await;
    assert_eq!(request["type"], "name?");
    assert_eq!(request["data"], json!({"why": "test"}));
    let id = request["id"].as_u64().expect("the request has an id");
    // A reply to an id nobody asked is dropped, not mistaken for this one.
    send_json(
        &mut c,
        json!({"type": "reply", "id": id + 1000, "data": "wrong"}),
    )
    .await;
    send_json(&mut c, json!({"type": "reply", "id": id, "data": "alice"})).await;
    assert_eq!(asking.await.unwrap().unwrap(), "alice");

    let refused = tokio::spawn({
        let session = session.clone();
        async move { session.ask::<Value>("delete?", (), WAIT).await }
    });
    let id = recv_json(&mut c).await["id"].as_u64().unwrap();
    send_json(
        &mut c,
        json!({"type": "error", "id": id, "data": {"reason": "no"}}),
    )
    .await;
    match refused.await.unwrap() {
        Err(AskError::Rejected(reject)) => assert_eq!(reject.reason, "no"),
        other => panic!("{other:?}"),
    }

    let wrong_shape = tokio::spawn({
        let session = session.clone();
        async move { session.ask::<u32>("count?", (), WAIT).await }
    });
    let id = recv_json(&mut c).await["id"].as_u64().unwrap();
    send_json(&mut c, json!({"type": "reply", "id": id, "data": "many"})).await;
    assert!(matches!(
        wrong_shape.await.unwrap(),
        Err(AskError::Decode(_))
    ));
    assert!(hub.log.drain().is_empty());
}

#[tokio::test]
async fn a_request_times_out_then_its_late_reply_is_dropped() {
    // Real time: the client's socket and the timer race here, which paused time cannot model.
    let mut hub = hub(app()).await;
    let (mut c, session) = hub.client().await;
    let asking = tokio::spawn({
        let session = session.clone();
        async move {
            session
                .ask::<Value>("slow?", (), Duration::from_millis(300))
                .await
        }
    });
    let id = recv_json(&mut c).await["id"].as_u64().unwrap();
    match asking.await.unwrap() {
        Err(AskError::Timeout(after)) => assert_eq!(after, Duration::from_millis(300)),
        other => panic!("{other:?}"),
    }
    send_json(&mut c, json!({"type": "reply", "id": id, "data": 1})).await;
    // Still routed as usual afterwards; the late reply was simply dropped.
    send_json(&mut c, json!({"type": "add", "id": 1, "data": [1, 1]})).await;
    assert_eq!(recv_json(&mut c).await["data"], 2);
}

#[tokio::test]
async fn a_request_to_a_session_that_disconnects_ends_at_once() {
    let mut hub = hub(app()).await;
    let (mut c, session) = hub.client().await;
    let asking = tokio::spawn({
        let session = session.clone();
        async move {
            session
                .ask::<Value>("stay?", (), Duration::from_secs(3600))
                .await
        }
    });
    recv_json(&mut c).await;
    drop(c);
    let outcome = tokio::time::timeout(WAIT, asking).await.expect("ended");
    assert!(matches!(outcome.unwrap(), Err(AskError::Closed)));
}

#[tokio::test]
async fn a_hub_without_a_router_refuses_to_ask() {
    let melody = Melody::new();
    let (tx, mut sessions) = mpsc::unbounded_channel();
    melody.on_connect(move |s| {
        let _ = tx.send(s.clone());
    });
    let addr = spawn_app(&melody).await;
    let _client = connect(addr).await;
    let session = sessions.recv().await.unwrap();
    assert!(matches!(
        session.ask::<Value>("x", (), WAIT).await,
        Err(AskError::NoRouter)
    ));
}

#[tokio::test]
async fn a_middleware_that_rebuilds_the_envelope_still_gets_one_reply() {
    let router = app().middleware(|session, envelope, next| async move {
        // A middleware that builds a new envelope (its own copy of the data) and hands it on.
        let rebuilt = Envelope::new(envelope.kind.clone(), envelope.data.clone())?;
        next.run(session, rebuilt).await
    });
    let mut hub = hub(router).await;
    let (mut c, _) = hub.client().await;
    send_json(&mut c, json!({"type": "add", "id": 5, "data": [2, 2]})).await;
    assert_eq!(
        recv_json(&mut c).await,
        json!({"type": "reply", "id": 5, "data": 4})
    );
    send_json(&mut c, json!({"type": "early", "id": 6})).await;
    assert_eq!(recv_json(&mut c).await["id"], 6);
    assert_eq!(recv_json(&mut c).await["type"], "after");
    assert_silent(&mut c, Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_broadcast_envelope_is_no_request_to_its_recipients() {
    let router = app().on("shout", |session, envelope| async move {
        assert_eq!(envelope.id, None);
        assert_eq!(envelope.request_id(), Some(77));
        session.melody().all().send(envelope)?;
        Ok(())
    });
    let mut hub = hub(router).await;
    let (mut a, _) = hub.client().await;
    let (mut b, _) = hub.client().await;
    send_json(&mut a, json!({"type": "shout", "id": 77, "data": "hey"})).await;
    let heard = recv_json(&mut b).await;
    assert_eq!(heard["data"], "hey");
    assert!(heard.get("id").is_none(), "{heard}");
    // The sender gets the broadcast and the one reply to its request.
    let mut got = [recv_json(&mut a).await, recv_json(&mut a).await];
    got.sort_by_key(|m| m["type"].to_string());
    assert_eq!(got[0], json!({"type": "reply", "id": 77, "data": null}));
    assert!(got[1].get("id").is_none());
}

#[tokio::test]
async fn replies_carry_the_handlers_bytes_exactly() {
    let router = Router::new().on_request("big", |_, _: ()| async move { Ok(u128::MAX) });
    let mut hub = hub(router).await;
    let (mut c, _) = hub.client().await;
    send_json(&mut c, json!({"type": "big", "id": 1})).await;
    assert_eq!(
        recv_text(&mut c).await,
        r#"{"type":"reply","id":1,"data":340282366920938463463374607431768211455}"#
    );
}

#[tokio::test]
async fn asking_from_the_sessions_own_handler_fails_at_once_unless_concurrent() {
    let asking = |router: Router| {
        router.on_request("ask-back", |session, _: ()| async move {
            let answer: Result<String, AskError> = session.ask("name?", (), WAIT).await;
            Ok(match answer {
                Ok(name) => name,
                Err(AskError::InOwnHandler) => "refused at once".to_owned(),
                Err(other) => format!("{other}"),
            })
        })
    };
    let mut hub = hub(asking(Router::new())).await;
    let (mut c, _) = hub.client().await;
    send_json(&mut c, json!({"type": "ask-back", "id": 1})).await;
    assert_eq!(recv_json(&mut c).await["data"], "refused at once");

    // With concurrent handling the socket is read meanwhile: the answer arrives.
    let melody = Melody::with_config(melody::Config::default().concurrent_message_handling(true));
    melody.plug(asking(Router::new()));
    let addr = spawn_app(&melody).await;
    let mut c = connect(addr).await;
    send_json(&mut c, json!({"type": "ask-back", "id": 1})).await;
    let question = recv_json(&mut c).await;
    assert_eq!(question["type"], "name?");
    let id = question["id"].clone();
    send_json(&mut c, json!({"type": "reply", "id": id, "data": "alice"})).await;
    assert_eq!(
        recv_json(&mut c).await,
        json!({"type": "reply", "id": 1, "data": "alice"})
    );
}

#[tokio::test]
async fn asks_cut_short_leave_nothing_waiting() {
    let mut hub = hub(app()).await;
    let (mut c, session) = hub.client().await;
    // More than the 1,024 a session may have waiting, each dropped after one poll.
    for _ in 0..1100 {
        let ask = session.ask::<Value>("x", (), WAIT);
        let _ = tokio::time::timeout(Duration::ZERO, ask).await;
    }
    let asking = tokio::spawn({
        let session = session.clone();
        async move { session.ask::<u32>("last", (), WAIT).await }
    });
    let id = loop {
        let message = recv_json(&mut c).await;
        if message["type"] == "last" {
            break message["id"].clone();
        }
    };
    send_json(&mut c, json!({"type": "reply", "id": id, "data": 3})).await;
    assert_eq!(asking.await.unwrap().unwrap(), 3);
}

#[tokio::test]
async fn answers_are_never_answered() {
    let mut hub = hub(app()).await;
    let (mut c, _) = hub.client().await;
    // A malformed answer, and an answer with a target: neither is a request.
    send_text(&mut c, r#"{"type":"reply","id":7,"target":5}"#).await;
    send_json(
        &mut c,
        json!({"type": "error", "id": 8, "target": "5", "data": {}}),
    )
    .await;
    let mut got = Vec::new();
    while let Ok(message) =
        tokio::time::timeout(Duration::from_millis(200), recv_json(&mut c)).await
    {
        got.push(message);
    }
    assert!(got.iter().all(|m| m.get("id").is_none()), "{got:?}");
}

#[tokio::test]
async fn a_refusal_after_an_early_reply_goes_to_the_error_handler_only() {
    let router = Router::new().on("late-no", |session, envelope| async move {
        envelope.reply(&session, "yes")?;
        Err(Reject::new("no").into())
    });
    let mut hub = hub(router).await;
    let (mut c, _) = hub.client().await;
    send_json(&mut c, json!({"type": "late-no", "id": 1})).await;
    assert_eq!(
        recv_json(&mut c).await,
        json!({"type": "reply", "id": 1, "data": "yes"})
    );
    assert_silent(&mut c, Duration::from_millis(200)).await;
    hub.log.wait_for("failed: no").await;
}
