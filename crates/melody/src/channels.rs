//! A session as typed async channels (Macaron's `sockets`): write a whole connection as one
//! `tokio::select!` loop.
//!
//! A [`Binding`] turns every connection into a [`Channels`] value and runs your async function
//! with it, in its own task:
//!
//! | field | direction | what it is |
//! |---|---|---|
//! | [`receiver`](Channels::receiver) | in | the client's messages, decoded into `T` |
//! | [`sender`](Channels::sender) | out | values of `T` to send, encoded as frames |
//! | [`done`](Channels::done) | in | resolves once the connection has ended, for any reason |
//! | [`disconnect`](Channels::disconnect) | out | closes the connection with a chosen code |
//! | [`errors`](Channels::errors) | in | what went wrong: undecodable messages, timeouts, … |
//! | [`session`](Channels::session) | — | the underlying [`Session`] (id, request, keys, topics) |
//!
//! How frames map to `T` is the [`Codec`]'s job: [`Binding::json`] for any serde type (seed
//! `sockets.JSON`), [`Binding::text`] for `String` (`sockets.Messages`), [`Binding::binary`] for
//! [`Bytes`] (`sockets.ByteSliceMessages`), [`Binding::with_codec`] for your own.
//!
//! It is built on the hub, not beside it: a binding owns a [`Melody`] configured from its
//! [`Options`], so upgrades, pings, timeouts, limits, close codes and broadcasting work exactly
//! as for any hub ([`Binding::melody`]).
//!
//! # Example: the seed's contrived echo
//!
//! Every message is echoed; after 30 minutes the connection is closed with 1000 no matter what.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use axum::{Router, routing::get};
//! use melody::{CloseCode, channels::{Binding, Channels, Options}};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Message {
//!     text: String,
//! }
//!
//! # async fn serve() -> std::io::Result<()> {
//! let binding = Binding::json(Options::default(), |mut ch: Channels<Message>| async move {
//!     let deadline = tokio::time::sleep(Duration::from_secs(30 * 60));
//!     tokio::pin!(deadline);
//!     let mut closing = false;
//!     loop {
//!         tokio::select! {
//!             Some(message) = ch.receiver.recv() => {
//!                 // Echo. In your app, collect the senders of different clients and do
//!                 // something useful with them.
//!                 if ch.sender.send(message).await.is_err() {
//!                     break;
//!                 }
//!             }
//!             () = &mut deadline, if !closing => {
//!                 // Close after 30 minutes no matter what, with any RFC 6455 code.
//!                 closing = true;
//!                 let _ = ch.disconnect.close(CloseCode::NORMAL_CLOSURE, "time is up");
//!             }
//!             // The connection has ended (the client left, or our close went through).
//!             () = ch.done.wait() => break,
//!             // A message that did not decode, a timeout, a protocol error…: reported, and
//!             // the connection goes on unless the error itself ended it.
//!             Some(error) = ch.errors.recv() => tracing::warn!(%error, "socket error"),
//!         }
//!     }
//! });
//!
//! let app = Router::new().route("/", get(binding.handler()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:5000").await?;
//! melody::serve(listener, app).await
//! # }
//! ```
//!
//! # Lifetime of a connection
//!
//! 1. The upgrade request is checked (method, headers, [`Options::allowed_origin`]); a refusal is
//!    an HTTP status (403 for a foreign origin) and your function never runs.
//! 2. Once the connection is upgraded, its channels are created and your function is spawned
//!    with them. It runs as long as the connection: when it **returns**, the connection is closed
//!    with 1000 Normal Closure (after the values already given to `sender`); when it
//!    **panics**, with 1011.
//! 3. When the connection ends, whoever ended it, [`done`](Channels::done) fires, then
//!    `receiver` and `errors` yield what they still hold and then `None`, and `sender` refuses
//!    new values.
//!
//! # Buffers and backpressure
//!
//! - `receiver` holds [`Options::recv_channel_buffer`] messages. When it is full the connection
//!   **waits** (it stops reading the socket, so TCP pushes back on the client): no message is
//!   ever dropped for want of room. Pings are still sent meanwhile. A message still waiting for
//!   room when you call [`Disconnect::close`] is dropped.
//! - `sender` holds [`Options::send_channel_buffer`] values; `send().await` waits for room. The
//!   session's own outbound queue ([`Config::message_buffer_size`]) sits behind it.
//! - `errors` holds [`Options::recv_channel_buffer`] errors; when it is full, further errors are
//!   dropped (and traced at debug level), never waited for.
//!
//! # Ordering
//!
//! Messages arrive on `receiver` in the order the client sent them; values given to `sender`
//! are written in order, and before a close requested afterwards by [`Disconnect::close`] or by
//! returning. After `done` fires, `receiver` may still hold messages that arrived before the end:
//! drain it if they matter.
//!
//! # Logging
//!
//! The seed's `Logger`, `LogLevel` and `SkipLogging` options have no counterpart: the hub emits
//! `tracing` events (spans per session), which a subscriber filters and formats.

