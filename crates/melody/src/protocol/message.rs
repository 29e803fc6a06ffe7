//! The data that travels over a session: [`Message`] and [`Text`].
//!
//! A [`Message`] is a cheap handle to shared bytes: cloning it, or broadcasting it to ten
//! thousand sessions, never copies the payload.

use std::{
    fmt,
    sync::{Arc, OnceLock},
};

use bytes::Bytes;
use bytestring::ByteString;

/// A data message: text (always valid UTF-8) or binary.
///
/// The payload is a [`Bytes`] handle, so `clone` is a reference-count increment. Every recipient
/// of a broadcast shares the same bytes.
///
/// ```
/// use melody::Message;
///
/// let text = Message::text("hello");
/// assert_eq!(text.as_str(), Some("hello"));
///
/// let binary = Message::binary(vec![1u8, 2, 3]);
/// assert!(binary.is_binary());
/// assert_eq!(binary.as_bytes(), &[1, 2, 3]);
/// ```
#[derive(Clone)]
pub struct Message {
    repr: Repr,
    /// The compressed form shared by every session a broadcast reaches (permessage-deflate):
    /// attached by the send path, filled by the first session that writes it.
    deflated: Option<Arc<Deflated>>,
}

/// A message's payload compressed on its own with one window size, computed once.
#[derive(Debug)]
pub(crate) struct Deflated {
    window_bits: u8,
    payload: OnceLock<Option<Bytes>>,
}

impl Deflated {
    /// The compressed payload for sessions that agreed to `window_bits`, computed by
    /// `compress` the first time; `None` inside when it did not get smaller. `None` outside
    /// for another window: that session compresses on its own.
    pub(crate) fn get_or_compress(
        &self,
        window_bits: u8,
        compress: impl FnOnce() -> Option<Bytes>,
    ) -> Option<Option<Bytes>> {
        (window_bits == self.window_bits).then(|| self.payload.get_or_init(compress).clone())
    }
}

impl PartialEq for Message {
    /// Messages are equal when their kind and payload are (a cached compressed form aside).
    fn eq(&self, other: &Self) -> bool {
        self.repr == other.repr
    }
}

impl Eq for Message {}

#[derive(Clone, PartialEq, Eq)]
enum Repr {
    Text(Text),
    Binary(Bytes),
}

impl Message {
    fn from_repr(repr: Repr) -> Self {
        Self {
            repr,
            deflated: None,
        }
    }

    /// This message with a fresh slot for its compressed form, which every session that
    /// agreed to `window_bits` then shares (one compression per broadcast).
    pub(crate) fn with_deflate_slot(&self, window_bits: u8) -> Self {
        Self {
            repr: self.repr.clone(),
            deflated: Some(Arc::new(Deflated {
                window_bits,
                payload: OnceLock::new(),
            })),
        }
    }

    /// The shared compressed form's slot, if the send path attached one.
    pub(crate) fn deflated(&self) -> Option<&Deflated> {
        self.deflated.as_deref()
    }

    /// A text message. Anything that turns into a `String` works: `&str`, `String`, `Box<str>`.
    #[must_use]
    pub fn text(text: impl Into<String>) -> Self {
        Self::from_repr(Repr::Text(Text(ByteString::from(text.into()))))
    }

    /// A text message from bytes that must be valid UTF-8.
    ///
    /// # Errors
    ///
    /// [`InvalidUtf8`], holding the bytes, when they are not UTF-8.
    pub fn try_text(bytes: impl Into<Bytes>) -> Result<Self, InvalidUtf8> {
        Text::try_from_bytes(bytes.into()).map(|text| Self::from_repr(Repr::Text(text)))
    }

    /// A binary message. `Vec<u8>`, `Bytes`, `&'static [u8]` and friends convert without copying.
    #[must_use]
    pub fn binary(bytes: impl Into<Bytes>) -> Self {
        Self::from_repr(Repr::Binary(bytes.into()))
    }

    /// Whether this is a text message.
    #[must_use]
    pub fn is_text(&self) -> bool {
        matches!(self.repr, Repr::Text(_))
    }

    /// Whether this is a binary message.
    #[must_use]
    pub fn is_binary(&self) -> bool {
        matches!(self.repr, Repr::Binary(_))
    }

