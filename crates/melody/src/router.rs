//! Typed JSON envelope routing: `{"type", "data", "target", "from"}` messages dispatched by
//! type, with middleware.

use crate::{Session, Text};

/// The routes and middleware of a hub. (Being written.)
#[derive(Default)]
pub(crate) struct Router {}

impl Router {
    /// Whether any route is registered; only then does the router take text messages.
    pub(crate) fn is_active(&self) -> bool {
        false
    }

    /// Routes one inbound text message. Errors are reported (error handler, error envelope, or
    /// a close, as configured); nothing here panics on bad input.
    pub(crate) async fn dispatch(&self, session: &Session, text: Text) {
        let _ = (session, text);
    }
}
