//! [`ChannelError`]: what [`Channels::errors`](super::Channels::errors) delivers.

use super::BoxError;
use crate::{Error, Message};

/// What went wrong on a connection, as delivered on [`Channels::errors`](super::Channels::errors).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// An inbound message did not decode into the channel's type. It was dropped; the
    /// connection stays open.
    #[error("message did not decode: {source}")]
    Decode {
        /// The message as received.
        message: Message,
        /// Why it did not decode.
        #[source]
        source: BoxError,
    },
    /// A value given to [`Channels::sender`](super::Channels::sender) did not encode. Nothing was sent; the connection
    /// stays open.
    #[error("value did not encode: {0}")]
    Encode(#[source] BoxError),
    /// The hub reported an error for this session (what [`Melody::on_error`](crate::Melody::on_error) sees): a
    /// timeout, an oversized message, a protocol violation… It may have ended the connection
    /// ([`Error::close_code`] tells); then [`Channels::done`](super::Channels::done) follows.
    #[error(transparent)]
    Session(Error),
}
