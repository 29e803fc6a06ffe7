//! Go melody's names, one `use` away.
//!
//! melody's own API reads as sentences (`melody.all().except(&me).send(msg)`,
//! `melody.on_text(..)`); Go melody's verbs (`Broadcast`, `BroadcastOthers`, `HandleMessage`,
//! `Write`) stay available as thin methods of two extension traits, so code ported from Go keeps
//! its shape. `docs/MELODY_PARITY.md` in the repository lists every Go item, its name here, and
//! the test behind it.
//!
//! ```
//! use melody::{Melody, compat::*};
//!
//! let m = Melody::new();
//! m.handle_message(|s, msg| {
//!     let _ = s.melody().broadcast(msg);
//! });
//! m.handle_disconnect(|s| {
//!     let _ = s.melody().broadcast_others("someone left", s);
//! });
//! ```

use std::{future::Future, sync::Arc};

use bytes::Bytes;
use http::Request;

use crate::{
    core::{
        admission::UpgradeResponse,
        data::Keys,
        dispatch::SentFn,
        error::{CloseError, Closed, Error, TrySendError},
        hub::Melody,
        session::Session,
    },
    protocol::{
        close::{CloseFrame, InvalidClosePayload},
        message::{Message, Text},
    },
};

/// Go melody's `Melody` methods that have other names here. Implemented for [`Melody`] only.
pub trait MelodyCompat: sealed::Sealed {
    /// `HandleConnect`: [`Melody::on_connect`].
    fn handle_connect(&self, f: impl Fn(&Session) + Send + Sync + 'static) -> &Melody;
    /// `HandleDisconnect`: [`Melody::on_disconnect`].
    fn handle_disconnect(&self, f: impl Fn(&Session) + Send + Sync + 'static) -> &Melody;
    /// `HandleMessage`: [`Melody::on_text`].
    fn handle_message(&self, f: impl Fn(&Session, Text) + Send + Sync + 'static) -> &Melody;
    /// `HandleMessageBinary`: [`Melody::on_binary`].
    fn handle_message_binary(&self, f: impl Fn(&Session, Bytes) + Send + Sync + 'static)
    -> &Melody;
    /// `HandleSentMessage`: [`Melody::on_sent`], for text messages only.
    fn handle_sent_message(
        &self,
        f: impl Fn(&Session, &Message) + Send + Sync + 'static,
    ) -> &Melody;
    /// `HandleSentMessageBinary`: [`Melody::on_sent`], for binary messages only.
    fn handle_sent_message_binary(
        &self,
        f: impl Fn(&Session, &Message) + Send + Sync + 'static,
    ) -> &Melody;
    /// `HandleError`: [`Melody::on_error`].
    fn handle_error(&self, f: impl Fn(&Session, &Error) + Send + Sync + 'static) -> &Melody;
    /// `HandleClose`: [`Melody::on_close`].
    fn handle_close(&self, f: impl Fn(&Session, &CloseFrame) + Send + Sync + 'static) -> &Melody;
    /// `HandlePong`: [`Melody::on_pong`].
    fn handle_pong(&self, f: impl Fn(&Session) + Send + Sync + 'static) -> &Melody;
    /// `HandleRequest`: [`Melody::upgrade`].
    fn handle_request<B>(
        &self,
        req: Request<B>,
    ) -> impl Future<Output = UpgradeResponse> + Send + use<Self, B>;
    /// `HandleRequestWithKeys`: [`Melody::upgrade_with`].
    fn handle_request_with_keys<B>(
        &self,
        req: Request<B>,
        keys: Keys,
    ) -> impl Future<Output = UpgradeResponse> + Send + use<Self, B>;
    /// `Broadcast`: `melody.all().send(msg)`.
    ///
    /// # Errors
    ///
    /// [`Closed`] once the hub is closed.
    fn broadcast(&self, msg: impl Into<Message>) -> Result<usize, Closed>;
    /// `BroadcastBinary`: `melody.all().send(Message::binary(bytes))`.
    ///
    /// # Errors
    ///
    /// [`Closed`] once the hub is closed.
    fn broadcast_binary(&self, bytes: impl Into<Bytes>) -> Result<usize, Closed>;
    /// `BroadcastFilter`: `melody.filter(f).send(msg)`.
    ///
    /// # Errors
    ///
    /// [`Closed`] once the hub is closed.
    fn broadcast_filter(
        &self,
        msg: impl Into<Message>,
        f: impl Fn(&Session) -> bool,
    ) -> Result<usize, Closed>;
    /// `BroadcastBinaryFilter`.
    ///
    /// # Errors
    ///
    /// [`Closed`] once the hub is closed.
    fn broadcast_binary_filter(
        &self,
        bytes: impl Into<Bytes>,
        f: impl Fn(&Session) -> bool,
    ) -> Result<usize, Closed>;
    /// `BroadcastOthers`: `melody.all().except(s).send(msg)`.
    ///
    /// # Errors
    ///
    /// [`Closed`] once the hub is closed.
    fn broadcast_others(&self, msg: impl Into<Message>, s: &Session) -> Result<usize, Closed>;
    /// `BroadcastBinaryOthers`.
    ///
    /// # Errors
    ///
    /// [`Closed`] once the hub is closed.
    fn broadcast_binary_others(
        &self,
        bytes: impl Into<Bytes>,
        s: &Session,
    ) -> Result<usize, Closed>;
    /// `BroadcastMultiple`: `melody.each(sessions).send(msg)`. Unlike Go, a closed or full
    /// session does not stop the others from receiving it.
    ///
    /// # Errors
    ///
    /// [`Closed`] once the hub is closed.
    fn broadcast_multiple<'s>(
        &self,
        msg: impl Into<Message>,
        sessions: impl IntoIterator<Item = &'s Session>,
    ) -> Result<usize, Closed>;
    /// `BroadcastBinaryMultiple`.
    ///
    /// # Errors
    ///
    /// [`Closed`] once the hub is closed.
    fn broadcast_binary_multiple<'s>(
        &self,
        bytes: impl Into<Bytes>,
        sessions: impl IntoIterator<Item = &'s Session>,
    ) -> Result<usize, Closed>;
    /// `CloseWithMsg`: closes the hub with a raw close payload, as built by
    /// [`format_close_message`](crate::format_close_message).
    ///
    /// # Errors
    ///
    /// [`CloseError::InvalidPayload`] when the payload does not parse; otherwise as
    /// [`Melody::close_with`].
    fn close_with_msg(&self, payload: &[u8]) -> Result<(), CloseError>;
    /// `Len`: the sessions connected to this node, 0 once closed.
    fn len(&self) -> usize;
    /// Whether [`MelodyCompat::len`] is 0.
    fn is_empty(&self) -> bool;
    /// `Sessions`: the sessions connected to this node.
    ///
    /// # Errors
    ///
    /// [`Closed`] once the hub is closed.
    fn sessions(&self) -> Result<Vec<Session>, Closed>;
}

/// Go melody's `Session` methods that have other names here. Implemented for [`Session`] only.
pub trait SessionCompat: sealed::Sealed {
    /// `Write`: [`Session::send`].
    ///
    /// # Errors
    ///
    /// As [`Session::send`].
    fn write(&self, msg: impl Into<Message>) -> Result<(), TrySendError>;
    /// `WriteBinary`: [`Session::send`] of a binary message.
    ///
    /// # Errors
    ///
    /// As [`Session::send`].
    fn write_binary(&self, bytes: impl Into<Bytes>) -> Result<(), TrySendError>;
    /// `CloseWithMsg`: closes with a raw close payload.
    ///
    /// # Errors
    ///
    /// [`CloseError::InvalidPayload`] when the payload does not parse; otherwise as
    /// [`Session::close_with`].
    fn close_with_msg(&self, payload: &[u8]) -> Result<(), CloseError>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Melody {}
    impl Sealed for super::Session {}
}

/// A frame to send from a raw payload (Go melody's `CloseWithMsg` argument).
fn frame_of(payload: &[u8]) -> Result<CloseFrame, CloseError> {
    CloseFrame::from_payload(payload).map_err(|InvalidClosePayload| CloseError::InvalidPayload)
}

impl MelodyCompat for Melody {
    fn handle_connect(&self, f: impl Fn(&Session) + Send + Sync + 'static) -> &Melody {
        self.on_connect(f)
    }

    fn handle_disconnect(&self, f: impl Fn(&Session) + Send + Sync + 'static) -> &Melody {
        self.on_disconnect(f)
    }

    fn handle_message(&self, f: impl Fn(&Session, Text) + Send + Sync + 'static) -> &Melody {
        self.on_text(f)
    }

    fn handle_message_binary(
        &self,
        f: impl Fn(&Session, Bytes) + Send + Sync + 'static,
    ) -> &Melody {
        self.on_binary(f)
    }

    fn handle_sent_message(
        &self,
        f: impl Fn(&Session, &Message) + Send + Sync + 'static,
    ) -> &Melody {
        let f: SentFn = Arc::new(f);
        self.set_handler(|h| h.sent_text = Some(f.clone()))
    }

    fn handle_sent_message_binary(
        &self,
        f: impl Fn(&Session, &Message) + Send + Sync + 'static,
    ) -> &Melody {
        let f: SentFn = Arc::new(f);
        self.set_handler(|h| h.sent_binary = Some(f.clone()))
    }

    fn handle_error(&self, f: impl Fn(&Session, &Error) + Send + Sync + 'static) -> &Melody {
        self.on_error(f)
    }

    fn handle_close(&self, f: impl Fn(&Session, &CloseFrame) + Send + Sync + 'static) -> &Melody {
        self.on_close(f)
    }

    fn handle_pong(&self, f: impl Fn(&Session) + Send + Sync + 'static) -> &Melody {
        self.on_pong(f)
    }

    fn handle_request<B>(
        &self,
        req: Request<B>,
    ) -> impl Future<Output = UpgradeResponse> + Send + use<B> {
        self.upgrade(req)
    }

    fn handle_request_with_keys<B>(
        &self,
        req: Request<B>,
        keys: Keys,
    ) -> impl Future<Output = UpgradeResponse> + Send + use<B> {
        self.upgrade_with(req, keys)
    }

    fn broadcast(&self, msg: impl Into<Message>) -> Result<usize, Closed> {
        self.all().send(msg)
    }

    fn broadcast_binary(&self, bytes: impl Into<Bytes>) -> Result<usize, Closed> {
        self.all().send(Message::binary(bytes))
    }

    fn broadcast_filter(
        &self,
        msg: impl Into<Message>,
        f: impl Fn(&Session) -> bool,
    ) -> Result<usize, Closed> {
        self.filter(f).send(msg)
    }

    fn broadcast_binary_filter(
        &self,
        bytes: impl Into<Bytes>,
        f: impl Fn(&Session) -> bool,
    ) -> Result<usize, Closed> {
        self.filter(f).send(Message::binary(bytes))
    }

    fn broadcast_others(&self, msg: impl Into<Message>, s: &Session) -> Result<usize, Closed> {
        self.all().except(s).send(msg)
    }

    fn broadcast_binary_others(
        &self,
        bytes: impl Into<Bytes>,
        s: &Session,
    ) -> Result<usize, Closed> {
        self.all().except(s).send(Message::binary(bytes))
    }

    fn broadcast_multiple<'s>(
        &self,
        msg: impl Into<Message>,
        sessions: impl IntoIterator<Item = &'s Session>,
    ) -> Result<usize, Closed> {
        self.each(sessions).send(msg)
    }

    fn broadcast_binary_multiple<'s>(
        &self,
        bytes: impl Into<Bytes>,
        sessions: impl IntoIterator<Item = &'s Session>,
    ) -> Result<usize, Closed> {
        self.each(sessions).send(Message::binary(bytes))
    }

    fn close_with_msg(&self, payload: &[u8]) -> Result<(), CloseError> {
        self.close_frame(frame_of(payload)?)
    }

    fn len(&self) -> usize {
        if self.is_closed() {
            0
        } else {
            self.all().len()
        }
    }

    fn is_empty(&self) -> bool {
        MelodyCompat::len(self) == 0
    }

    fn sessions(&self) -> Result<Vec<Session>, Closed> {
        if self.is_closed() {
            return Err(Closed);
        }
        Ok(self.all().sessions())
    }
}

impl SessionCompat for Session {
    fn write(&self, msg: impl Into<Message>) -> Result<(), TrySendError> {
        self.send(msg)
    }

    fn write_binary(&self, bytes: impl Into<Bytes>) -> Result<(), TrySendError> {
        self.send(Message::binary(bytes))
    }

    fn close_with_msg(&self, payload: &[u8]) -> Result<(), CloseError> {
        self.close_frame(frame_of(payload)?)
    }
}
