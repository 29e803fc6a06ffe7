//! The seed's `done` and `disconnect` channels: [`Done`] fires once the connection has ended,
//! [`Disconnect`] closes it after what was already given to the sender.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use tokio::sync::{Notify, mpsc};

use crate::{CloseCode, CloseError, Session, protocol::close::CloseFrame};

/// A one-shot signal shared between tasks: fires once, stays fired.
#[derive(Default)]
pub(crate) struct Signal {
    fired: AtomicBool,
    notify: Notify,
}

impl Signal {
    /// Fires; `true` the first time.
    pub(crate) fn fire(&self) -> bool {
        let first = !self.fired.swap(true, Ordering::AcqRel);
        self.notify.notify_waiters();
        first
    }

    pub(crate) fn is_fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }

    pub(crate) async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so a fire in between is not missed.
            notified.as_mut().enable();
            if self.is_fired() {
                return;
            }
            notified.await;
        }
    }
}

/// The seed's `done` channel: resolves once the connection has ended (the client closed or went
/// away, a timeout or a limit ended it, [`Disconnect::close`] went through, the hub closed).
///
/// Cheap to clone; every clone sees the same end.
#[derive(Clone)]
pub struct Done(pub(crate) Arc<Signal>);

impl Done {
    /// Waits for the end of the connection; returns at once if it has already ended.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: use it in `select!` on every turn of a loop.
    pub async fn wait(&self) {
        self.0.wait().await;
    }

    /// Whether the connection has ended.
    #[must_use]
    pub fn is_done(&self) -> bool {
        self.0.is_fired()
    }
}

impl fmt::Debug for Done {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Done").field(&self.is_done()).finish()
    }
}

/// The seed's `disconnect` channel: closes the connection with a chosen code.
///
/// Values already given to [`Channels::sender`](super::Channels::sender) are written before the close frame. Cheap to
/// clone.
#[derive(Clone)]
pub struct Disconnect(pub(crate) Arc<Closer>);

pub(crate) struct Closer {
    pub(crate) session: Session,
    /// To the outbound pump, which writes what is pending, then closes.
    pub(crate) requests: mpsc::UnboundedSender<CloseFrame>,
    /// Fired on the first close request: inbound messages stop waiting for room.
    pub(crate) closing: Arc<Signal>,
}

impl Closer {
    pub(crate) fn close(&self, frame: CloseFrame) -> Result<(), CloseError> {
        let frame = frame.sendable().map_err(CloseError::ReservedCode)?;
        if self.session.is_closed() || !self.closing.fire() {
            return Err(CloseError::SessionClosed);
        }
        match self.requests.send(frame) {
            Ok(()) => Ok(()),
            // The pump has stopped: nothing is pending, close directly.
            Err(mpsc::error::SendError(frame)) => self.session.close_frame(frame),
        }
    }
}

impl Disconnect {
    /// Closes the connection with `code` and `reason` (cut to 123 bytes), after the values
    /// already given to the sender. [`Channels::done`](super::Channels::done) fires once the closing handshake is over.
    ///
    /// # Errors
    ///
    /// [`CloseError::ReservedCode`] for a code that may not be sent
    /// ([`CloseCode::may_be_sent`]; 1005 without a reason sends a close frame without a code);
    /// [`CloseError::SessionClosed`] when the connection is already closed or closing.
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<(), CloseError> {
        self.0.close(CloseFrame::new(code, reason))
    }

    /// Closes the connection with 1000 Normal Closure and no reason.
    ///
    /// # Errors
    ///
    /// As [`Disconnect::close`].
    pub fn close_normal(&self) -> Result<(), CloseError> {
        self.0.close(CloseFrame::normal())
    }
}

impl fmt::Debug for Disconnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Disconnect")
            .field("session", &self.0.session.id())
            .field("closing", &self.0.closing.is_fired())
            .finish()
    }
}
