//! Requests with exactly one reply, both ways (docs/PROTOCOL.md, "Requests and replies"):
//! the reply to a client's request ([`Envelope::reply`], [`Reject`]), and the server's own
//! requests to a client ([`Ask::ask`]).

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use serde::{Deserialize, Deserializer, Serialize, de::DeserializeOwned};
use serde_json::Value;
use tokio::sync::oneshot;

use super::{EncodeError, Envelope};
use crate::{Session, SessionId, TrySendError};

/// The largest id JavaScript reads exactly (2⁵³−1).
pub const MAX_REQUEST_ID: u64 = (1 << 53) - 1;

/// The most requests one session may have waiting for a reply from its client.
const MAX_PENDING_PER_SESSION: usize = 1024;

/// `id`: absent, or an integer from 1 to [`MAX_REQUEST_ID`].
pub(crate) fn deserialize_id<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u64>, D::Error> {
    match Option::<u64>::deserialize(deserializer)? {
        Some(id @ 1..=MAX_REQUEST_ID) => Ok(Some(id)),
        Some(id) => Err(serde::de::Error::custom(format_args!(
            "id {id} is out of range (1 to 2^53-1)"
        ))),
        None => Ok(None),
    }
}

/// Whether a request was answered, shared by every clone of its envelope.
#[derive(Clone, Default)]
pub(crate) struct ReplySlot(Arc<AtomicBool>);

impl ReplySlot {
    /// Takes the right to answer; `false` when someone already did.
    pub(crate) fn take(&self) -> bool {
        !self.0.swap(true, Ordering::AcqRel)
    }
}

impl PartialEq for ReplySlot {
    /// Envelopes are equal by what they say, not by whether they were answered.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl fmt::Debug for ReplySlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.load(Ordering::Acquire) {
            "replied"
        } else {
            "open"
        })
    }
}

/// A refusal the client is meant to see: return it from a handler (`Err(Reject::new(..).into())`)
/// and a request gets `{"type":"error","id":…,"data":{"reason":…,"message":…}}`. Any other
/// handler error gets `{"reason":"internal error"}`, its details kept for the error handler.
///
/// ```
/// use melody::router::{Reject, Router};
///
/// let router = Router::new().on_request("withdraw", |session, amount: u64| async move {
///     if amount > 100 {
///         return Err(Reject::new("limit").message("at most 100 at once").into());
///     }
///     Ok(amount)
/// });
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{reason}")]
pub struct Reject {
    /// Machine-readable, e.g. `"forbidden"`.
    pub reason: String,
    /// For people; left out when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Reject {
    /// A refusal with this reason.
    #[must_use]
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            message: None,
        }
    }

    /// Adds a message for people.
    #[must_use]
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }
}

/// Why [`Envelope::reply`] sent nothing.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplyError {
    /// The envelope has no `id`: it is not a request.
    #[error("the envelope is not a request (no id)")]
    NotARequest,
    /// It was answered already (a request gets exactly one reply).
    #[error("the request was answered already")]
    AlreadyReplied,
    /// The reply's data is not JSON.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The session's queue refused it.
    #[error(transparent)]
    Send(#[from] TrySendError),
}

impl Envelope {
    /// Answers this request with `{"type":"reply","id":…,"data":data}`, now: the router then
    /// sends nothing more for it. A handler that answers itself can make sure the reply is
    /// queued before anything it sends next; otherwise the router answers when the handler
    /// returns (its value with [`Router::on_request`](super::Router::on_request), `null` with
    /// [`Router::on`](super::Router::on), or the error).
    ///
    /// # Errors
    ///
    /// [`ReplyError`]: not a request, answered already, data that is not JSON, a full queue.
    pub fn reply(&self, session: &Session, data: impl Serialize) -> Result<(), ReplyError> {
        let data = serde_json::to_value(data).map_err(EncodeError::from)?;
        self.answer(session, "reply", data)
    }

    /// Answers this request with `{"type":"error","id":…,"data":reject}`.
    ///
    /// # Errors
    ///
    /// As [`Envelope::reply`].
    pub fn reply_error(&self, session: &Session, reject: &Reject) -> Result<(), ReplyError> {
        let data = serde_json::to_value(reject).map_err(EncodeError::from)?;
        self.answer(session, "error", data)
    }

