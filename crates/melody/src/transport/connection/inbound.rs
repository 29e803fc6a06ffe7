//! From an inbound frame to its handler: the rate limit, control frames, and message handlers
//! run inline, awaited in place, or spawned (at most [`MAX_CONCURRENT_HANDLERS`] per session)
//! under concurrent message handling.

use std::{future::poll_fn, io, panic::AssertUnwindSafe, sync::Arc};

use futures_util::{FutureExt, future::CatchUnwind};
use tokio::{sync::Semaphore, time::Instant};

use super::{Connection, End, Flow, MAX_CONCURRENT_HANDLERS, READ_AHEAD, Step, poll_timer};
use crate::{
    core::{
        dispatch::{BoxFuture, Handlers, OnMessage, guarded, panic_error, spawn_guarded},
        error::Error,
    },
    protocol::{
        close::{CloseCode, CloseFrame},
        frames::{Control, Inbound},
    },
};

impl Connection {
    /// Handles `next` and every frame that has already arrived after it (at most
    /// [`READ_AHEAD`] in all, `handled` of them already), then writes all the replies with one
    /// flush. Replies still go out ahead of a later failure or close: the close path writes
    /// what is queued before the close frame. Only an async handler that has to wait makes
    /// this wait, and the rest of the read then goes on after it.
    pub(super) fn read(
        &mut self,
        mut next: Option<io::Result<Inbound>>,
        mut handled: usize,
    ) -> Flow<'_> {
        loop {
            handled += 1;
            match next {
                Some(Ok(item)) => match self.handle(item) {
                    Step::Done(None) => {}
                    Step::Done(end) => return Flow::Done(end),
                    Step::Await(handlers, future) => {
                        let mut future = AssertUnwindSafe(future).catch_unwind();
                        // Most handlers finish without waiting (their writes find room).
                        match (&mut future).now_or_never() {
                            Some(Ok(())) => {}
                            Some(Err(panic)) => {
                                return Flow::Done(Some(self.panicked(&handlers, panic)));
                            }
                            None => {
                                let rest = self.read_after(handlers, future, handled);
                                return Flow::Wait(Box::pin(rest));
                            }
                        }
                    }
                },
                Some(Err(error)) => return Flow::Done(Some(self.failed(error.into()))),
                // The stream ended without a close frame.
                None => return Flow::Done(Some(self.failed(Error::AbnormalClosure))),
            }
            if handled == READ_AHEAD {
                break;
            }
            match self.socket.next().now_or_never() {
                Some(item) => next = item,
                None => break,
            }
        }
        self.replies()
    }

    /// The rest of [`Connection::read`] after an async handler that had to wait.
    async fn read_after(
        &mut self,
        handlers: Arc<Handlers>,
        future: CatchUnwind<AssertUnwindSafe<BoxFuture>>,
        handled: usize,
    ) -> Option<End> {
        if let Some(end) = self.drive_waiting(handlers, future).await {
            return Some(end);
        }
        if handled < READ_AHEAD {
            if let Some(next) = self.socket.next().now_or_never() {
                return self.read(next, handled).await;
            }
        }
        self.replies().await
    }

    /// Writes what handling the frames queued: messages (or the close they asked for), and
    /// pongs even when there is nothing else to write.
    fn replies(&mut self) -> Flow<'_> {
        match self.session.outbox().take(&mut self.batch) {
            Some(wake) => self.woken(wake),
            None if self.socket.has_control() => self.write_batch(),
            None => Flow::Done(None),
        }
    }

    /// Handles one inbound frame as far as it can be without waiting.
    fn handle(&mut self, item: Inbound) -> Step {
        // A borrowed load (no reference count taken): this runs for every message.
        let handlers = self.session.hub().handlers();
        let data_len = match &item {
            Inbound::Text(text) => Some(text.len()),
            Inbound::Binary(bytes) => Some(bytes.len()),
            _ => None,
        };
        if let Some(len) = data_len {
            // Traffic: the session does not park for a while (see `park.rs`).
            self.quiet_checks = 0;
            if self.over_rate_limit(len) {
                return Step::Done(Some(self.failed(Error::RateLimited)));
            }
        }
        let end = match item {
            Inbound::Text(text) => {
                return match &handlers.text {
                    Some(handler) => self.dispatch(&handlers, handler, text),
                    None => Step::Done(None),
                };
            }
            Inbound::Binary(bytes) => {
                return match &handlers.binary {
                    Some(handler) => self.dispatch(&handlers, handler, bytes),
                    None => Step::Done(None),
                };
            }
            Inbound::Ping(payload) => {
                // Answered with the next write, after the frames that already arrived.
                self.socket.queue_control(Control::Pong, &payload);
                None
            }
            Inbound::Pong => {
                // The timer notices the later deadline when it next fires.
                self.pong_deadline = Instant::now() + self.session.hub().config.pong_wait;
                match handlers.pong.as_ref() {
                    Some(pong) => guarded(|| pong(&self.session))
                        .err()
                        .map(|p| self.panicked(&handlers, p)),
                    None => None,
                }
            }
            Inbound::Close(frame) => {
                let code = frame.as_ref().map(CloseFrame::code);
                let frame =
                    frame.unwrap_or_else(|| CloseFrame::new(CloseCode::NO_STATUS_RECEIVED, ""));
                if let Some(close) = &handlers.close {
                    if let Err(panic) = guarded(|| close(&self.session, &frame)) {
                        handlers.report(&self.session, &panic_error(panic));
                    }
                }
                Some(End::Answer(code))
            }
            Inbound::Violation(violation) => Some(self.failed(violation.into())),
        };
        Step::Done(end)
    }

    /// Counts a received data message; whether it is over the rate limit.
    fn over_rate_limit(&self, len: usize) -> bool {
        self.session.hub().counters.received(len);
        self.rate_limit
            .as_ref()
            .is_some_and(|limit| limit.check().is_err())
    }

    /// Runs a message handler: inline, or in its own task under concurrent message handling.
    fn dispatch<T: Send + 'static>(
        &mut self,
        handlers: &Arc<Handlers>,
        handler: &OnMessage<T>,
        value: T,
    ) -> Step {
        match handler {
            OnMessage::Sync(f) if self.session.hub().config.concurrent_message_handling => {
                let (f, session) = (f.clone(), self.session.clone());
                self.spawn_limited(
                    handlers.clone(),
                    Box::pin(async move { f(&session, value) }),
                )
            }
            OnMessage::Sync(f) => Step::Done(
                guarded(|| f(&self.session, value))
                    .err()
                    .map(|panic| self.panicked(handlers, panic)),
            ),
            OnMessage::Async(f) => {
                let future = f(self.session.clone(), value);
                self.spawn_or_await(handlers.clone(), future)
            }
        }
    }

    /// An async handler's future: spawned under concurrent message handling, else to be
    /// awaited in place.
    fn spawn_or_await(&mut self, handlers: Arc<Handlers>, future: BoxFuture) -> Step {
        if self.session.hub().config.concurrent_message_handling {
            self.spawn_limited(handlers, future)
        } else {
            Step::Await(handlers, future)
        }
    }

    /// Spawns a handler call under concurrent message handling. At most
    /// [`MAX_CONCURRENT_HANDLERS`] of one session run at once; at the limit the session waits
    /// for one to finish before it reads on, so a client cannot pile up tasks faster than its
    /// handlers finish (the socket's backpressure reaches the client instead).
    fn spawn_limited(&mut self, handlers: Arc<Handlers>, future: BoxFuture) -> Step {
        let permits = self
            .in_flight
            .get_or_insert_with(|| Arc::new(Semaphore::new(MAX_CONCURRENT_HANDLERS)))
            .clone();
        let session = self.session.clone();
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                spawn_guarded(handlers, session, async move {
                    future.await;
                    drop(permit);
                });
                Step::Done(None)
            }
            Err(_) => {
                let waiting = handlers.clone();
                let spawn = Box::pin(async move {
                    let Ok(permit) = permits.acquire_owned().await else {
                        return;
                    };
                    spawn_guarded(handlers, session, async move {
                        future.await;
                        drop(permit);
                    });
                });
                Step::Await(waiting, spawn)
            }
        }
    }

    /// Awaits an async handler while still writing queued messages, sending pings, and watching
    /// for close requests and the pong deadline, so a handler that waits on its own session
    /// (queue room, a channel) can neither deadlock nor keep a dead session alive.
    async fn drive_waiting(
        &mut self,
        handlers: Arc<Handlers>,
        mut future: CatchUnwind<AssertUnwindSafe<BoxFuture>>,
    ) -> Option<End> {
        let session = self.session.clone();
        loop {
            tokio::select! {
                result = &mut future => {
                    return result.err().map(|panic| self.panicked(&handlers, panic));
                }
                // A close request or a dead peer ends the session now; the handler's future is
                // dropped (cancelled) rather than awaited, as it may be waiting on this very
                // session.
                wake = session.outbox().wait(&mut self.batch) => {
                    if let Some(end) = self.woken(wake).await {
                        return Some(end);
                    }
                }
                () = poll_fn(|cx| poll_timer(&mut self.timer, cx)) => {
                    if let Some(end) = self.on_timer().await {
                        return Some(end);
                    }
                }
            }
        }
    }
}
