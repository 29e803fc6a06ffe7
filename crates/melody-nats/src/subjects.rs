//! The NATS subjects of one cluster (one prefix): where each [`Target`] is published, the
//! presence and membership subjects, and how a topic name becomes a subject token.

use async_nats::Subject;
use bytes::Bytes;
use melody::{cluster::NodeId, fanout::Target};

use crate::Error;

/// The subjects under one prefix (see the [crate docs](crate#subjects)).
#[derive(Debug)]
pub(crate) struct Subjects {
    pub(crate) prefix: String,
    all: Subject,
    session: Subject,
    pub(crate) presence: Subject,
    pub(crate) hello: Subject,
    pub(crate) here: Subject,
    pub(crate) bye: Subject,
    /// `p.>`: the one subscription of a node.
    pub(crate) wildcard: Subject,
}

/// What a message on a node's subscription is, by its subject.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A frame from another node (`p.all`, `p.session`, `p.topic.*`).
    Frame,
    /// A presence request (`p.presence`).
    Presence,
    /// A node joined (`p.hello`).
    Hello,
    /// A node answered a join (`p.here`).
    Here,
    /// A node left (`p.bye`).
    Bye,
    /// Anything else under the prefix: not for this version.
    Unknown,
}

impl Subjects {
    /// The subjects of `prefix`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPrefix`] unless the prefix is dot-separated non-empty tokens without
    /// spaces or wildcards.
    pub(crate) fn new(prefix: &str) -> Result<Self, Error> {
        let valid = !prefix.is_empty()
            && prefix.split('.').all(|token| {
                !token.is_empty()
                    && token
                        .chars()
                        .all(|c| !c.is_whitespace() && c != '*' && c != '>')
            });
        if !valid {
            return Err(Error::InvalidPrefix(prefix.to_owned()));
        }
        let subject = |name: &str| Subject::from(format!("{prefix}.{name}"));
        Ok(Self {
            prefix: prefix.to_owned(),
            all: subject("all"),
            session: subject("session"),
            presence: subject("presence"),
            hello: subject("hello"),
            here: subject("here"),
            bye: subject("bye"),
            wildcard: subject(">"),
        })
    }

    /// Where a frame for `target` is published.
    pub(crate) fn for_target(&self, target: &Target) -> Subject {
        match target {
            Target::Topic(topic) | Target::TopicExcept(topic, _) => {
                Subject::from(format!("{}.topic.{}", self.prefix, encode_topic(topic)))
            }
            Target::Session(_) => self.session.clone(),
            // Everyone, everyone but one, and any target of a later version: every node hears
            // `p.all`, so nothing is lost by routing there.
            _ => self.all.clone(),
        }
    }

    /// What a message received on `subject` (under this prefix) is.
    pub(crate) fn kind(&self, subject: &str) -> Kind {
        let name = subject
            .strip_prefix(self.prefix.as_str())
            .and_then(|rest| rest.strip_prefix('.'))
            .unwrap_or_default();
        match name {
            "all" | "session" => Kind::Frame,
            name if name.starts_with("topic.") => Kind::Frame,
            "presence" => Kind::Presence,
            "hello" => Kind::Hello,
            "here" => Kind::Here,
            "bye" => Kind::Bye,
            _ => Kind::Unknown,
        }
    }
}

/// A topic name as one NATS subject token: the lower-case hex of its UTF-8 bytes, or `_` for
/// the empty name.
///
/// ```
/// assert_eq!(melody_nats::encode_topic("room 1"), "726f6f6d2031");
/// assert_eq!(melody_nats::encode_topic(""), "_");
/// ```
#[must_use]
pub fn encode_topic(topic: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    if topic.is_empty() {
        return "_".to_owned();
    }
    let mut out = String::with_capacity(topic.len() * 2);
    for byte in topic.bytes() {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    out
}

/// A node id as the payload of `hello`, `here` and `bye`: 8 bytes, big-endian.
pub(crate) fn node_bytes(node: NodeId) -> Bytes {
    Bytes::copy_from_slice(&node.0.to_be_bytes())
}

/// The node id of a `hello`, `here` or `bye` payload.
pub(crate) fn parse_node(payload: &[u8]) -> Option<NodeId> {
    Some(NodeId(u64::from_be_bytes(payload.try_into().ok()?)))
}

#[cfg(test)]
mod tests {
    use melody::SessionId;

    use super::*;

    #[test]
    fn prefixes_are_validated() {
        for bad in ["", "a..b", "a b", "a.*", "a.>", ".", "a.", "\tx"] {
            assert!(Subjects::new(bad).is_err(), "{bad:?}");
        }
        assert!(Subjects::new("app.eu-1").is_ok());
    }

    #[test]
    fn targets_map_to_subjects_and_back() {
        let s = Subjects::new("p").unwrap();
        let id = SessionId::from(7);
        assert_eq!(s.for_target(&Target::All).as_str(), "p.all");
        assert_eq!(s.for_target(&Target::AllExcept(id)).as_str(), "p.all");
        assert_eq!(s.for_target(&Target::Session(id)).as_str(), "p.session");
        let topic = s.for_target(&Target::TopicExcept("a.b".into(), id));
        assert_eq!(topic.as_str(), "p.topic.612e62");
        for (subject, kind) in [
            ("p.all", Kind::Frame),
            ("p.session", Kind::Frame),
            ("p.topic._", Kind::Frame),
            ("p.presence", Kind::Presence),
            ("p.hello", Kind::Hello),
            ("p.here", Kind::Here),
            ("p.bye", Kind::Bye),
            ("p.later", Kind::Unknown),
            ("pp.all", Kind::Unknown),
        ] {
            assert_eq!(s.kind(subject), kind, "{subject}");
        }
        assert_eq!(parse_node(&node_bytes(NodeId(42))), Some(NodeId(42)));
        assert_eq!(parse_node(b"short"), None);
    }
}