    /// The text of a text message, `None` for a binary message. Free: text is validated once,
    /// when it is built or received.
    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        match &self.repr {
            Repr::Text(text) => Some(text.as_str()),
            Repr::Binary(_) => None,
        }
    }

    /// The raw payload, whatever the kind.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        self.payload()
    }

    /// The payload as a shared [`Bytes`] handle (clone it for a cheap copy of the handle).
    #[must_use]
    pub fn payload(&self) -> &Bytes {
        match &self.repr {
            Repr::Text(text) => text.as_bytes(),
            Repr::Binary(bytes) => bytes,
        }
    }

    /// Takes the payload out of the message.
    #[must_use]
    pub fn into_payload(self) -> Bytes {
        match self.repr {
            Repr::Text(text) => text.0.into_bytes(),
            Repr::Binary(bytes) => bytes,
        }
    }

    /// Payload length in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.payload().len()
    }

    /// Whether the payload is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.payload().is_empty()
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Text(text) => f.debug_tuple("Text").field(&text.as_str()).finish(),
            Repr::Binary(bytes) => f.debug_tuple("Binary").field(bytes).finish(),
        }
    }
}

impl From<&str> for Message {
    fn from(text: &str) -> Self {
        Self::text(text)
    }
}

impl From<String> for Message {
    fn from(text: String) -> Self {
        Self::text(text)
    }
}

impl From<Bytes> for Message {
    /// Bytes become a binary message.
    fn from(bytes: Bytes) -> Self {
        Self::binary(bytes)
    }
}

impl From<Vec<u8>> for Message {
    /// Bytes become a binary message.
    fn from(bytes: Vec<u8>) -> Self {
        Self::binary(bytes)
    }
}

/// The text of a received text message: shared bytes known to be UTF-8.
///
/// It dereferences to `&str` and turns back into a [`Message`] without copying, so a handler can
/// rebroadcast what it received for free.
///
/// ```
/// use melody::{Message, Text};
///
/// let text = Text::from("hi");
/// assert_eq!(&*text, "hi");
/// assert_eq!(Message::from(text).as_str(), Some("hi"));
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Text(ByteString);

impl Text {
    /// The text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The underlying bytes (clone it for a cheap copy of the handle).
    #[must_use]
    pub fn as_bytes(&self) -> &Bytes {
        self.0.as_bytes()
    }

    /// Text from bytes that must be valid UTF-8.
    ///
    /// # Errors
    ///
    /// [`InvalidUtf8`], holding the bytes, when they are not UTF-8.
    pub fn try_from_bytes(bytes: Bytes) -> Result<Self, InvalidUtf8> {
        // Checked here first so that the bytes can be handed back without a clone (a clone of
        // unshared bytes allocates).
        if std::str::from_utf8(&bytes).is_err() {
            return Err(InvalidUtf8(bytes));
        }
        ByteString::try_from(bytes)
            .map(Self)
            .map_err(|_| InvalidUtf8(Bytes::new()))
    }
}

impl Text {
    /// Text from bytes already validated as they arrived; checked once more, never copied.
    pub(crate) fn from_checked(bytes: Bytes) -> Option<Self> {
        ByteString::try_from(bytes).ok().map(Self)
    }
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for Text {
    fn from(text: &str) -> Self {
        Self(ByteString::from(text))
    }
}

impl From<String> for Text {
    fn from(text: String) -> Self {
        Self(ByteString::from(text))
    }
}

impl From<Text> for Message {
    fn from(text: Text) -> Self {
        Self::from_repr(Repr::Text(text))
    }
}

impl From<&Text> for Message {
    fn from(text: &Text) -> Self {
        text.clone().into()
    }
}

impl From<&Message> for Message {
    fn from(message: &Message) -> Self {
        message.clone()
    }
}

/// Bytes that were meant to be a text message but are not valid UTF-8.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("text message is not valid utf-8")]
pub struct InvalidUtf8(pub Bytes);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_stays_small() {
        // Every queued message costs this much per slot of a session's queue: the payload
        // handle (32 bytes), the kind, and the slot for a broadcast's compressed form.
        assert!(
            std::mem::size_of::<Message>() <= 48,
            "{}",
            std::mem::size_of::<Message>()
        );
    }

    #[test]
    fn try_text_checks_utf8() {
        assert!(Message::try_text(vec![0xff]).is_err());
        assert_eq!(Message::try_text("ok").unwrap().as_str(), Some("ok"));
    }
}
