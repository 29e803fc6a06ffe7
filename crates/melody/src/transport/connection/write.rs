//! Writing a batch of queued messages: at once when the socket takes it (nearly always), else as
//! a boxed wait bounded by the write wait. Either way, once written, the traffic is counted and
//! the "sent" handlers are told.

use std::task::Poll;

use super::{Connection, End, Flow};
use crate::{
    core::{
        dispatch::{guarded, panic_error},
        error::Error,
    },
    protocol::message::Message,
    transport::io::Cursor,
};

impl Connection {
    /// Writes the batch taken from the queue (control frames, such as pongs, first) with one
    /// flush. A write that has to wait becomes a future of its own, with its timer, boxed so
    /// that it takes no room in an idle session's task.
    pub(super) fn write_batch(&mut self) -> Flow<'_> {
        let write_wait = self.session.hub().config.write_wait;
        if write_wait.is_zero() {
            // No time at all to write in: every write times out (Go melody's behaviour with
            // a zero `WriteWait`), even one the socket would take at once.
            return Flow::Done(Some(self.failed(Error::WriteTimeout(write_wait))));
        }
        let wire = match &mut self.deflate {
            Some(deflate) => {
                deflate.prepare(&self.batch, &self.session.hub().counters);
                &deflate.wire[..]
            }
            None => &[],
        };
        // Counted before the write, while `wire` is at hand; a failed write ends the session.
        let bytes: usize = self.batch.iter().map(Message::len).sum();
        // What compression kept off the wire; nothing to add up when nothing was compressed.
        let saved: i64 = wire
            .iter()
            .zip(&self.batch)
            .map(|(compressed, message)| match compressed {
                Some(compressed) => message.len() as i64 - compressed.len() as i64,
                None => 0,
            })
            .sum();
        let mut cursor = Cursor::default();
        match self.socket.try_write(&self.batch, wire, &mut cursor) {
            Poll::Ready(Ok(())) => {
                self.written(bytes, saved);
                Flow::Done(None)
            }
            Poll::Ready(Err(error)) => Flow::Done(Some(self.failed(error.into()))),
            Poll::Pending => Flow::Wait(Box::pin(self.write_rest(cursor, bytes, saved))),
        }
    }

    /// The rest of a write the socket did not take at once, within the write wait.
    async fn write_rest(&mut self, cursor: Cursor, bytes: usize, saved: i64) -> Option<End> {
        let write_wait = self.session.hub().config.write_wait;
        let wire = match &self.deflate {
            Some(deflate) => &deflate.wire[..],
            None => &[],
        };
        let rest = self.socket.write_rest(&self.batch, wire, cursor);
        match tokio::time::timeout(write_wait, rest).await {
            Err(_) => Some(self.failed(Error::WriteTimeout(write_wait))),
            Ok(Err(error)) => Some(self.failed(error.into())),
            Ok(Ok(())) => {
                self.written(bytes, saved);
                None
            }
        }
    }

    /// Counts what was written, tells the "sent" handlers, and empties the batch.
    fn written(&mut self, bytes: usize, saved: i64) {
        self.session
            .hub()
            .counters
            .sent(self.batch.len(), bytes, saved);
        let handlers = self.session.hub().handlers();
        if handlers.wants_sent() {
            for message in &self.batch {
                let sent = if message.is_text() {
                    &handlers.sent_text
                } else {
                    &handlers.sent_binary
                };
                if let Some(sent) = sent {
                    if let Err(panic) = guarded(|| sent(&self.session, message)) {
                        handlers.report(&self.session, &panic_error(panic));
                    }
                }
            }
        }
        self.batch.clear();
    }
}
