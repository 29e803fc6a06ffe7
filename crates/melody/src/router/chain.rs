//! The middleware chain ([`Next`]) and what it ends in: a route's handler, or a direct send to
//! another session.

use std::{fmt, future::Future, pin::Pin, sync::Arc};

use super::{BoxError, Envelope};
use crate::{SendToError, Session, SessionId};

pub(crate) type RouteFuture = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send + 'static>>;
pub(crate) type RouteFn = Arc<dyn Fn(Session, Envelope) -> RouteFuture + Send + Sync>;
pub(crate) type MiddlewareFn = Arc<dyn Fn(Session, Envelope, Next) -> RouteFuture + Send + Sync>;

/// The rest of the middleware chain, handed to each middleware. Call [`Next::run`] to go on, or
/// drop it to stop the message here.
pub struct Next {
    pub(crate) chain: Arc<[MiddlewareFn]>,
    pub(crate) index: usize,
    pub(crate) endpoint: Endpoint,
    /// The request the message is, re-attached at the end of the chain to whatever envelope
    /// the middleware hands on (one it built anew included).
    pub(crate) request: super::request::ReplySlot,
}

/// What the chain ends in.
#[derive(Clone)]
pub(crate) enum Endpoint {
    /// The handler of the envelope's type.
    Route(RouteFn),
    /// A direct send to the envelope's `target` (this one if a middleware removed it).
    Forward(String),
}

impl Next {
    /// Runs the next middleware, or at the end of the chain the handler (or the direct send).
    ///
    /// # Errors
    ///
    /// Whatever the rest of the chain returns.
    pub fn run(
        mut self,
        session: Session,
        mut envelope: Envelope,
    ) -> impl Future<Output = Result<(), BoxError>> + Send + 'static {
        match self.chain.get(self.index).cloned() {
            Some(middleware) => {
                self.index += 1;
                middleware(session, envelope, self)
            }
            None => match self.endpoint {
                Endpoint::Route(handler) => {
                    envelope.replied = self.request;
                    envelope.id = None;
                    handler(session, envelope)
                }
                Endpoint::Forward(target) => Box::pin(async move {
                    envelope.replied = self.request;
                    envelope.id = None;
                    forward(&session, envelope, target);
                    Ok(())
                }),
            },
        }
    }
}

impl fmt::Debug for Next {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Next")
            .field("remaining", &(self.chain.len() - self.index))
            .finish_non_exhaustive()
    }
}

/// Delivers a direct send, or tells the sender its target is not connected. A direct send is
/// never a request to its recipient: its `id` stays with the sender, whose request the router
/// answers (with `null` once delivered).
fn forward(sender: &Session, mut envelope: Envelope, fallback: String) {
    let replied = envelope.replied.clone();
    let target = envelope.target.clone().unwrap_or(fallback);
    envelope.from = Some(sender.id().to_string());
    envelope.target = Some(target.clone());
    // Only the id's exact decimal form names it: no sign, no leading zeros.
    let delivered = match target.parse::<SessionId>() {
        // A full queue is reported by the send itself; only a target that is gone counts.
        Ok(id) => !matches!(
            sender.melody().session(id).send(envelope),
            Err(SendToError::NotConnected(_) | SendToError::Closed(_))
        ),
        Err(_) => false,
    };
    if !delivered {
        tracing::debug!(session = %sender.id(), %target, "direct send to a session not connected");
        let request = replied.take();
        refuse(
            sender,
            request,
            serde_json::json!({ "reason": "target not connected", "target": target }),
        );
    }
}

/// Sends the sender an `error` envelope, as the answer to request `id` when there is one; a
/// failure to queue it is only logged.
pub(crate) fn refuse(session: &Session, id: Option<u64>, data: serde_json::Value) {
    let message = match id {
        Some(id) => super::request::answer("error", id, data),
        None => match Envelope::encode("error", data) {
            Ok(message) => message,
            Err(_) => return,
        },
    };
    if let Err(error) = session.send(message) {
        tracing::debug!(session = %session.id(), %error, "could not send an error envelope");
    }
}