use std::{
    fmt,
    future::Future,
    marker::PhantomData,
    panic::AssertUnwindSafe,
    pin::Pin,
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use futures_util::FutureExt;
use http::{Request, header, request::Parts};
use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::{Notify, mpsc};

pub use crate::router::BoxError;
use crate::{
    CheckOrigin, CloseCode, CloseFrame, Config, Error, Melody, Message, Session, Text,
    UpgradeResponse,
};

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
type RunFn<T> = dyn Fn(Channels<T>) -> BoxFuture + Send + Sync;

/// How long a "zero" write wait lasts: the seed's zero means "never time out".
const NO_WRITE_TIMEOUT: Duration = Duration::from_secs(60 * 60 * 24 * 365);

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

/// The seed's options for a [`Binding`], with the seed's defaults.
///
/// | option | default |
/// |---|---|
/// | [`write_wait`](Self::write_wait) | 60 s |
/// | [`pong_wait`](Self::pong_wait) | 60 s |
/// | [`ping_period`](Self::ping_period) | 48 s (8/10 of the pong wait) |
/// | [`max_message_size`](Self::max_message_size) | 65536 bytes |
/// | [`send_channel_buffer`](Self::send_channel_buffer) | 10 |
/// | [`recv_channel_buffer`](Self::recv_channel_buffer) | 10 |
/// | [`allowed_origin`](Self::allowed_origin) | `https?://{{host}}$` |
///
/// ```
/// use std::time::Duration;
/// use melody::channels::Options;
///
/// let options = Options::default()
///     .pong_wait(Duration::from_secs(30))
///     .ping_period(Duration::from_secs(24))
///     .recv_channel_buffer(64)
///     .allowed_origin("https://{{host}}$")?;
/// assert_eq!(options.max_message_size, 65536);
/// # Ok::<(), melody::channels::InvalidPattern>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Options {
    /// How long a write may take before the connection is closed as stalled. Zero means writes
    /// never time out (as in the seed). Default 60 s.
    pub write_wait: Duration,
    /// How long to wait for a pong (answer to our pings) before the connection is closed as
    /// dead. Default 60 s.
    pub pong_wait: Duration,
    /// How often a ping is sent; must be shorter than `pong_wait` (a longer one is shortened to
    /// 9/10 of it). Default 48 s.
    pub ping_period: Duration,
    /// Largest inbound message in bytes; a bigger one closes the connection with 1009 Message
    /// Too Big and is reported on `errors`. Outbound messages are not limited. Default 65536.
    pub max_message_size: usize,
    /// Capacity of [`Channels::sender`] (0 is raised to 1). Default 10.
    pub send_channel_buffer: usize,
    /// Capacity of [`Channels::receiver`] and of [`Channels::errors`] (0 is raised to 1).
    /// Default 10.
    pub recv_channel_buffer: usize,
    /// Which `Origin` may connect. Default `https?://{{host}}$`: a page served by this same
    /// host, over http or https.
    pub allowed_origin: AllowedOrigin,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            write_wait: Duration::from_secs(60),
            pong_wait: Duration::from_secs(60),
            ping_period: Duration::from_secs(60) * 8 / 10,
            max_message_size: 65536,
            send_channel_buffer: 10,
            recv_channel_buffer: 10,
            allowed_origin: AllowedOrigin::default(),
        }
    }
}

impl Options {
    /// Sets [`Options::write_wait`] (zero: never time out).
    #[must_use]
    pub fn write_wait(mut self, wait: Duration) -> Self {
        self.write_wait = wait;
        self
    }

    /// Sets [`Options::pong_wait`].
    #[must_use]
    pub fn pong_wait(mut self, wait: Duration) -> Self {
        self.pong_wait = wait;
        self
    }

    /// Sets [`Options::ping_period`].
    #[must_use]
    pub fn ping_period(mut self, period: Duration) -> Self {
        self.ping_period = period;
        self
    }

    /// Sets [`Options::max_message_size`] in bytes.
    #[must_use]
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Sets [`Options::send_channel_buffer`].
    #[must_use]
    pub fn send_channel_buffer(mut self, values: usize) -> Self {
        self.send_channel_buffer = values;
        self
    }

    /// Sets [`Options::recv_channel_buffer`].
    #[must_use]
    pub fn recv_channel_buffer(mut self, messages: usize) -> Self {
        self.recv_channel_buffer = messages;
        self
    }

    /// Sets [`Options::allowed_origin`] from a pattern (see [`AllowedOrigin`] for the syntax).
    ///
    /// # Errors
    ///
    /// [`InvalidPattern`] when the pattern uses syntax outside the supported subset.
    pub fn allowed_origin(mut self, pattern: &str) -> Result<Self, InvalidPattern> {
        self.allowed_origin = AllowedOrigin::new(pattern)?;
        Ok(self)
    }

