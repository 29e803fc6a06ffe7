//! Property: whatever text a client sends, the router never panics, the session stays open, each
//! input is either routed (a handler answers) or reported (error handler and error envelope), and
//! a probe sent after it is answered — one server and two clients for the whole property.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use melody::{
    Config, Error, Melody, Session,
    router::{Envelope, Router, RouterError},
};
use proptest::{
    prelude::*,
    test_runner::{Config as ProptestConfig, TestCaseError, TestRunner},
};
use serde_json::{Value, json};

/// What the test expects one input to do.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// The "echo" handler answers with the data.
    Echo(Value),
    /// The "typed" handler answers with the decoded number.
    Typed(u8),
    /// The "fail" handler's error reaches the error handler.
    Failed,
    /// Delivered to the client with this index, with `from` set to the sender.
    Forwarded(usize),
    /// The sender gets "target not connected".
    NotConnected,
    /// A type that may not be sent directly: the sender gets "direct send not allowed".
    NotDirect(String),
    /// The error handler is told and the sender gets "malformed envelope".
    Malformed,
    /// Nothing happens (unknown type, dropped by default).
    Dropped,
}

#[derive(serde::Deserialize)]
struct Typed {
    n: u8,
}

/// What the router should do with `text`, sent by client 0, given the clients' ids.
fn expected(text: &str, ids: &[String; 2]) -> Outcome {
    let envelope = if text
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('{')
    {
        serde_json::from_str::<Envelope>(text).ok()
    } else {
        None
    };
    let Some(envelope) = envelope else {
        return Outcome::Malformed;
    };
    if let Some(target) = &envelope.target {
        if envelope.kind != "dm" {
            return Outcome::NotDirect(envelope.kind);
        }
        return match ids.iter().position(|id| id == target) {
            Some(index) => Outcome::Forwarded(index),
            None => Outcome::NotConnected,
        };
    }
    match envelope.kind.as_str() {
        "echo" => Outcome::Echo(envelope.data),
        "typed" => match serde_json::from_value::<Typed>(envelope.data) {
            Ok(typed) => Outcome::Typed(typed.n),
            Err(_) => Outcome::Malformed,
        },
        "fail" => Outcome::Failed,
        _ => Outcome::Dropped,
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Inputs: arbitrary strings, JSON text of arbitrary values, and envelopes with random types,
/// data, targets (including both clients' ids) and spoofed senders.
fn input(ids: [String; 2]) -> impl Strategy<Value = String> {
    let kind = prop_oneof![
        Just("echo".to_owned()),
        Just("typed".to_owned()),
        Just("fail".to_owned()),
        Just("unknown".to_owned()),
        Just("dm".to_owned()),
        ".{0,8}",
    ];
    let data = prop_oneof![json_value(), (0u16..300).prop_map(|n| json!({ "n": n })),];
    let target = prop_oneof![
        3 => Just(None),
        1 => Just(Some(ids[0].clone())),
        1 => Just(Some(ids[1].clone())),
        1 => ".{0,6}".prop_map(Some),
    ];
    let from = prop::option::of(".{0,6}");
    let envelope = (kind, data, target, from).prop_map(|(kind, data, target, from)| {
        let mut envelope = Envelope::new(kind, data).unwrap();
        envelope.target = target;
        envelope.from = from;
        serde_json::to_string(&envelope).unwrap()
    });
    prop_oneof![
        2 => any::<String>(),
        1 => json_value().prop_map(|v| v.to_string()),
        4 => envelope,
    ]
}

async fn recv_json(client: &mut Client) -> Value {
    let text = recv_text(client).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("server sent non-JSON {text:?}: {e}"))
}

/// Sends a probe and returns every envelope received before its answer.
async fn probe(client: &mut Client, nonce: u64) -> Vec<Value> {
    send_text(client, &json!({"type": "probe", "data": nonce}).to_string()).await;
    let mut before = Vec::new();
    loop {
        let got = recv_json(client).await;
        if got == json!({"type": "probe", "data": nonce}) {
            return before;
        }
        before.push(got);
    }
}

#[test]
fn every_input_is_routed_or_reported_and_the_session_lives_on() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let melody = Melody::with_config(Config::default().max_message_size(1 << 20));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = errors.clone();
    melody.on_error(move |_, error| {
        let router_error = match error {
            Error::Handler(source) => source.downcast_ref::<RouterError>(),
            _ => None,
        };
        log.lock().unwrap().push(match router_error {
            Some(RouterError::Malformed(_)) => "malformed".to_owned(),
            Some(RouterError::Failed(_)) => "failed".to_owned(),
            _ => error.to_string(),
        });
    });
    let router = Router::new()
        .allow_direct("dm")
        .on("probe", |session, envelope| async move {
            session.send(Envelope::encode("probe", envelope.data)?)?;
            Ok(())
        })
        .on("echo", |session, envelope| async move {
            session.send(Envelope::encode("echoed", envelope.data)?)?;
            Ok(())
        })
        .on_data::<Typed, _, _>("typed", |session, typed| async move {
            session.send(Envelope::encode("typed", typed.n)?)?;
            Ok(())
        })
        .on(
            "fail",
            |_, _| async move { Err("failed on purpose".into()) },
        );
    melody.plug(router);

    let (mut clients, sessions): (Vec<Client>, Vec<Session>) = runtime.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        melody.on_connect(move |s| {
            let _ = tx.send(s.clone());
        });
        let addr = spawn_app(&melody).await;
        let mut clients = Vec::new();
        let mut sessions = Vec::new();
        for _ in 0..2 {
            clients.push(connect(addr).await);
            sessions.push(rx.recv().await.unwrap());
        }
        (clients, sessions)
    });
    let ids = [sessions[0].id().to_string(), sessions[1].id().to_string()];
    let clients = Mutex::new(&mut clients);
    let nonce = Mutex::new(0u64);

    let mut runner = TestRunner::new(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let result = runner.run(&input(ids.clone()), |text| {
        let mut clients = clients.lock().unwrap();
        let mut nonce = nonce.lock().unwrap();
        *nonce += 1;
        let outcome = expected(&text, &ids);
        let (first, rest) = clients.split_at_mut(1);
        let (sender, other) = (&mut first[0], &mut rest[0]);
        let (replies, forwarded) = runtime.block_on(async {
            send_text(sender, &text).await;
            let replies = probe(sender, *nonce).await;
            // Anything forwarded to the other client is queued before the probe answer above.
            let forwarded = probe(other, *nonce).await;
            (replies, forwarded)
        });
        let reported = std::mem::take(&mut *errors.lock().unwrap());
        let from = ids[0].clone();
        let (want_replies, want_forwarded, want_reported): (Vec<Value>, Vec<Value>, Vec<&str>) =
            match &outcome {
                Outcome::Echo(data) => (
                    vec![json!({"type": "echoed", "data": data})],
                    vec![],
                    vec![],
                ),
                Outcome::Typed(n) => (vec![json!({"type": "typed", "data": n})], vec![], vec![]),
                Outcome::Failed => (vec![], vec![], vec!["failed"]),
                Outcome::Dropped => (vec![], vec![], vec![]),
                Outcome::NotDirect(kind) => {
                    let error = json!({"type": "error", "data": {
                        "reason": "direct send not allowed", "type": kind }});
                    (vec![error], vec![], vec![])
                }
                Outcome::NotConnected => {
                    let target = serde_json::from_str::<Envelope>(&text).unwrap().target;
                    let error = json!({"type": "error", "data": {
                        "reason": "target not connected", "target": target }});
                    (vec![error], vec![], vec![])
                }
                Outcome::Forwarded(index) => {
                    let mut envelope = serde_json::from_str::<Envelope>(&text).unwrap();
                    envelope.from = Some(from);
                    let envelope = serde_json::to_value(envelope).unwrap();
                    if *index == 0 {
                        (vec![envelope], vec![], vec![])
                    } else {
                        (vec![], vec![envelope], vec![])
                    }
                }
                Outcome::Malformed => {
                    prop_assert_eq!(replies.len(), 1, "{:?}: {:?}", text, replies);
                    prop_assert_eq!(&replies[0]["type"], "error");
                    prop_assert_eq!(&replies[0]["data"]["reason"], "malformed envelope");
                    (replies.clone(), vec![], vec!["malformed"])
                }
            };
        prop_assert_eq!(&replies, &want_replies, "{:?} -> {:?}", text, outcome);
        prop_assert_eq!(&forwarded, &want_forwarded, "{:?} -> {:?}", text, outcome);
        prop_assert_eq!(&reported, &want_reported, "{:?} -> {:?}", text, outcome);
        prop_assert!(!sessions[0].is_closed() && !sessions[1].is_closed());
        Ok::<(), TestCaseError>(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    assert_eq!(melody.all().len(), 2, "a session ended");
}
