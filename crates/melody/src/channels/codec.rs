//! [`Codec`]: how frames map to values of a channel's type, and the three the seed names.

use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};

use super::BoxError;
use crate::Message;

/// How frames map to values of `T`, both ways.
///
/// Implement it to carry your own format (MessagePack, CBOR, a line protocol) and bind it with
/// [`Binding::with_codec`](super::Binding::with_codec).
pub trait Codec<T>: Send + Sync + 'static {
    /// Turns an inbound text or binary message into a value. An error is reported on
    /// [`Channels::errors`](super::Channels::errors) as [`ChannelError::Decode`](super::ChannelError::Decode); the connection stays open.
    ///
    /// # Errors
    ///
    /// When the message is not a valid `T`.
    fn decode(&self, message: Message) -> Result<T, BoxError>;

    /// Turns a value given to [`Channels::sender`](super::Channels::sender) into a message to send. An error is
    /// reported on [`Channels::errors`](super::Channels::errors) as [`ChannelError::Encode`](super::ChannelError::Encode); nothing is sent.
    ///
    /// # Errors
    ///
    /// When the value cannot be encoded.
    fn encode(&self, value: T) -> Result<Message, BoxError>;
}

/// JSON through serde (the seed's `sockets.JSON`): text or binary frames in, text frames of
/// `serde_json::to_string` out.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonCodec;

impl<T: Serialize + DeserializeOwned> Codec<T> for JsonCodec {
    fn decode(&self, message: Message) -> Result<T, BoxError> {
        Ok(serde_json::from_slice(message.as_bytes())?)
    }

    fn encode(&self, value: T) -> Result<Message, BoxError> {
        Ok(Message::text(serde_json::to_string(&value)?))
    }
}

/// Strings (the seed's `sockets.Messages`): text frames in (and binary frames that are valid
/// UTF-8; others are a decode error), text frames out.
#[derive(Clone, Copy, Debug, Default)]
pub struct StringCodec;

impl Codec<String> for StringCodec {
    fn decode(&self, message: Message) -> Result<String, BoxError> {
        match message.as_str() {
            Some(text) => Ok(text.to_owned()),
            None => Ok(std::str::from_utf8(message.as_bytes())?.to_owned()),
        }
    }

    fn encode(&self, value: String) -> Result<Message, BoxError> {
        Ok(Message::text(value))
    }
}

/// Bytes (the seed's `sockets.ByteSliceMessages`): binary frames in (text frames too, as their
/// UTF-8 bytes), binary frames out. Never copies a payload.
#[derive(Clone, Copy, Debug, Default)]
pub struct BytesCodec;

impl Codec<Bytes> for BytesCodec {
    fn decode(&self, message: Message) -> Result<Bytes, BoxError> {
        Ok(message.into_payload())
    }

    fn encode(&self, value: Bytes) -> Result<Message, BoxError> {
        Ok(Message::binary(value))
    }
}