    fn answer(&self, session: &Session, kind: &str, data: Value) -> Result<(), ReplyError> {
        let id = self.id.ok_or(ReplyError::NotARequest)?;
        if !self.replied.take() {
            return Err(ReplyError::AlreadyReplied);
        }
        session.send(answer(kind, id, data))?;
        Ok(())
    }
}

/// `{"type":kind,"id":id,"data":data}` as a message.
pub(crate) fn answer(kind: &str, id: u64, data: Value) -> crate::Message {
    #[derive(Serialize)]
    struct Answer<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        id: u64,
        data: Value,
    }
    let text = serde_json::to_string(&Answer { kind, id, data })
        .expect("a JSON value with a string type encodes");
    crate::Message::text(text)
}

/// Why a request to a client ([`Ask::ask`]) has no answer.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AskError {
    /// No reply within the timeout.
    #[error("the client did not answer within {0:?}")]
    Timeout(Duration),
    /// The session disconnected before it answered.
    #[error("the session disconnected before answering")]
    Closed,
    /// The client answered with an error.
    #[error("the client refused: {}", .0.reason)]
    Rejected(Reject),
    /// The reply's data does not decode as the type asked for.
    #[error("the reply does not decode: {0}")]
    Decode(Arc<serde_json::Error>),
    /// The request's data is not JSON.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The session's queue refused the request.
    #[error(transparent)]
    Send(#[from] TrySendError),
    /// No router is plugged into the hub, so no reply could ever be read.
    #[error("no router is plugged into the session's hub")]
    NoRouter,
    /// The session already waits for 1,024 replies.
    #[error("too many requests waiting for this session")]
    TooMany,
}

/// The server's requests to clients: `session.ask(kind, data, timeout)` with this trait in
/// scope (feature `router`, the router plugged into the hub).
///
/// ```no_run
/// use std::time::Duration;
/// use melody::router::Ask;
///
/// # async fn demo(session: melody::Session) -> Result<(), melody::router::AskError> {
/// let confirmed: bool = session
///     .ask("confirm", "delete the room?", Duration::from_secs(10))
///     .await?;
/// # Ok(()) }
/// ```
pub trait Ask {
    /// Sends `{"type":kind,"id":…,"data":data}` and waits for the client's `reply` (decoded as
    /// an `R`) or `error`, at most `timeout`.
    fn ask<R: DeserializeOwned>(
        &self,
        kind: &str,
        data: impl Serialize,
        timeout: Duration,
    ) -> impl Future<Output = Result<R, AskError>> + Send;
}

impl Ask for Session {
    fn ask<R: DeserializeOwned>(
        &self,
        kind: &str,
        data: impl Serialize,
        timeout: Duration,
    ) -> impl Future<Output = Result<R, AskError>> + Send {
        let prepared = prepare(self, kind, data);
        async move {
            let (id, pending, receiver) = prepared?;
            let outcome = tokio::time::timeout(timeout, receiver).await;
            let outcome = match outcome {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(_)) => return Err(AskError::Closed),
                Err(_) => {
                    pending.forget(id);
                    return Err(AskError::Timeout(timeout));
                }
            };
            match outcome {
                Ok(value) => R::deserialize(value).map_err(|e| AskError::Decode(Arc::new(e))),
                Err(reject) => Err(AskError::Rejected(reject)),
            }
        }
    }
}

/// A client's answer: its `reply` data, or its `error`.
type Answer = Result<Value, Reject>;

/// A request to one session, by the session and the request's id.
type Key = (SessionId, u64);

type Waiting = (Key, Arc<Pending>, oneshot::Receiver<Answer>);

/// Registers a request and sends it; what to wait on.
fn prepare(session: &Session, kind: &str, data: impl Serialize) -> Result<Waiting, AskError> {
    let data = serde_json::to_value(data).map_err(EncodeError::from)?;
    let pending = session
        .melody()
        .plugins()
        .get::<Pending>()
        .ok_or(AskError::NoRouter)?;
    let (key, receiver) = pending.open(session.id())?;
    if let Err(error) = session.send(answer(kind, key.1, data)) {
        pending.forget(key);
        return Err(error.into());
    }
    Ok((key, pending, receiver))
}