    /// The hub configuration these options stand for: the waits, the ping period and the size
    /// limit carried over, the origin pattern as a [`CheckOrigin::Custom`] predicate, everything
    /// else at [`Config`]'s defaults.
    #[must_use]
    pub fn config(&self) -> Config {
        let origin = self.allowed_origin.clone();
        let write_wait = if self.write_wait.is_zero() {
            NO_WRITE_TIMEOUT
        } else {
            self.write_wait
        };
        Config::default()
            .write_wait(write_wait)
            .pong_wait(self.pong_wait)
            .ping_period(self.ping_period)
            .max_message_size(self.max_message_size)
            .check_origin(CheckOrigin::custom(move |req| origin.allows(req)))
    }
}

// ---------------------------------------------------------------------------------------------
// Allowed origin
// ---------------------------------------------------------------------------------------------

/// The seed's `AllowedOrigin`: a small regex-like pattern over the `Origin` header, where
/// `{{host}}` stands for the request's `Host`.
///
/// A request without an `Origin` header (not a browser) is always allowed; one whose origin
/// does not match gets 403 Forbidden.
///
/// # Syntax
///
/// The seed compiles the pattern as a Go regular expression. This is the subset that real
/// origin patterns use, matched **case-insensitively** and always **from the start** of the
/// origin (as if it began with `^`):
///
/// | syntax | meaning |
/// |---|---|
/// | `{{host}}` | the request's `Host` header (with its port, if any), matched literally |
/// | `x?` | the character `x` or nothing (`https?` is `http` or `https`) |
/// | `*` or `.*` | any run of characters, possibly empty |
/// | `$` (at the end only) | the origin ends here; without it the pattern matches a prefix |
/// | `^` (at the start only) | allowed, changes nothing |
/// | `\.`, `\-`, … | the punctuation character itself |
/// | `.` | a literal dot (unlike a regex, where it is any character) |
/// | any other ASCII character | itself |
///
/// Anything else — groups `( )`, classes `[ ]` and `\d`, alternation `|`, `+`, counted
/// repetition `{n}`, other braces, non-ASCII characters — is refused by [`AllowedOrigin::new`].
///
/// Mind the `$`: `https?://{{host}}` without it also accepts `http://{{host}}.evil.example`,
/// just as the regular expression would.
///
/// ```
/// use melody::channels::AllowedOrigin;
///
/// let same_host = AllowedOrigin::new("https?://{{host}}$")?;
/// assert!(same_host.matches("http://example.com:8080", Some("example.com:8080")));
/// assert!(same_host.matches("https://EXAMPLE.com:8080", Some("example.com:8080")));
/// assert!(!same_host.matches("https://example.com.evil.io", Some("example.com")));
///
/// let subdomains = AllowedOrigin::new(r"https://*\.example\.com$")?;
/// assert!(subdomains.matches("https://app.example.com", None));
/// assert!(!subdomains.matches("https://example.org", None));
///
/// assert!(AllowedOrigin::new("https?://(a|b).com").is_err());
/// # Ok::<(), melody::channels::InvalidPattern>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedOrigin {
    pattern: String,
    tokens: Vec<Token>,
    anchored_end: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    /// One character (lowercase ASCII).
    Literal(u8),
    /// One character or nothing.
    Optional(u8),
    /// The request's host.
    Host,
    /// Any run of characters.
    Any,
}

/// An origin pattern that uses syntax outside what [`AllowedOrigin`] supports.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid allowed-origin pattern {pattern:?} at byte {position}: {reason}")]
pub struct InvalidPattern {
    /// The pattern as given.
    pub pattern: String,
    /// Where in the pattern (in bytes) the problem is.
    pub position: usize,
    /// What is wrong.
    pub reason: &'static str,
}

const HOST_PLACEHOLDER: &[u8] = b"{{host}}";

impl Default for AllowedOrigin {
    /// The seed's default, `https?://{{host}}$`: same host, http or https.
    fn default() -> Self {
        Self::new("https?://{{host}}$").expect("the default pattern is valid")
    }
}

