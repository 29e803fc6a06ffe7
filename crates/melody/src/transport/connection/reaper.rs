//! Ending a session that is dropped inside a waker.
//!
//! A parked session is woken by whatever thread pushes to its outbox, often while that thread
//! holds a lock of the registry or of a topic (a broadcast pushes under a shard's read lock),
//! or a lock of its own around `Session::send`. Waking spawns the session's task; a runtime
//! that is shutting down refuses the task and drops it at once, on the waking thread. Ending the
//! session there would take the registry's write lock and run the disconnect handler under
//! those locks. So a session dropped inside a waker is ended on a thread of its own instead,
//! inside its runtime's context (as a task dropped by its runtime is).

use std::{
    cell::RefCell,
    sync::{Mutex, OnceLock, mpsc},
};

use tokio::runtime::Handle;

use super::ended;
use crate::core::session::Session;

thread_local! {
    /// The runtime of the parked session being woken on this thread, while it is.
    static WAKING: RefCell<Option<Handle>> = const { RefCell::new(None) };
}

/// Runs `wake` (which may drop a session) with the sessions it drops ended by the reaper.
pub(super) fn waking(runtime: &Handle, wake: impl FnOnce()) {
    struct Reset(Option<Handle>);
    impl Drop for Reset {
        fn drop(&mut self) {
            WAKING.with(|waking| *waking.borrow_mut() = self.0.take());
        }
    }
    let previous = WAKING.with(|waking| waking.borrow_mut().replace(runtime.clone()));
    let _reset = Reset(previous);
    wake();
}

/// Ends `session` (see [`ended`]): at once, or on the reaper's thread when this thread is
/// waking a parked session (see the module doc).
pub(super) fn end(session: &Session) {
    let runtime = WAKING.with(|waking| waking.borrow().clone());
    let Some(runtime) = runtime else {
        ended(session);
        return;
    };
    if let Err(mpsc::SendError((session, _))) = reaper().send((session.clone(), runtime)) {
        // No reaper thread (the system refused one): ending it here is all there is.
        ended(&session);
    }
}

type Ending = (Session, Handle);

/// The reaper's queue; its thread starts with the first session it is handed.
fn reaper() -> mpsc::Sender<Ending> {
    static QUEUE: OnceLock<Mutex<mpsc::Sender<Ending>>> = OnceLock::new();
    let queue = QUEUE.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<Ending>();
        let started = std::thread::Builder::new()
            .name("melody-reaper".into())
            .spawn(move || {
                for (session, runtime) in receiver {
                    let _context = runtime.enter();
                    ended(&session);
                }
            });
        if let Err(error) = started {
            tracing::warn!(%error, "could not start the thread that ends woken sessions");
        }
        Mutex::new(sender)
    });
    queue
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone()
}
