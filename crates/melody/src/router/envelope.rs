//! [`Envelope`]: one JSON message of the routing protocol, and how it is encoded.

use std::sync::Arc;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::Message;

/// One JSON message of the routing protocol:
/// `{"type": string, "data": any, "id": optional integer, "target": optional string,
/// "from": optional string}` (docs/PROTOCOL.md).
///
/// `data` is `null` when absent; `id`, `target` and `from` are left out of the JSON when
/// `None`. An envelope with an `id` is a request: the router answers it exactly once (see
/// [`Envelope::reply`]). An
/// envelope turns into a text [`Message`] (`Message::from(envelope)`), so it goes wherever a
/// message goes: `session.send(envelope)`, `melody.topic("room").send(envelope)`.
///
/// ```
/// use melody::router::Envelope;
///
/// let envelope = Envelope::new("chat", serde_json::json!({ "text": "hi" }))?;
/// let json = serde_json::to_string(&envelope)?;
/// assert_eq!(json, r#"{"type":"chat","data":{"text":"hi"}}"#);
///
/// let back: Envelope = serde_json::from_str(r#"{"type":"chat","data":{"text":"hi"},"from":"7"}"#)?;
/// assert_eq!(back.from.as_deref(), Some("7"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The routing key, `"type"` on the wire.
    #[serde(rename = "type")]
    pub kind: String,
    /// The payload; `null` when absent.
    #[serde(default)]
    pub data: serde_json::Value,
    /// A request's id (1 to 2⁵³−1, so that JavaScript reads it exactly): the reply carries
    /// the same. `None` for a message that wants no reply. The router takes it off the
    /// envelopes it hands to middleware and handlers (an envelope they forward or broadcast
    /// must not read as a request to its recipients) and keeps it for the reply:
    /// [`Envelope::request_id`] says what it was.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::request::deserialize_id"
    )]
    pub id: Option<u64>,
    /// For a direct send: the id of the session to deliver to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The sender's session id. On inbound envelopes the server always sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Whether the request was answered; shared by the clones the middleware makes.
    #[serde(skip)]
    pub(crate) replied: super::request::ReplySlot,
}

/// Data that cannot be represented as JSON (a map with non-string keys, a `Serialize`
/// implementation that fails). Cheap to clone.
#[derive(Clone, Debug, thiserror::Error)]
#[error("could not encode envelope data: {0}")]
pub struct EncodeError(#[source] Arc<serde_json::Error>);

impl From<serde_json::Error> for EncodeError {
    fn from(error: serde_json::Error) -> Self {
        Self(Arc::new(error))
    }
}

impl Envelope {
    /// An envelope of type `kind` carrying `data`, with no target and no sender.
    ///
    /// # Errors
    ///
    /// [`EncodeError`] when `data` cannot be represented as JSON.
    pub fn new(kind: impl Into<String>, data: impl Serialize) -> Result<Self, EncodeError> {
        Ok(Self {
            kind: kind.into(),
            data: serde_json::to_value(data)?,
            id: None,
            target: None,
            from: None,
            replied: super::request::ReplySlot::default(),
        })
    }

    /// `{"type": kind, "data": data}` as a text message, encoded in one pass straight from the
    /// caller's data. Encode once, then send the message to as many sessions as needed: the
    /// bytes are shared.
    ///
    /// ```
    /// use melody::router::Envelope;
    ///
    /// let message = Envelope::encode("joined", &["lobby"])?;
    /// assert_eq!(message.as_str(), Some(r#"{"type":"joined","data":["lobby"]}"#));
    /// # Ok::<(), melody::router::EncodeError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`EncodeError`] when `data` cannot be represented as JSON.
    pub fn encode(kind: &str, data: impl Serialize) -> Result<Message, EncodeError> {
        #[derive(Serialize)]
        struct Outgoing<'a, T> {
            #[serde(rename = "type")]
            kind: &'a str,
            data: T,
        }
        Ok(Message::text(serde_json::to_string(&Outgoing {
            kind,
            data,
        })?))
    }

    /// The data decoded as a `T`.
    ///
    /// ```
    /// #[derive(serde::Deserialize)]
    /// struct Join { room: String }
    ///
    /// let envelope = melody::router::Envelope::new("join", serde_json::json!({ "room": "lobby" }))?;
    /// assert_eq!(envelope.data_as::<Join>()?.room, "lobby");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// When the data does not have the shape of a `T`.
    pub fn data_as<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.data)
    }

    /// The envelope as a text message.
    ///
    /// ```
    /// let mut envelope = melody::router::Envelope::new("note", "hello")?;
    /// envelope.from = Some("3".into());
    /// let message = envelope.to_message();
    /// assert_eq!(message.as_str(), Some(r#"{"type":"note","data":"hello","from":"3"}"#));
    /// # Ok::<(), melody::router::EncodeError>(())
    /// ```
    #[must_use]
    pub fn to_message(&self) -> Message {
        // `data` is already a JSON value (string keys only), so this cannot fail.
        Message::text(serde_json::to_string(self).expect("an envelope of JSON values encodes"))
    }
}

impl From<Envelope> for Message {
    fn from(envelope: Envelope) -> Self {
        envelope.to_message()
    }
}

impl From<&Envelope> for Message {
    fn from(envelope: &Envelope) -> Self {
        envelope.to_message()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_wire_shape() {
        let envelope: Envelope = serde_json::from_str(r#"{"type":"x"}"#).unwrap();
        assert_eq!(envelope.data, serde_json::Value::Null);
        assert_eq!(envelope.target, None);
        assert_eq!(
            envelope.to_message().as_str(),
            Some(r#"{"type":"x","data":null}"#)
        );
        assert!(serde_json::from_str::<Envelope>(r#"{"type":1}"#).is_err());
        assert!(serde_json::from_str::<Envelope>(r#"{"data":1}"#).is_err());
    }

    #[test]
    fn encode_matches_envelope() {
        let direct = Envelope::encode("k", [1, 2]).unwrap();
        let built = Envelope::new("k", [1, 2]).unwrap().to_message();
        assert_eq!(direct.as_str(), built.as_str());
    }

    #[test]
    fn encode_error_is_reported() {
        let mut bad = std::collections::HashMap::new();
        bad.insert(vec![1u8], 1);
        assert!(Envelope::encode("k", &bad).is_err());
    }
}