impl AllowedOrigin {
    /// Parses a pattern (see the [syntax](Self#syntax)).
    ///
    /// # Errors
    ///
    /// [`InvalidPattern`] for syntax outside the supported subset, naming the position.
    pub fn new(pattern: &str) -> Result<Self, InvalidPattern> {
        let invalid = |position: usize, reason: &'static str| InvalidPattern {
            pattern: pattern.to_owned(),
            position,
            reason,
        };
        let bytes = pattern.as_bytes();
        let mut tokens = Vec::new();
        let mut anchored_end = false;
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            let token = match b {
                b'^' if i == 0 => {
                    i += 1;
                    continue;
                }
                b'^' => return Err(invalid(i, "`^` is only supported at the start")),
                b'$' if i + 1 == bytes.len() => {
                    anchored_end = true;
                    i += 1;
                    continue;
                }
                b'$' => return Err(invalid(i, "`$` is only supported at the end")),
                b'{' if bytes[i..].starts_with(HOST_PLACEHOLDER) => {
                    i += HOST_PLACEHOLDER.len();
                    tokens.push(Token::Host);
                    continue;
                }
                b'{' | b'}' => return Err(invalid(i, "braces are only supported in `{{host}}`")),
                b'.' if bytes.get(i + 1) == Some(&b'*') => {
                    i += 1;
                    Token::Any
                }
                b'*' => Token::Any,
                b'?' => match tokens.last_mut() {
                    Some(last @ Token::Literal(_)) => {
                        let Token::Literal(c) = *last else {
                            unreachable!("matched a literal")
                        };
                        *last = Token::Optional(c);
                        i += 1;
                        continue;
                    }
                    _ => return Err(invalid(i, "`?` must follow a plain character")),
                },
                b'\\' => match bytes.get(i + 1) {
                    Some(&c) if c.is_ascii_punctuation() => {
                        i += 1;
                        Token::Literal(c)
                    }
                    Some(_) => {
                        return Err(invalid(
                            i,
                            "escapes other than `\\` + punctuation are not supported",
                        ));
                    }
                    None => return Err(invalid(i, "the pattern ends with a lone `\\`")),
                },
                b'(' | b')' | b'[' | b']' | b'|' | b'+' => {
                    return Err(invalid(
                        i,
                        "groups, classes, alternation and `+` are not supported",
                    ));
                }
                c if c.is_ascii() && !c.is_ascii_control() => {
                    Token::Literal(c.to_ascii_lowercase())
                }
                _ => return Err(invalid(i, "only printable ASCII characters are supported")),
            };
            if !(token == Token::Any && tokens.last() == Some(&Token::Any)) {
                tokens.push(token);
            }
            i += 1;
        }
        Ok(Self {
            pattern: pattern.to_owned(),
            tokens,
            anchored_end,
        })
    }

    /// The pattern as given.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether `origin` matches, with `host` standing in for `{{host}}` (a pattern that uses
    /// `{{host}}` matches nothing when `host` is `None` or empty).
    ///
    /// Runs in time proportional to the pattern's length times the origin's.
    #[must_use]
    pub fn matches(&self, origin: &str, host: Option<&str>) -> bool {
        let (s, host) = (origin.as_bytes(), host.unwrap_or("").as_bytes());
        let n = s.len();
        // `next[j]`: whether the tokens after the current one match `s[j..]`.
        let mut next: Vec<bool> = (0..=n).map(|j| !self.anchored_end || j == n).collect();
        let mut current = vec![false; n + 1];
        for token in self.tokens.iter().rev() {
            for j in (0..=n).rev() {
                let char_is = |c: u8| j < n && s[j].to_ascii_lowercase() == c;
                current[j] = match *token {
                    Token::Literal(c) => char_is(c) && next[j + 1],
                    Token::Optional(c) => next[j] || (char_is(c) && next[j + 1]),
                    Token::Host => {
                        !host.is_empty()
                            && s[j..].len() >= host.len()
                            && s[j..j + host.len()].eq_ignore_ascii_case(host)
                            && next[j + host.len()]
                    }
                    Token::Any => next[j] || (j < n && current[j + 1]),
                };
            }
            std::mem::swap(&mut next, &mut current);
        }
        next[0]
    }

    /// The check on an upgrade request: no `Origin` passes; otherwise it must match, with the
    /// `Host` header (or the URI's authority, for HTTP/2) as `{{host}}`.
    fn allows(&self, req: &Parts) -> bool {
        let Some(origin) = req.headers.get(header::ORIGIN) else {
            return true;
        };
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        let host = req
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri.authority().map(|a| a.as_str()));
        self.matches(origin, host)
    }
}

impl FromStr for AllowedOrigin {
    type Err = InvalidPattern;

    fn from_str(pattern: &str) -> Result<Self, Self::Err> {
        Self::new(pattern)
    }
}

impl fmt::Display for AllowedOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

// ---------------------------------------------------------------------------------------------
// Codecs
// ---------------------------------------------------------------------------------------------

/// How frames map to values of `T`, both ways.
///
/// Implement it to carry your own format (MessagePack, CBOR, a line protocol) and bind it with
/// [`Binding::with_codec`].
pub trait Codec<T>: Send + Sync + 'static {
    /// Turns an inbound text or binary message into a value. An error is reported on
    /// [`Channels::errors`] as [`ChannelError::Decode`]; the connection stays open.
    ///
    /// # Errors
    ///
    /// When the message is not a valid `T`.
    fn decode(&self, message: Message) -> Result<T, BoxError>;

    /// Turns a value given to [`Channels::sender`] into a message to send. An error is
    /// reported on [`Channels::errors`] as [`ChannelError::Encode`]; nothing is sent.
    ///
    /// # Errors
    ///
    /// When the value cannot be encoded.
    fn encode(&self, value: T) -> Result<Message, BoxError>;
}

