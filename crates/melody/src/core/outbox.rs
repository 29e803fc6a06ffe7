//! A session's outbound queue: bounded, many writers, one reader (the session task).
//!
//! Chosen over `tokio::sync::mpsc` after measuring: it allocates nothing until the first message
//! (an idle session costs a few words), the reader takes everything queued in one step (one
//! lock, one swap), and the same wake-up also carries close requests, so the session task waits
//! on one thing instead of three.

use std::{
    collections::VecDeque,
    future::poll_fn,
    sync::{
        Mutex, MutexGuard, OnceLock,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    task::{Context, Poll},
};

use futures_util::task::AtomicWaker;
use tokio::sync::Notify;

use crate::protocol::{close::CloseFrame, message::Message};

/// Why a message was not queued.
pub(crate) enum PushError {
    Full,
    Closed,
}

/// What woke the session task.
pub(crate) enum Wake {
    /// Messages to write (taken into the reader's batch).
    Messages,
    /// A close was requested, with this frame.
    Close(CloseFrame),
    /// The hub's shutdown drain has expired: stop now.
    Abort,
}

#[derive(Default)]
struct State {
    messages: VecDeque<Message>,
    /// Boxed: asked for once in a session's life, and kept out of every idle session's room.
    close: Option<Box<CloseFrame>>,
    /// No more messages are accepted.
    closed: bool,
}

pub(crate) struct Outbox {
    state: Mutex<State>,
    /// 32 bits, as `waiting`: together they take the room of one word in every session.
    capacity: u32,
    reader: AtomicWaker,
    aborted: AtomicBool,
    /// Writers waiting for room (`write_async`), woken when the reader drains. Created by the
    /// first writer that has to wait: most sessions never have one.
    room: OnceLock<Box<Notify>>,
    waiting: AtomicU32,
}

impl Outbox {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            capacity: u32::try_from(capacity).unwrap_or(u32::MAX).max(1),
            reader: AtomicWaker::new(),
            aborted: AtomicBool::new(false),
            room: OnceLock::new(),
            waiting: AtomicU32::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Never held across user code or a panic point.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a message without waiting; hands it back when it cannot.
    pub(crate) fn push(&self, message: Message) -> Result<(), (PushError, Message)> {
        let mut state = self.lock();
        if state.closed {
            return Err((PushError::Closed, message));
        }
        if state.messages.len() >= self.capacity as usize {
            return Err((PushError::Full, message));
        }
        let was_empty = state.messages.is_empty();
        state.messages.push_back(message);
        drop(state);
        if was_empty {
            // A non-empty queue has already woken the reader.
            self.reader.wake();
        }
        Ok(())
    }

    /// Queues a message, waiting for room; hands it back when the queue closes.
    pub(crate) async fn push_wait(&self, message: Message) -> Result<(), Message> {
        // Fast path: room now, no waiter registration.
        let mut message = match self.push(message) {
            Ok(()) => return Ok(()),
            Err((PushError::Closed, message)) => return Err(message),
            Err((PushError::Full, message)) => message,
        };
        loop {
            let room = self.room.get_or_init(|| Box::new(Notify::new())).notified();
            tokio::pin!(room);
            self.waiting.fetch_add(1, Ordering::SeqCst);
            room.as_mut().enable();
            match self.push(message) {
                Err((PushError::Full, back)) => {
                    message = back;
                    room.await;
                    self.waiting.fetch_sub(1, Ordering::SeqCst);
                }
                pushed => {
                    self.waiting.fetch_sub(1, Ordering::SeqCst);
                    return pushed.map_err(|(_, back)| back);
                }
            }
        }
    }

    /// Stops accepting messages and asks the reader to close; `false` if already closed.
    pub(crate) fn close(&self, frame: CloseFrame) -> bool {
        let mut state = self.lock();
        if state.closed {
            return false;
        }
        state.closed = true;
        state.close = Some(Box::new(frame));
        drop(state);
        self.reader.wake();
        self.wake_writers();
        true
    }

    /// Stops accepting messages without asking for a close (the connection is ending anyway).
    pub(crate) fn seal(&self) {
        self.lock().closed = true;
        self.wake_writers();
    }

    /// Wakes the writers waiting for room (there are none if the room was never made: a
    /// writer makes it before it counts itself as waiting).
    fn wake_writers(&self) {
        if let Some(room) = self.room.get() {
            room.notify_waiters();
        }
    }

    /// Tells the reader to stop at once.
    pub(crate) fn abort(&self) {
        self.aborted.store(true, Ordering::Release);
        self.reader.wake();
    }

    /// Waits until there is something for the reader. Messages are appended to `batch`.
    /// Cancel safe: nothing is taken unless this returns.
    pub(crate) async fn wait(&self, batch: &mut VecDeque<Message>) -> Wake {
        poll_fn(|cx| self.poll_wait(cx, batch)).await
    }

    /// [`Outbox::wait`] as a poll: `Pending` keeps the waker to wake.
    pub(crate) fn poll_wait(
        &self,
        cx: &mut Context<'_>,
        batch: &mut VecDeque<Message>,
    ) -> Poll<Wake> {
        self.reader.register(cx.waker());
        match self.take(batch) {
            Some(wake) => Poll::Ready(wake),
            None => Poll::Pending,
        }
    }

    /// Whether [`Outbox::poll_wait`] would be ready, without taking anything (a parked session
    /// asks this); `Pending` keeps the waker to wake.
    pub(crate) fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.reader.register(cx.waker());
        if self.aborted.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        let state = self.lock();
        if state.messages.is_empty() && state.close.is_none() {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }

    /// Waits for an abort only; queued messages and close requests are left alone.
    pub(crate) async fn aborted(&self) {
        poll_fn(|cx| {
            self.reader.register(cx.waker());
            if self.aborted.load(Ordering::Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }

    /// Takes what is ready without waiting.
    pub(crate) fn take(&self, batch: &mut VecDeque<Message>) -> Option<Wake> {
        if self.aborted.load(Ordering::Acquire) {
            return Some(Wake::Abort);
        }
        let mut state = self.lock();
        if !state.messages.is_empty() {
            if batch.is_empty() {
                // One swap takes everything; the session keeps the reader's spare buffer.
                std::mem::swap(&mut state.messages, batch);
            } else {
                batch.append(&mut state.messages);
            }
            drop(state);
            if self.waiting.load(Ordering::SeqCst) > 0 {
                self.wake_writers();
            }
            return Some(Wake::Messages);
        }
        state.close.take().map(|frame| Wake::Close(*frame))
    }

    /// Frees the queue's buffer if it is empty (after a burst, so an idle session holds none).
    pub(crate) fn shrink(&self) {
        let mut state = self.lock();
        if state.messages.is_empty() {
            state.messages = VecDeque::new();
        }
    }

    /// Takes the messages still queued (at close), leaving none.
    pub(crate) fn drain(&self) -> VecDeque<Message> {
        std::mem::take(&mut self.lock().messages)
    }
}
