//! A connection's side of a binding: its channels are created on connect, inbound messages
//! are decoded into `receiver`, and a pump moves `sender`'s values to the session's queue and
//! performs close requests in order.

use std::{
    future::Future,
    panic::AssertUnwindSafe,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use futures_util::FutureExt;
use tokio::sync::mpsc;

use super::{
    ChannelError, Channels, Codec,
    signal::{Closer, Disconnect, Done, Signal},
};
use crate::{CloseCode, Message, Session, protocol::close::CloseFrame};

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
pub(crate) type RunFn<T> = dyn Fn(Channels<T>) -> BoxFuture + Send + Sync;

/// What a binding shares with its hub's handlers.
pub(crate) struct Shared<T> {
    pub(crate) codec: Box<dyn Codec<T>>,
    pub(crate) run: Box<RunFn<T>>,
    pub(crate) send_buffer: AtomicUsize,
    pub(crate) recv_buffer: AtomicUsize,
}

/// A session's end of its channels, kept in the session's typed extensions until it ends.
pub(crate) struct State<T> {
    inbound: mpsc::Sender<T>,
    errors: mpsc::Sender<ChannelError>,
    closing: Arc<Signal>,
    /// Fired by the disconnect handler; the pump fires `done` after it.
    pub(crate) ended: Arc<Signal>,
}

impl<T> State<T> {
    /// Reports an error without ever waiting; dropped when the errors channel is full.
    pub(crate) fn report(&self, error: ChannelError) {
        if let Err(mpsc::error::TrySendError::Full(error)) = self.errors.try_send(error) {
            tracing::debug!(%error, "channels: errors channel full, error dropped");
        }
    }
}

impl<T: Send + 'static> Shared<T> {
    /// Creates the session's channels and starts its function and its outbound pump.
    pub(crate) fn connect(self: &Arc<Self>, session: &Session) {
        let recv_buffer = self.recv_buffer.load(Ordering::Relaxed).max(1);
        let (inbound, receiver) = mpsc::channel(recv_buffer);
        let (sender, outbound) = mpsc::channel(self.send_buffer.load(Ordering::Relaxed).max(1));
        let (errors_tx, errors) = mpsc::channel(recv_buffer);
        let (requests, close_requests) = mpsc::unbounded_channel();
        let [done, ended, closing] = [(); 3].map(|()| Arc::new(Signal::default()));
        session.insert_ext(Arc::new(State {
            inbound,
            errors: errors_tx,
            closing: closing.clone(),
            ended: ended.clone(),
        }));
        let closer = Arc::new(Closer {
            session: session.clone(),
            requests,
            closing,
        });
        let channels = Channels {
            receiver,
            sender,
            done: Done(done.clone()),
            disconnect: Disconnect(closer.clone()),
            errors,
            session: session.clone(),
        };
        tokio::spawn(
            self.clone()
                .pump(session.clone(), outbound, close_requests, (ended, done)),
        );
        let run = AssertUnwindSafe((self.run)(channels)).catch_unwind();
        let id = session.id();
        tokio::spawn(async move {
            let frame = match run.await {
                Ok(()) => CloseFrame::normal(),
                Err(_) => {
                    tracing::error!(session = %id, "channels: the connection's function panicked");
                    CloseFrame::new(CloseCode::INTERNAL_SERVER_ERR, "internal error")
                }
            };
            // Refused when the connection is already closed or closing: nothing to do then.
            let _ = closer.close(frame);
        });
    }

    /// Decodes an inbound message and hands it to `receiver`, waiting for room.
    pub(crate) async fn inbound(&self, session: &Session, message: Message) {
        let Some(state) = session.get_ext::<Arc<State<T>>>() else {
            return;
        };
        match self.codec.decode(message.clone()) {
            Ok(value) => {
                tokio::select! {
                    biased;
                    // Fails only when the function has dropped `receiver`: the value is dropped.
                    _ = state.inbound.send(value) => {}
                    // A close was requested: stop waiting so the close can go through.
                    () = state.closing.wait() => {}
                }
            }
            Err(source) => state.report(ChannelError::Decode { message, source }),
        }
    }

    /// Moves values from `sender` to the session's queue, in order, and performs close
    /// requests after what was sent before them. When the connection has ended it closes
    /// `sender` and only then fires `done`, so that after `done` a send always fails.
    async fn pump(
        self: Arc<Self>,
        session: Session,
        mut outbound: mpsc::Receiver<T>,
        mut close_requests: mpsc::UnboundedReceiver<CloseFrame>,
        (ended, done): (Arc<Signal>, Arc<Signal>),
    ) {
        loop {
            tokio::select! {
                biased;
                () = ended.wait() => break,
                Some(frame) = close_requests.recv() => {
                    // What was sent before the request goes out first.
                    for _ in 0..outbound.max_capacity() {
                        let Ok(value) = outbound.try_recv() else { break };
                        if !self.write(&session, value).await {
                            break;
                        }
                    }
                    if let Err(error) = session.close_frame(frame) {
                        tracing::trace!(session = %session.id(), %error, "channels: close refused");
                    }
                    outbound.close();
                }
                Some(value) = outbound.recv() => {
                    if !self.write(&session, value).await {
                        outbound.close();
                    }
                }
            }
        }
        outbound.close();
        done.fire();
    }

    /// Encodes and queues one value; `false` once the session no longer takes writes.
    async fn write(&self, session: &Session, value: T) -> bool {
        match self.codec.encode(value) {
            Ok(message) => session.send_async(message).await.is_ok(),
            Err(error) => {
                if let Some(state) = session.get_ext::<Arc<State<T>>>() {
                    state.report(ChannelError::Encode(error));
                }
                true
            }
        }
    }
}
