//! The live protocol's messages (docs/PROTOCOL.md, "Topics"), as JSON.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, value::RawValue};

use super::history::{Entry, StreamPosition};
use crate::{Message, SessionId};

/// The longest topic name a client may name, in bytes.
pub const MAX_TOPIC_LEN: usize = 256;

/// `subscribe`'s data.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Subscribe {
    pub(crate) topic: String,
    #[serde(default)]
    pub(crate) since: Option<StreamPosition>,
    #[serde(default)]
    pub(crate) history: Option<usize>,
}

/// `unsubscribe`'s and `presence`'s data.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TopicOnly {
    pub(crate) topic: String,
}

/// A member of a topic with presence on, as others see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// The session's id.
    pub id: SessionId,
    /// What the application exposes about it ([`Live::info`](super::Live::info)); left out
    /// when `null`.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub info: Value,
}

/// A kept publication, as a subscribe reply lists it.
#[derive(Serialize)]
pub(crate) struct Publication<'a> {
    offset: u64,
    data: &'a RawValue,
}

/// `subscribe`'s reply.
#[derive(Serialize)]
pub(crate) struct Subscribed<'a> {
    pub(crate) topic: &'a str,
    #[serde(flatten)]
    pub(crate) position: Option<StreamPosition>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) recovered: Option<bool>,
    pub(crate) publications: Vec<Publication<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) members: Option<Vec<Member>>,
}

impl<'a> Publication<'a> {
    pub(crate) fn of(entry: &'a Entry) -> Self {
        Self {
            offset: entry.offset,
            data: &entry.data,
        }
    }
}

/// `{"type":"pub","data":{"topic":…,"epoch":…,"offset":…,"data":…}}` (epoch and offset on
/// topics with history: a client sees at once when a stream restarted under it).
pub(crate) fn publication(
    topic: &str,
    position: Option<&StreamPosition>,
    data: &Arc<RawValue>,
) -> Message {
    #[derive(Serialize)]
    struct Pub<'a> {
        topic: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        epoch: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        offset: Option<u64>,
        data: &'a RawValue,
    }
    envelope(
        "pub",
        &Pub {
            topic,
            epoch: position.map(|at| at.epoch.as_str()),
            offset: position.map(|at| at.offset),
            data,
        },
    )
}

/// `{"type":"join"|"leave","data":{"topic":…,"member":…}}`.
pub(crate) fn presence_event(kind: &str, topic: &str, member: &Member) -> Message {
    #[derive(Serialize)]
    struct Event<'a> {
        topic: &'a str,
        member: &'a Member,
    }
    envelope(kind, &Event { topic, member })
}

fn envelope(kind: &str, data: &impl Serialize) -> Message {
    #[derive(Serialize)]
    struct Envelope<'a, T> {
        #[serde(rename = "type")]
        kind: &'a str,
        data: T,
    }
    let text = serde_json::to_string(&Envelope { kind, data })
        .expect("protocol messages of JSON values encode");
    Message::text(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_the_documented_shape() {
        let data: Arc<RawValue> =
            Arc::from(RawValue::from_string(r#"{"text":"hi"}"#.into()).unwrap());
        let at = StreamPosition {
            epoch: "e1".into(),
            offset: 3,
        };
        assert_eq!(
            publication("room", Some(&at), &data).as_str(),
            Some(
                r#"{"type":"pub","data":{"topic":"room","epoch":"e1","offset":3,"data":{"text":"hi"}}}"#
            )
        );
        assert_eq!(
            publication("room", None, &data).as_str(),
            Some(r#"{"type":"pub","data":{"topic":"room","data":{"text":"hi"}}}"#)
        );
        let member = Member {
            id: SessionId::from(12),
            info: serde_json::json!({"name": "alice"}),
        };
        assert_eq!(
            presence_event("join", "room", &member).as_str(),
            Some(
                r#"{"type":"join","data":{"topic":"room","member":{"id":"12","info":{"name":"alice"}}}}"#
            )
        );
        let bare = Member {
            id: SessionId::from(12),
            info: Value::Null,
        };
        assert_eq!(serde_json::to_string(&bare).unwrap(), r#"{"id":"12"}"#);
    }

    #[test]
    fn subscribe_requests_are_strict() {
        let ok: Subscribe =
            serde_json::from_str(r#"{"topic":"a","since":{"epoch":"e","offset":4}}"#).unwrap();
        assert_eq!(ok.since.unwrap().offset, 4);
        for bad in [
            r#"{"topic":1}"#,
            r#"{"topic":"a","since":{"epoch":"e"}}"#,
            r#"{"topic":"a","since":{"epoch":"e","offset":-1}}"#,
            r#"{"topic":"a","extra":1}"#,
            r#"{}"#,
        ] {
            assert!(serde_json::from_str::<Subscribe>(bad).is_err(), "{bad}");
        }
    }
}
