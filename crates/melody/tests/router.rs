//! Typed JSON envelope routing: routes by type, typed data, middleware, send helpers, direct
//! sends, unknown types and malformed input.

mod common;

use std::{net::SocketAddr, time::Duration};

use common::*;
use melody::{
    Error, Melody, Session,
    router::{BoxError, Envelope, Malformed, Router, RouterError, UnknownType},
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// A hub with `router` plugged in, that hands every new session to the test and logs errors as
/// events ("malformed", "failed: <message>", or the error's text) on `events`.
struct Hub {
    melody: Melody,
    addr: SocketAddr,
    sessions: mpsc::UnboundedReceiver<Session>,
    log: EventLog,
}

async fn hub(router: Router, (events, log): (Events, EventLog)) -> Hub {
    let melody = Melody::new();
    let (tx, sessions) = mpsc::unbounded_channel();
    melody.on_connect(move |s| {
        let _ = tx.send(s.clone());
    });
    melody.on_error(move |_, error| {
        let router_error = match error {
            Error::Handler(source) => source.downcast_ref::<RouterError>(),
            _ => None,
        };
        events.push(match router_error {
            Some(RouterError::Malformed(_)) => "malformed".to_owned(),
            Some(RouterError::Failed(message)) => format!("failed: {message}"),
            _ => error.to_string(),
        });
    });
    // Answers {"type":"probe","data":x} with the same envelope: a marker that the session still
    // works and that everything sent before it has been routed.
    melody.plug(router.on("probe", |session, envelope| async move {
        session.send(Envelope::encode("probe", envelope.data)?)?;
        Ok(())
    }));
    let addr = spawn_app(&melody).await;
    Hub {
        melody,
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

/// Sends a probe and returns every envelope received before its answer.
async fn probe(client: &mut Client, nonce: u64) -> Vec<Value> {
    send_json(client, json!({"type": "probe", "data": nonce})).await;
    let mut before = Vec::new();
    loop {
        let got = recv_json(client).await;
        if got == json!({"type": "probe", "data": nonce}) {
            return before;
        }
        before.push(got);
    }
}

#[tokio::test]
async fn routes_by_type_in_order() {
    let mut router = Router::new();
    for kind in ["a", "b"] {
        router = router.on(kind, move |session, envelope| async move {
            session.send(Envelope::encode(&format!("got-{kind}"), envelope.data)?)?;
            Ok(())
        });
    }
    let mut hub = hub(router, events()).await;
    let (mut c, _) = hub.client().await;
    send_json(&mut c, json!({"type": "b", "data": 1})).await;
    send_json(&mut c, json!({"type": "a", "data": {"x": [1, 2]}})).await;
    send_json(&mut c, json!({"type": "b"})).await;
    assert_eq!(recv_json(&mut c).await, json!({"type": "got-b", "data": 1}));
    assert_eq!(
        recv_json(&mut c).await,
        json!({"type": "got-a", "data": {"x": [1, 2]}})
    );
    assert_eq!(
        recv_json(&mut c).await,
        json!({"type": "got-b", "data": null})
    );
    assert!(probe(&mut c, 1).await.is_empty());
    assert!(hub.log.drain().is_empty(), "errors: {:?}", hub.log.drain());
}

#[tokio::test]
async fn the_text_handler_runs_while_no_router_is_plugged() {
    let melody = Melody::new();
    let (events, mut log) = events();
    melody.on_text(move |_, text| events.push(text.to_string()));
    let addr = spawn_app(&melody).await;
    let mut c = connect(addr).await;
    send_text(&mut c, r#"{"type":"a"}"#).await;
    assert_eq!(log.next().await, r#"{"type":"a"}"#);
}

#[derive(serde::Deserialize, serde::Serialize)]
struct Join {
    room: String,
}

#[tokio::test]
async fn typed_data_decodes_or_counts_as_malformed() {
    let log = events();
    let events = log.0.clone();
    let router = Router::new().on_data::<Join, _, _>("join", move |session, join| {
        let events = events.clone();
        async move {
            events.push(format!("join {}", join.room));
            session.join(&join.room)?;
            session.send(Envelope::encode("joined", &join)?)?;
            Ok(())
        }
    });
    let mut hub = hub(router, log).await;
    let (mut c, session) = hub.client().await;
    send_json(&mut c, json!({"type": "join", "data": {"room": "lobby"}})).await;
    assert_eq!(
        recv_json(&mut c).await,
        json!({"type": "joined", "data": {"room": "lobby"}})
    );
    assert!(session.is_in("lobby"));
    assert_eq!(hub.log.next().await, "join lobby");

    send_json(&mut c, json!({"type": "join", "data": {"room": 5}})).await;
    let reply = recv_json(&mut c).await;
    assert_eq!(reply["type"], "error");
    assert_eq!(reply["data"]["reason"], "malformed envelope");
    assert_eq!(hub.log.next().await, "malformed");
    assert!(probe(&mut c, 2).await.is_empty());
    assert!(hub.log.drain().is_empty(), "the handler ran on bad data");
}

#[tokio::test]
async fn handler_error_goes_to_the_error_handler() {
    let router = Router::new()
        .on("fail", |_, envelope| async move {
            Err(format!("boom {}", envelope.data).into())
        })
        .on("io", |_, _| async move {
            std::fs::read("/definitely/not/here")?;
            Ok(())
        });
    let mut hub = hub(router, events()).await;
    let (mut c, session) = hub.client().await;
    send_json(&mut c, json!({"type": "fail", "data": 7})).await;
    assert_eq!(hub.log.next().await, "failed: boom 7");
    send_json(&mut c, json!({"type": "io"})).await;
    assert!(hub.log.next().await.starts_with("failed: "));
    assert!(
        probe(&mut c, 3).await.is_empty(),
        "no reply to a failed handler"
    );
    assert!(!session.is_closed());
}

#[tokio::test]
async fn middleware_runs_in_registration_order() {
    let log = events();
    let mut router = Router::new();
    for name in ["a", "b"] {
        let events = log.0.clone();
        router = router.middleware(move |session, envelope, next| {
            let events = events.clone();
            async move {
                events.push(format!("{name}-before {}", envelope.kind));
                let result = next.run(session, envelope).await;
                events.push(format!("{name}-after"));
                result
            }
        });
    }
    let events = log.0.clone();
    let router = router.on("work", move |_, _| {
        let events = events.clone();
        async move {
            events.push("handler");
            Ok(())
        }
    });
    let mut hub = hub(router, log).await;
    let (mut c, _) = hub.client().await;
    send_json(&mut c, json!({"type": "work"})).await;
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(hub.log.next().await);
    }
    assert_eq!(
        seen,
        [
            "a-before work",
            "b-before work",
            "handler",
            "b-after",
            "a-after"
        ]
    );
    // The probe went through both middlewares too.
    assert!(probe(&mut c, 4).await.is_empty());
    assert_eq!(
        hub.log.drain(),
        ["a-before probe", "b-before probe", "b-after", "a-after"]
    );
}

#[tokio::test]
async fn middleware_can_short_circuit_or_fail() {
    let log = events();
    let events = log.0.clone();
    let handler = move |_: Session, envelope: Envelope| {
        let events = events.clone();
        async move {
            events.push(format!("handler {}", envelope.kind));
            Ok(())
        }
    };
    let router = Router::new()
        .middleware(|session, envelope, next| async move {
            match envelope.kind.as_str() {
                "secret" => {
                    session.send(Envelope::encode("denied", &envelope.kind)?)?;
                    Ok(())
                }
                "forbidden" => Err(BoxError::from("forbidden type")),
                _ => next.run(session, envelope).await,
            }
        })
        .on("secret", handler.clone())
        .on("forbidden", handler);
    let mut hub = hub(router, log).await;
    let (mut c, _) = hub.client().await;
    send_json(&mut c, json!({"type": "secret"})).await;
    assert_eq!(
        recv_json(&mut c).await,
        json!({"type": "denied", "data": "secret"})
    );
    send_json(&mut c, json!({"type": "forbidden"})).await;
    assert_eq!(hub.log.next().await, "failed: forbidden type");
    assert!(probe(&mut c, 5).await.is_empty());
    assert!(hub.log.drain().is_empty(), "a handler ran");
}

#[tokio::test]
async fn send_helpers_reach_session_all_topic_and_others() {
    // "say" publishes the sender's envelope (with the server-filled `from`) to the others in its
    // room.
    let router = Router::new().on("say", |session, envelope| async move {
        session
            .melody()
            .topic("room")
            .except(&session)
            .send(envelope)?;
        Ok(())
    });
    let mut hub = hub(router, events()).await;
    let (mut c0, s0) = hub.client().await;
    let (mut c1, s1) = hub.client().await;
    let (mut c2, s2) = hub.client().await;
    s0.join("room").unwrap();
    s1.join("room").unwrap();

    s2.send(Envelope::encode("only-you", json!({"n": 2})).unwrap())
        .unwrap();
    assert_eq!(
        recv_json(&mut c2).await,
        json!({"type": "only-you", "data": {"n": 2}})
    );

    assert_eq!(
        hub.melody
            .all()
            .send(Envelope::encode("all", "hi").unwrap())
            .unwrap(),
        3
    );
    for c in [&mut c0, &mut c1, &mut c2] {
        assert_eq!(recv_json(c).await, json!({"type": "all", "data": "hi"}));
    }

    assert_eq!(
        hub.melody
            .topic("room")
            .send(Envelope::encode("topic", 1).unwrap())
            .unwrap(),
        2
    );
    assert_eq!(
        hub.melody
            .topic("room")
            .except(&s0)
            .send(Envelope::encode("others", 2).unwrap())
            .unwrap(),
        1
    );
    assert_eq!(
        recv_json(&mut c0).await,
        json!({"type": "topic", "data": 1})
    );
    assert_eq!(
        recv_json(&mut c1).await,
        json!({"type": "topic", "data": 1})
    );
    assert_eq!(
        recv_json(&mut c1).await,
        json!({"type": "others", "data": 2})
    );

    // A client-supplied `from` is overwritten with the sender's id.
    send_json(&mut c0, json!({"type": "say", "data": "yo", "from": "999"})).await;
    assert_eq!(
        recv_json(&mut c1).await,
        json!({"type": "say", "data": "yo", "from": s0.id().to_string()})
    );
    // c0 got nothing in between (neither "others" nor its own "say"), c2 nothing from the room.
    assert!(probe(&mut c0, 6).await.is_empty());
    assert!(probe(&mut c2, 7).await.is_empty());
    assert!(hub.log.drain().is_empty());

    // Data that cannot be JSON is an encode error, and nothing is sent.
    let bad: std::collections::HashMap<Vec<u8>, u8> = [(vec![1], 1)].into();
    assert!(Envelope::encode("bad", &bad).is_err());
    assert!(probe(&mut c0, 8).await.is_empty());
}

#[tokio::test]
async fn target_is_a_direct_send_through_middleware() {
    let log = events();
    let events = log.0.clone();
    let handled = log.0.clone();
    let router = Router::new()
        .middleware(move |session, envelope, next| {
            let events = events.clone();
            async move {
                events.push(format!(
                    "mw {} {}",
                    envelope.kind,
                    envelope.target.as_deref().unwrap_or("-")
                ));
                next.run(session, envelope).await
            }
        })
        .on("dm", move |_, _| {
            let events = handled.clone();
            async move {
                events.push("dm handler");
                Ok(())
            }
        })
        .allow_direct("dm")
        .allow_direct("x");
    let mut hub = hub(router, log).await;
    let (mut c0, s0) = hub.client().await;
    let (mut c1, s1) = hub.client().await;
    let target = s1.id().to_string();

    send_json(
        &mut c0,
        json!({"type": "dm", "data": {"text": "psst"}, "target": target, "from": "1"}),
    )
    .await;
    assert_eq!(
        recv_json(&mut c1).await,
        json!({"type": "dm", "data": {"text": "psst"}, "target": target, "from": s0.id().to_string()})
    );
    assert_eq!(hub.log.next().await, format!("mw dm {target}"));

    for missing in ["424242", "not-a-number", "", &format!("0{target}")] {
        send_json(&mut c0, json!({"type": "dm", "target": missing})).await;
        assert_eq!(
            recv_json(&mut c0).await,
            json!({"type": "error", "data": {"reason": "target not connected", "target": missing}})
        );
    }
    assert!(probe(&mut c0, 9).await.is_empty());
    assert!(probe(&mut c1, 10).await.is_empty());
    let seen = hub.log.drain();
    assert!(!seen.iter().any(|e| e == "dm handler"), "{seen:?}");

    // A session that has gone is not connected either.
    let gone = s1.id().to_string();
    drop(c1);
    eventually(|| hub.melody.session(s1.id()).get().is_none()).await;
    send_json(&mut c0, json!({"type": "x", "target": gone})).await;
    assert_eq!(
        recv_json(&mut c0).await["data"]["reason"],
        "target not connected"
    );
}

#[tokio::test]
async fn unknown_types_are_dropped_by_default() {
    let mut hub = hub(Router::new(), events()).await;
    let (mut c, _) = hub.client().await;
    send_json(&mut c, json!({"type": "nobody-handles-this", "data": 1})).await;
    assert!(probe(&mut c, 11).await.is_empty());
    assert!(hub.log.drain().is_empty());
}

#[tokio::test]
async fn unknown_types_are_answered_when_configured() {
    let mut hub = hub(Router::new().unknown(UnknownType::Reply), events()).await;
    let (mut c, _) = hub.client().await;
    send_json(&mut c, json!({"type": "nope"})).await;
    assert_eq!(
        probe(&mut c, 12).await,
        [json!({"type": "error", "data": {"reason": "unknown type", "type": "nope"}})]
    );
}

#[tokio::test]
async fn malformed_input_gets_an_error_envelope() {
    let mut hub = hub(Router::new(), events()).await;
    let (mut c, session) = hub.client().await;
    let (mut other, _) = hub.client().await;
    let inputs = [
        "not json",
        "",
        "[\"probe\", 1]",
        "\"probe\"",
        "{}",
        r#"{"type": 5}"#,
        r#"{"type": "probe", "target": 5}"#,
        r#"{"type": "probe", "from": {}}"#,
        r#"{"type": "probe""#,
    ];
    for (i, input) in inputs.into_iter().enumerate() {
        send_text(&mut c, input).await;
        let replies = probe(&mut c, 100 + i as u64).await;
        assert_eq!(replies.len(), 1, "{input:?}: {replies:?}");
        assert_eq!(replies[0]["type"], "error", "{input:?}");
        assert_eq!(
            replies[0]["data"]["reason"], "malformed envelope",
            "{input:?}"
        );
        assert_eq!(hub.log.next().await, "malformed", "{input:?}");
    }
    assert!(!session.is_closed());
    assert!(probe(&mut other, 13).await.is_empty());
}

#[tokio::test]
async fn malformed_input_closes_with_1003_when_configured() {
    let mut hub = hub(Router::new().malformed(Malformed::Close), events()).await;
    let (mut c, _) = hub.client().await;
    let (mut other, _) = hub.client().await;
    send_text(&mut c, "{oops").await;
    assert_eq!(
        recv_close(&mut c).await,
        (1003, "malformed envelope".to_owned())
    );
    assert_eq!(hub.log.next().await, "malformed");
    assert!(probe(&mut other, 14).await.is_empty());
    assert_silent(&mut other, Duration::from_millis(50)).await;
}