/// JSON through serde (the seed's `sockets.JSON`): text or binary frames in, text frames of
/// `serde_json::to_string` out.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonCodec;

impl<T: Serialize + DeserializeOwned> Codec<T> for JsonCodec {
    fn decode(&self, message: Message) -> Result<T, BoxError> {
        Ok(serde_json::from_slice(message.as_bytes())?)
    }

    fn encode(&self, value: T) -> Result<Message, BoxError> {
        Ok(Message::text(serde_json::to_string(&value)?))
    }
}

/// Strings (the seed's `sockets.Messages`): text frames in (and binary frames that are valid
/// UTF-8; others are a decode error), text frames out.
#[derive(Clone, Copy, Debug, Default)]
pub struct StringCodec;

impl Codec<String> for StringCodec {
    fn decode(&self, message: Message) -> Result<String, BoxError> {
        match message.as_str() {
            Some(text) => Ok(text.to_owned()),
            None => Ok(std::str::from_utf8(message.as_bytes())?.to_owned()),
        }
    }

    fn encode(&self, value: String) -> Result<Message, BoxError> {
        Ok(Message::text(value))
    }
}

/// Bytes (the seed's `sockets.ByteSliceMessages`): binary frames in (text frames too, as their
/// UTF-8 bytes), binary frames out. Never copies a payload.
#[derive(Clone, Copy, Debug, Default)]
pub struct BytesCodec;

impl Codec<Bytes> for BytesCodec {
    fn decode(&self, message: Message) -> Result<Bytes, BoxError> {
        Ok(message.into_payload())
    }

    fn encode(&self, value: Bytes) -> Result<Message, BoxError> {
        Ok(Message::binary(value))
    }
}

// ---------------------------------------------------------------------------------------------
// Channels
// ---------------------------------------------------------------------------------------------

/// What went wrong on a connection, as delivered on [`Channels::errors`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// An inbound message did not decode into the channel's type. It was dropped; the
    /// connection stays open.
    #[error("message did not decode: {source}")]
    Decode {
        /// The message as received.
        message: Message,
        /// Why it did not decode.
        #[source]
        source: BoxError,
    },
    /// A value given to [`Channels::sender`] did not encode. Nothing was sent; the connection
    /// stays open.
    #[error("value did not encode: {0}")]
    Encode(#[source] BoxError),
    /// The hub reported an error for this session (what [`Melody::handle_error`] sees): a
    /// timeout, an oversized message, a protocol violation… It may have ended the connection
    /// ([`Error::close_code`] tells); then [`Channels::done`] follows.
    #[error(transparent)]
    Session(Error),
}

/// One connection as typed channels, handed to the function of a [`Binding`].
///
/// The fields are public so that a `select!` loop can borrow them separately (or you can
/// destructure the value and move each part where it is needed).
#[non_exhaustive]
pub struct Channels<T> {
    /// The client's messages, decoded. Yields `None` after the connection has ended and the
    /// buffered messages have been taken.
    pub receiver: mpsc::Receiver<T>,
    /// Values to send to the client, encoded by the codec. `send` fails once the connection is
    /// ending.
    pub sender: mpsc::Sender<T>,
    /// Resolves once the connection has ended.
    pub done: Done,
    /// Closes the connection with a chosen code and reason.
    pub disconnect: Disconnect,
    /// Errors, as they happen. Yields `None` after the connection has ended and the buffered
    /// errors have been taken.
    pub errors: mpsc::Receiver<ChannelError>,
    /// The underlying session: its id, request, keys, topics, and its hub
    /// ([`Session::melody`]) for broadcasting.
    pub session: Session,
}

impl<T> Channels<T> {
    /// The underlying session.
    #[must_use]
    pub fn session(&self) -> &Session {
        &self.session
    }
}

impl<T> fmt::Debug for Channels<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channels")
            .field("session", &self.session.id())
            .field("done", &self.done.is_done())
            .finish_non_exhaustive()
    }
}

/// A one-shot signal shared between tasks: fires once, stays fired.
#[derive(Default)]
struct Signal {
    fired: AtomicBool,
    notify: Notify,
}

impl Signal {
    /// Fires; `true` the first time.
    fn fire(&self) -> bool {
        let first = !self.fired.swap(true, Ordering::AcqRel);
        self.notify.notify_waiters();
        first
    }

