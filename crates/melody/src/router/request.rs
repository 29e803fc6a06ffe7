//! Requests with exactly one reply, both ways (docs/PROTOCOL.md, "Requests and replies"):
//! the reply to a client's request ([`Envelope::reply`], [`Reject`]), and the server's own
//! requests to a client ([`Ask::ask`]).

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
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

/// The request an envelope is, if any: its id, and whether it was answered, shared by every
/// clone of the envelope. The router takes the id off the envelope (so that an envelope
/// forwarded or broadcast by a handler never looks like a request to its recipients) and
/// keeps it here.
#[derive(Clone, Default)]
pub(crate) struct ReplySlot(Option<Arc<Slot>>);

struct Slot {
    id: u64,
    answered: AtomicBool,
}

impl ReplySlot {
    pub(crate) fn new(id: Option<u64>) -> Self {
        Self(id.map(|id| {
            Arc::new(Slot {
                id,
                answered: AtomicBool::new(false),
            })
        }))
    }

    /// The request's id.
    pub(crate) fn id(&self) -> Option<u64> {
        self.0.as_ref().map(|slot| slot.id)
    }

    /// Takes the right to answer: the id, or `None` when not a request or answered already.
    pub(crate) fn take(&self) -> Option<u64> {
        let slot = self.0.as_ref()?;
        (!slot.answered.swap(true, Ordering::AcqRel)).then_some(slot.id)
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
        match &self.0 {
            None => f.write_str("none"),
            Some(slot) => write!(
                f,
                "{} {}",
                slot.id,
                if slot.answered.load(Ordering::Acquire) {
                    "answered"
                } else {
                    "open"
                }
            ),
        }
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
        self.answer(session, "reply", data)
    }

    /// Answers this request with `{"type":"error","id":…,"data":reject}`.
    ///
    /// # Errors
    ///
    /// As [`Envelope::reply`].
    pub fn reply_error(&self, session: &Session, reject: &Reject) -> Result<(), ReplyError> {
        self.answer(session, "error", reject)
    }

    /// The id of the request this envelope is, as the client sent it (the router takes it off
    /// the envelope's `id` field, see [`Envelope::id`]).
    #[must_use]
    pub fn request_id(&self) -> Option<u64> {
        self.replied.id().or(self.id)
    }

    fn answer(
        &self,
        session: &Session,
        kind: &str,
        data: impl Serialize,
    ) -> Result<(), ReplyError> {
        if self.replied.id().is_none() {
            return Err(ReplyError::NotARequest);
        }
        // Encoded before the right to answer is taken: data that is not JSON leaves the
        // router to answer with an error.
        let encoded = encode_data(&data)?;
        let id = self.replied.take().ok_or(ReplyError::AlreadyReplied)?;
        session.send(answer_raw(kind, id, &encoded))?;
        Ok(())
    }
}

/// `data` as JSON text, once.
fn encode_data(data: &impl Serialize) -> Result<Box<serde_json::value::RawValue>, EncodeError> {
    Ok(serde_json::value::to_raw_value(data)?)
}

/// `{"type":kind,"id":id,"data":data}` as a message.
pub(crate) fn answer(kind: &str, id: u64, data: Value) -> crate::Message {
    let data = encode_data(&data).expect("a JSON value encodes");
    answer_raw(kind, id, &data)
}

/// `{"type":kind,"id":id,"data":<data as it is>}`: the data's bytes are not parsed again (a
/// number beyond f64 or a publication kept as raw JSON goes out exactly as it came).
fn answer_raw(kind: &str, id: u64, data: &serde_json::value::RawValue) -> crate::Message {
    #[derive(Serialize)]
    struct Answer<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        id: u64,
        data: &'a serde_json::value::RawValue,
    }
    let text = serde_json::to_string(&Answer { kind, id, data })
        .expect("raw JSON with a string type encodes");
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
    /// Asked from the handler of a message of the same session, in the default sequential
    /// mode: the session reads nothing until that handler returns, so the answer could never
    /// be read. Ask from another task (`tokio::spawn`), or turn on
    /// [`Config::concurrent_message_handling`](crate::Config).
    #[error("asked from the session's own handler, whose socket is not read until it returns")]
    InOwnHandler,
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
        // Encoded now (no side effect); registered and sent only when first polled.
        let data = encode_data(&data);
        let (session, kind) = (self.clone(), kind.to_owned());
        async move {
            if HANDLING.try_with(|id| *id == session.id()).unwrap_or(false) {
                return Err(AskError::InOwnHandler);
            }
            let (key, pending, receiver) = prepare(&session, &kind, &data?)?;
            // Forgotten however this future ends: answered, timed out, or dropped.
            let _forget = Forget {
                pending: &pending,
                key,
            };
            let outcome = match tokio::time::timeout(timeout, receiver).await {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(_)) => return Err(AskError::Closed),
                Err(_) => return Err(AskError::Timeout(timeout)),
            };
            match outcome {
                Ok(value) => R::deserialize(value).map_err(|e| AskError::Decode(Arc::new(e))),
                Err(reject) => Err(AskError::Rejected(reject)),
            }
        }
    }
}

tokio::task_local! {
    /// The session whose message the router is handling on this task, in sequential mode:
    /// its socket is not read until the handler returns, so it cannot answer an `ask`.
    pub(crate) static HANDLING: SessionId;
}

/// Takes a request out of the pending map when dropped.
struct Forget<'a> {
    pending: &'a Pending,
    key: Key,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.pending.forget(self.key);
    }
}

/// A client's answer: its `reply` data, or its `error`.
type Answer = Result<Value, Reject>;

/// A request to one session, by the session and the request's id.
type Key = (SessionId, u64);

type Waiting = (Key, Arc<Pending>, oneshot::Receiver<Answer>);

/// Registers a request and sends it; what to wait on.
fn prepare(
    session: &Session,
    kind: &str,
    data: &serde_json::value::RawValue,
) -> Result<Waiting, AskError> {
    let pending = session
        .melody()
        .plugins()
        .get::<Pending>()
        .ok_or(AskError::NoRouter)?;
    let (key, receiver) = pending.open(session.id())?;
    if let Err(error) = session.send(answer_raw(kind, key.1, data)) {
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
    waiting: Mutex<HashMap<SessionId, Replies>>,
}

impl Pending {
    fn open(&self, session: SessionId) -> Result<(Key, oneshot::Receiver<Answer>), AskError> {
        let (sender, receiver) = oneshot::channel();
        let mut waiting = lock(&self.waiting);
        let replies = waiting.entry(session).or_default();
        if replies.len() >= MAX_PENDING_PER_SESSION {
            return Err(AskError::TooMany);
        }
        // Random, so that no client can guess the id of a request made to another.
        let id = loop {
            let id = crate::core::random::u64() % MAX_REQUEST_ID + 1;
            if !replies.contains_key(&id) {
                break id;
            }
        };
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
        let slot = ReplySlot::new(Some(9));
        let clone = slot.clone();
        assert_eq!(slot.take(), Some(9));
        assert_eq!(clone.take(), None);
        assert_eq!(clone.id(), Some(9));
        assert_eq!(ReplySlot::default().take(), None);
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