type Replies = HashMap<u64, oneshot::Sender<Answer>>;

/// The hub's requests to clients that wait for a reply, by session (plug-in state of the
/// router).
#[derive(Default)]
pub(crate) struct Pending {
    next: AtomicU64,
    waiting: Mutex<HashMap<SessionId, Replies>>,
}

impl Pending {
    fn open(&self, session: SessionId) -> Result<(Key, oneshot::Receiver<Answer>), AskError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed) % MAX_REQUEST_ID + 1;
        let (sender, receiver) = oneshot::channel();
        let mut waiting = lock(&self.waiting);
        let replies = waiting.entry(session).or_default();
        if replies.len() >= MAX_PENDING_PER_SESSION {
            return Err(AskError::TooMany);
        }
        replies.insert(id, sender);
        Ok(((session, id), receiver))
    }

    fn forget(&self, (session, id): Key) {
        let mut waiting = lock(&self.waiting);
        if let Some(replies) = waiting.get_mut(&session) {
            replies.remove(&id);
            if replies.is_empty() {
                waiting.remove(&session);
            }
        }
    }

    /// Hands the client's answer to whoever waits for it; `false` for an id nobody waits for
    /// (answered late, or never asked).
    pub(crate) fn resolve(
        &self,
        session: SessionId,
        id: u64,
        answer: Result<Value, Reject>,
    ) -> bool {
        let sender = {
            let mut waiting = lock(&self.waiting);
            let Some(replies) = waiting.get_mut(&session) else {
                return false;
            };
            let sender = replies.remove(&id);
            if replies.is_empty() {
                waiting.remove(&session);
            }
            sender
        };
        sender.is_some_and(|sender| sender.send(answer).is_ok())
    }

    /// The session is gone: every request to it ends with [`AskError::Closed`].
    pub(crate) fn disconnected(&self, session: SessionId) {
        lock(&self.waiting).remove(&session);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        let parse = |json: &str| serde_json::from_str::<Envelope>(json).map(|e| e.id);
        assert_eq!(parse(r#"{"type":"x","id":1}"#).unwrap(), Some(1));
        assert_eq!(parse(r#"{"type":"x"}"#).unwrap(), None);
        assert_eq!(parse(r#"{"type":"x","id":null}"#).unwrap(), None);
        assert_eq!(
            parse(r#"{"type":"x","id":9007199254740991}"#).unwrap(),
            Some(MAX_REQUEST_ID)
        );
        for bad in ["0", "-1", "1.5", "\"7\"", "9007199254740992", "1e300"] {
            assert!(
                parse(&format!(r#"{{"type":"x","id":{bad}}}"#)).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn answers_have_the_wire_shape() {
        let message = answer("reply", 7, serde_json::json!({"ok": true}));
        assert_eq!(
            message.as_str(),
            Some(r#"{"type":"reply","id":7,"data":{"ok":true}}"#)
        );
        let reject = serde_json::to_value(Reject::new("forbidden")).unwrap();
        assert_eq!(reject, serde_json::json!({"reason": "forbidden"}));
    }

    #[test]
    fn a_reply_slot_is_taken_once_across_clones() {
        let slot = ReplySlot::default();
        let clone = slot.clone();
        assert!(slot.take());
        assert!(!clone.take());
    }

    #[test]
    fn pending_requests_resolve_once_and_forget() {
        let pending = Pending::default();
        let session = SessionId::from(5);
        let ((_, id), mut receiver) = pending.open(session).unwrap();
        assert!(!pending.resolve(session, id + 1, Ok(Value::Null)));
        assert!(pending.resolve(session, id, Ok(Value::from(3))));
        assert_eq!(receiver.try_recv().unwrap().unwrap(), Value::from(3));
        assert!(!pending.resolve(session, id, Ok(Value::Null)));
        assert!(lock(&pending.waiting).is_empty());
        let (_, receiver) = pending.open(session).unwrap();
        pending.disconnected(session);
        assert!(receiver.blocking_recv().is_err());
    }
}