    fn is_fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }

    async fn wait(&self) {
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
pub struct Done(Arc<Signal>);

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
/// Values already given to [`Channels::sender`] are written before the close frame. Cheap to
/// clone.
#[derive(Clone)]
pub struct Disconnect(Arc<Closer>);

struct Closer {
    session: Session,
    /// To the outbound pump, which writes what is pending, then closes.
    requests: mpsc::UnboundedSender<CloseFrame>,
    /// Fired on the first close request: inbound messages stop waiting for room.
    closing: Arc<Signal>,
}

impl Closer {
    fn close(&self, frame: CloseFrame) -> Result<(), Error> {
        if frame.code().is_reserved() && frame.code() != CloseCode::NO_STATUS_RECEIVED {
            return Err(Error::ReservedCloseCode(frame.code()));
        }
        if self.session.is_closed() || !self.closing.fire() {
            return Err(Error::SessionClosed);
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
    /// already given to the sender. [`Channels::done`] fires once the closing handshake is over.
    ///
    /// # Errors
    ///
    /// [`Error::ReservedCloseCode`] for 1004, 1006 or 1015 (1005 sends a close frame without a
    /// code); [`Error::SessionClosed`] when the connection is already closed or closing.
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.0.close(CloseFrame::new(code, reason))
    }

    /// Closes the connection with 1000 Normal Closure and no reason.
    ///
    /// # Errors
    ///
    /// As [`Disconnect::close`].
    pub fn close_normal(&self) -> Result<(), Error> {
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

// ---------------------------------------------------------------------------------------------
// Binding
// ---------------------------------------------------------------------------------------------

/// Binds connections to [`Channels`] of `T` and runs an async function for each.
///
/// Mount it in axum with [`Binding::handler`] or serve it from hyper with
/// [`Binding::handle_request`]. Cheap to clone.
///
/// ```
/// use axum::{Router, routing::get};
/// use melody::channels::{Binding, Channels, Options};
///
/// // Strings: an upper-casing echo.
/// let binding = Binding::text(Options::default(), |mut ch: Channels<String>| async move {
///     while let Some(text) = ch.receiver.recv().await {
///         if ch.sender.send(text.to_uppercase()).await.is_err() {
///             break;
///         }
///     }
/// });
/// let app: Router = Router::new().route("/ws", get(binding.handler()));
/// ```
pub struct Binding<T> {
    melody: Melody,
    _item: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Binding<T> {
    fn clone(&self) -> Self {
        Self {
            melody: self.melody.clone(),
            _item: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Binding<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Binding")
            .field("item", &std::any::type_name::<T>())
            .field("melody", &self.melody)
            .finish()
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Binding<T> {
    /// JSON messages decoded into `T` with serde, `T` sent as JSON text (the seed's
    /// `sockets.JSON`). See [`JsonCodec`].
    pub fn json<F, Fut>(options: Options, f: F) -> Self
    where
        F: Fn(Channels<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self::with_codec(JsonCodec, options, f)
    }
}

impl Binding<String> {
    /// Text messages as `String`s (the seed's `sockets.Messages`). See [`StringCodec`].
    pub fn text<F, Fut>(options: Options, f: F) -> Self
    where
        F: Fn(Channels<String>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self::with_codec(StringCodec, options, f)
    }
}

impl Binding<Bytes> {
    /// Binary messages as [`Bytes`] (the seed's `sockets.ByteSliceMessages`). See
    /// [`BytesCodec`].
    pub fn binary<F, Fut>(options: Options, f: F) -> Self
    where
        F: Fn(Channels<Bytes>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self::with_codec(BytesCodec, options, f)
    }
}

impl<T: Send + 'static> Binding<T> {
    /// Binds with any [`Codec`]. `f` runs once per connection, in its own task; the
    /// connection is closed with 1000 when it returns (1011 if it panics).
    ///
    /// The function should reach the hub through [`Channels::session`] rather than capture
    /// this binding (a captured binding keeps its own hub alive).
    pub fn with_codec<C, F, Fut>(codec: C, options: Options, f: F) -> Self
    where
        C: Codec<T>,
        F: Fn(Channels<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let shared = Arc::new(Shared {
            codec: Box::new(codec),
            run: Box::new(move |channels| Box::pin(f(channels))),
            send_buffer: options.send_channel_buffer.max(1),
            recv_buffer: options.recv_channel_buffer.max(1),
        });
        let melody = Melody::with_config(options.config());
        let (connect, text_shared, binary) = (shared.clone(), shared.clone(), shared);
        melody
            .handle_connect(move |session| connect.connect(session))
            .handle_disconnect(|session| {
                // Dropping the state closes `receiver` and `errors` (after what they hold).
                // The pump then closes `sender` and fires `done`.
                if let Some(state) = session.remove_ext::<Arc<State<T>>>() {
                    state.ended.fire();
                }
            })
            .handle_message_async(move |session, text: Text| {
                let shared = text_shared.clone();
                async move { shared.inbound(&session, Message::from(text)).await }
            })
            .handle_message_binary_async(move |session, bytes| {
                let shared = binary.clone();
                async move { shared.inbound(&session, Message::binary(bytes)).await }
            })
            .handle_error(|session, error| {
                if let Some(state) = session.get_ext::<Arc<State<T>>>() {
                    state.report(ChannelError::Session(copy_error(error)));
                }
            });
        Self {
            melody,
            _item: PhantomData,
        }
    }

    /// The hub behind this binding: for [`Melody::broadcast`], [`Melody::len`],
    /// [`Melody::close`], topics, or an auth hook ([`Melody::handle_auth`]).
    ///
    /// The binding owns the hub's connect, disconnect, message, binary message and error
    /// handlers; setting one of those replaces the binding's and breaks it. The other handlers
    /// (auth, close, pong, sent) are free to use.
    #[must_use]
    pub fn melody(&self) -> &Melody {
        &self.melody
    }

    /// Upgrades a request and binds the new connection (for hyper; see
    /// [`Melody::handle_request`], whose rules apply).
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use hyper::{Request, body::Incoming, service::service_fn};
    /// use melody::{Bytes, channels::{Binding, Channels, Options}};
    ///
    /// let binding = Binding::binary(Options::default(), |mut ch: Channels<Bytes>| async move {
    ///     while let Some(bytes) = ch.receiver.recv().await {
    ///         let _ = ch.sender.send(bytes).await;
    ///     }
    /// });
    /// let service = service_fn(move |req: Request<Incoming>| {
    ///     let upgrade = binding.handle_request(req);
    ///     async move { Ok::<_, Infallible>(upgrade.await) }
    /// });
    /// # let _ = service;
    /// ```
    #[must_use = "the response must be sent for the upgrade to happen"]
    pub fn handle_request<B>(
        &self,
        req: Request<B>,
    ) -> impl Future<Output = UpgradeResponse> + Send + use<T, B> {
        self.melody.handle_request(req)
    }

    /// An axum handler that upgrades requests and binds the connections (feature `axum`).
    #[cfg(feature = "axum")]
    #[must_use = "mount the handler on a route"]
    pub fn handler(
        &self,
    ) -> impl Fn(
        axum::extract::Request,
    ) -> futures_util::future::BoxFuture<'static, axum::response::Response>
    + Clone
    + Send
    + Sync
    + 'static {
        self.melody.handler()
    }
}

/// What a binding shares with its hub's handlers.
struct Shared<T> {
    codec: Box<dyn Codec<T>>,
    run: Box<RunFn<T>>,
    send_buffer: usize,
    recv_buffer: usize,
}

/// A session's end of its channels, kept in the session's typed extensions until it ends.
struct State<T> {
    inbound: mpsc::Sender<T>,
    errors: mpsc::Sender<ChannelError>,
    closing: Arc<Signal>,
    /// Fired by the disconnect handler; the pump fires `done` after it.
    ended: Arc<Signal>,
}

impl<T> State<T> {
    /// Reports an error without ever waiting; dropped when the errors channel is full.
    fn report(&self, error: ChannelError) {
        if let Err(mpsc::error::TrySendError::Full(error)) = self.errors.try_send(error) {
            tracing::debug!(%error, "channels: errors channel full, error dropped");
        }
    }
}

impl<T: Send + 'static> Shared<T> {
    /// Creates the session's channels and starts its function and its outbound pump.
    fn connect(self: &Arc<Self>, session: &Session) {
        let (inbound, receiver) = mpsc::channel(self.recv_buffer);
        let (sender, outbound) = mpsc::channel(self.send_buffer);
        let (errors_tx, errors) = mpsc::channel(self.recv_buffer);
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
    async fn inbound(&self, session: &Session, message: Message) {
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
            Ok(message) => session.write_async(message).await.is_ok(),
            Err(error) => {
                if let Some(state) = session.get_ext::<Arc<State<T>>>() {
                    state.report(ChannelError::Encode(error));
                }
                true
            }
        }
    }
}

/// An owned copy of an error the hub reported by reference (transport errors keep their kind
/// and message).
fn copy_error(error: &Error) -> Error {
    match error {
        Error::Closed => Error::Closed,
        Error::SessionClosed => Error::SessionClosed,
        Error::WriteClosed => Error::WriteClosed,
        Error::MessageBufferFull => Error::MessageBufferFull,
        Error::SessionNotFound(id) => Error::SessionNotFound(*id),
        Error::MessageTooBig { len, max } => Error::MessageTooBig {
            len: *len,
            max: *max,
        },
        Error::InvalidUtf8 => Error::InvalidUtf8,
        Error::Protocol(detail) => Error::Protocol(detail.clone()),
        Error::RateLimited => Error::RateLimited,
        Error::PongTimeout(wait) => Error::PongTimeout(*wait),
        Error::WriteTimeout(wait) => Error::WriteTimeout(*wait),
        Error::ReservedCloseCode(code) => Error::ReservedCloseCode(*code),
        Error::InvalidClosePayload => Error::InvalidClosePayload,
        Error::HandlerPanicked(detail) => Error::HandlerPanicked(detail.clone()),
        Error::HandlerFailed(detail) => Error::HandlerFailed(detail.clone()),
        Error::MalformedEnvelope(detail) => Error::MalformedEnvelope(detail.clone()),
        Error::Io(io) => Error::Io(std::io::Error::new(io.kind(), io.to_string())),
        // Errors without an owned copy (such as `Encode`) keep their message.
        other => Error::Io(std::io::Error::other(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(p: &str) -> AllowedOrigin {
        AllowedOrigin::new(p).unwrap()
    }

    #[test]
    fn default_pattern_is_same_host_http_or_https() {
        let p = AllowedOrigin::default();
        assert_eq!(p.as_str(), "https?://{{host}}$");
        let host = Some("example.com:8080");
        assert!(p.matches("http://example.com:8080", host));
        assert!(p.matches("https://example.com:8080", host));
        assert!(p.matches("HTTPS://Example.COM:8080", host));
        assert!(!p.matches("http://example.com", host));
        assert!(!p.matches("http://example.com:8080.evil.io", host));
        assert!(!p.matches("ws://example.com:8080", host));
        assert!(!p.matches("httpss://example.com:8080", host));
        assert!(!p.matches("xhttp://example.com:8080", host));
        assert!(!p.matches("http://example.com:8080", None));
        assert!(!p.matches("http://", Some("")));
    }

    #[test]
    fn without_dollar_the_pattern_is_a_prefix() {
        let p = pattern("https://{{host}}");
        assert!(p.matches("https://a.com", Some("a.com")));
        assert!(p.matches("https://a.com.evil.io", Some("a.com")));
    }

    #[test]
    fn stars_and_escapes() {
        let p = pattern(r"^https://.*\.example\.com$");
        assert!(p.matches("https://a.example.com", None));
        assert!(p.matches("https://a.b.example.com", None));
        assert!(!p.matches("https://example.com", None));
        assert!(!p.matches("https://a.example.com.evil", None));
        let p = pattern("*");
        assert!(p.matches("null", None));
        assert!(p.matches("", None));
        let p = pattern("http://localhost:*$");
        assert!(p.matches("http://localhost:3000", None));
        assert!(p.matches("http://localhost:", None));
        assert!(!p.matches("http://localhost", None));
        // Many stars stay fast (linear in pattern × origin).
        let p = pattern("*a*a*a*a*a*a*a*a*b$");
        assert!(!p.matches(&"a".repeat(5000), None));
    }

    #[test]
    fn unsupported_syntax_is_refused_with_its_position() {
        for (p, at) in [
            ("https?://(a|b)", 9),
            ("http://[a-z].com", 7),
            (r"http://\d+", 7),
            ("http://a+", 8),
            ("?http", 0),
            ("http://*?", 8),
            ("a$b", 1),
            ("a^", 1),
            ("http://{host}", 7),
            ("http://a{2}", 8),
            ("http://é", 7),
            ("http\\", 4),
        ] {
            let error = AllowedOrigin::new(p).unwrap_err();
            assert_eq!(error.position, at, "{p}: {error}");
            assert_eq!(error.pattern, p);
        }
    }

    #[test]
    fn requests_without_origin_pass() {
        let p = AllowedOrigin::default();
        let req = |origin: Option<&str>| {
            let mut b = http::Request::get("/").header("host", "h.io");
            if let Some(o) = origin {
                b = b.header("origin", o);
            }
            b.body(()).unwrap().into_parts().0
        };
        assert!(p.allows(&req(None)));
        assert!(p.allows(&req(Some("https://h.io"))));
        assert!(!p.allows(&req(Some("https://other.io"))));
    }

    #[test]
    fn options_defaults_are_the_seeds() {
        let o = Options::default();
        assert_eq!(o.write_wait, Duration::from_secs(60));
        assert_eq!(o.pong_wait, Duration::from_secs(60));
        assert_eq!(o.ping_period, Duration::from_secs(48));
        assert_eq!(o.max_message_size, 65536);
        assert_eq!((o.send_channel_buffer, o.recv_channel_buffer), (10, 10));
        let c = o.config();
        assert_eq!(c.max_message_size, 65536);
        assert_eq!(c.ping_period, Duration::from_secs(48));
        assert!(
            Options::default()
                .write_wait(Duration::ZERO)
                .config()
                .write_wait
                > Duration::from_secs(3600)
        );
    }

    #[test]
    fn codecs() {
        let json: Result<Vec<u8>, _> = JsonCodec.decode(Message::text("[1,2]"));
        assert_eq!(json.unwrap(), vec![1, 2]);
        let encoded = Codec::<Vec<u8>>::encode(&JsonCodec, vec![3]).unwrap();
        assert_eq!(encoded.as_str(), Some("[3]"));
        assert!(Codec::<Vec<u8>>::decode(&JsonCodec, Message::text("nope")).is_err());
        assert_eq!(
            StringCodec.decode(Message::binary(&b"ok"[..])).unwrap(),
            "ok"
        );
        assert!(StringCodec.decode(Message::binary(vec![0xff])).is_err());
        assert!(StringCodec.encode("x".into()).unwrap().is_text());
        assert_eq!(BytesCodec.decode(Message::text("hi")).unwrap(), "hi");
        assert!(
            BytesCodec
                .encode(Bytes::from_static(b"x"))
                .unwrap()
                .is_binary()
        );
    }
}
