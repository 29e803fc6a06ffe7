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
//! It is built on the hub, not beside it: a binding owns a [`Melody`] with the [`Config`] it was
//! given (the seed's defaults are [`seed_config`]), so upgrades, origin checks, pings, timeouts,
//! limits, close codes and broadcasting work exactly as for any hub ([`Binding::melody`]).
//!
//! # Example: the seed's contrived echo
//!
//! Every message is echoed; after 30 minutes the connection is closed with 1000 no matter what.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use axum::{Router, routing::get};
//! use melody::{CloseCode, channels::{Binding, Channels, seed_config}};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Message {
//!     text: String,
//! }
//!
//! # async fn serve() -> std::io::Result<()> {
//! let binding = Binding::json(seed_config(), |mut ch: Channels<Message>| async move {
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
//! 1. The upgrade request is checked (method, headers, the [`Config::check_origin`]); a refusal is
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
//! - `receiver` holds [`Binding::buffers`]' `recv` messages (10 by default). When it is full the connection
//!   **waits** (it stops reading the socket, so TCP pushes back on the client): no message is
//!   ever dropped for want of room. Pings are still sent meanwhile. A message still waiting for
//!   room when you call [`Disconnect::close`] is dropped.
//! - `sender` holds [`Binding::buffers`]' `send` values (10 by default); `send().await` waits for room. The
//!   session's own outbound queue ([`Config::message_buffer_size`]) sits behind it.
//! - `errors` holds as many errors as `receiver` holds messages; when it is full, further errors are
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

mod codec;
mod error;
mod pump;
mod signal;

use std::{
    fmt,
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::Request;
use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::mpsc;

use self::pump::{Shared, State};
pub use self::{
    codec::{BytesCodec, Codec, JsonCodec, StringCodec},
    error::ChannelError,
    signal::{Disconnect, Done},
};
use crate::{Config, Melody, Message, Session, Text, UpgradeResponse};

/// The error a [`Codec`] returns: any error, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Messages and values each channel holds, unless [`Binding::buffers`] says otherwise (the
/// seed's default).
const DEFAULT_BUFFER: usize = 10;

/// The seed's defaults as a hub [`Config`]: write wait 60 s, pong wait 60 s, pings every 48 s,
/// messages of up to 64 KiB, and the page's own origin only (over http or https), which is
/// [`CheckOrigin::SameOrigin`](crate::CheckOrigin). Everything else is [`Config`]'s default.
///
/// ```
/// let config = melody::channels::seed_config();
/// assert_eq!(config.max_message_size, 65536);
/// ```
#[must_use]
pub fn seed_config() -> Config {
    Config::default()
        .write_wait(Duration::from_secs(60))
        .pong_wait(Duration::from_secs(60))
        .ping_period(Duration::from_secs(48))
        .max_message_size(65536)
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

/// Binds connections to [`Channels`] of `T` and runs an async function for each.
///
/// Mount it in axum with [`Binding::handler`] or serve it from hyper with
/// [`Binding::upgrade`]. Cheap to clone.
///
/// ```
/// use axum::{Router, routing::get};
/// use melody::channels::{Binding, Channels, seed_config};
///
/// // Strings: an upper-casing echo.
/// let binding = Binding::text(seed_config(), |mut ch: Channels<String>| async move {
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
    shared: Arc<Shared<T>>,
}

impl<T> Clone for Binding<T> {
    fn clone(&self) -> Self {
        Self {
            melody: self.melody.clone(),
            shared: self.shared.clone(),
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
    pub fn json<F, Fut>(config: Config, f: F) -> Self
    where
        F: Fn(Channels<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self::with_codec(JsonCodec, config, f)
    }
}

impl Binding<String> {
    /// Text messages as `String`s (the seed's `sockets.Messages`). See [`StringCodec`].
    pub fn text<F, Fut>(config: Config, f: F) -> Self
    where
        F: Fn(Channels<String>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self::with_codec(StringCodec, config, f)
    }
}

impl Binding<Bytes> {
    /// Binary messages as [`Bytes`] (the seed's `sockets.ByteSliceMessages`). See
    /// [`BytesCodec`].
    pub fn binary<F, Fut>(config: Config, f: F) -> Self
    where
        F: Fn(Channels<Bytes>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self::with_codec(BytesCodec, config, f)
    }
}

impl<T: Send + 'static> Binding<T> {
    /// Binds with any [`Codec`]. `f` runs once per connection, in its own task; the
    /// connection is closed with 1000 when it returns (1011 if it panics).
    ///
    /// The function should reach the hub through [`Channels::session`] rather than capture
    /// this binding (a captured binding keeps its own hub alive).
    pub fn with_codec<C, F, Fut>(codec: C, config: Config, f: F) -> Self
    where
        C: Codec<T>,
        F: Fn(Channels<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let shared = Arc::new(Shared {
            codec: Box::new(codec),
            run: Box::new(move |channels| Box::pin(f(channels))),
            send_buffer: AtomicUsize::new(DEFAULT_BUFFER),
            recv_buffer: AtomicUsize::new(DEFAULT_BUFFER),
        });
        let melody = Melody::with_config(config);
        let (connect, text_shared, binary) = (shared.clone(), shared.clone(), shared.clone());
        melody
            .on_connect(move |session| connect.connect(session))
            .on_disconnect(|session| {
                // Dropping the state closes `receiver` and `errors` (after what they hold).
                // The pump then closes `sender` and fires `done`.
                if let Some(state) = session.remove_ext::<Arc<State<T>>>() {
                    state.ended.fire();
                }
            })
            .on_text_async(move |session, text: Text| {
                let shared = text_shared.clone();
                async move { shared.inbound(&session, Message::from(text)).await }
            })
            .on_binary_async(move |session, bytes| {
                let shared = binary.clone();
                async move { shared.inbound(&session, Message::binary(bytes)).await }
            })
            .on_error(|session, error| {
                if let Some(state) = session.get_ext::<Arc<State<T>>>() {
                    state.report(ChannelError::Session(error.clone()));
                }
            });
        Self { melody, shared }
    }

    /// How many messages `receiver` (and errors `errors`) and how many values `sender` hold,
    /// for connections from now on. Default 10 each (the seed's); 0 is raised to 1.
    pub fn buffers(self, send: usize, recv: usize) -> Self {
        self.shared
            .send_buffer
            .store(send.max(1), Ordering::Relaxed);
        self.shared
            .recv_buffer
            .store(recv.max(1), Ordering::Relaxed);
        self
    }

    /// The hub behind this binding: for sends (`melody.all().send(..)`), topics,
    /// [`Melody::close`], or an auth hook ([`Melody::on_auth`]).
    ///
    /// The binding owns the hub's connect, disconnect, message, binary message and error
    /// handlers; setting one of those replaces the binding's and breaks it. The other handlers
    /// (auth, close, pong, sent) are free to use.
    #[must_use]
    pub fn melody(&self) -> &Melody {
        &self.melody
    }

    /// Upgrades a request and binds the new connection (for any hyper-based server; see
    /// [`Melody::upgrade`], whose rules apply).
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use hyper::{Request, body::Incoming};
    /// use melody::{Bytes, channels::{Binding, Channels, seed_config}};
    ///
    /// let binding = Binding::binary(seed_config(), |mut ch: Channels<Bytes>| async move {
    ///     while let Some(bytes) = ch.receiver.recv().await {
    ///         let _ = ch.sender.send(bytes).await;
    ///     }
    /// });
    /// let service = tower::service_fn(move |req: Request<Incoming>| {
    ///     let upgrade = binding.upgrade(req);
    ///     async move { Ok::<_, Infallible>(upgrade.await) }
    /// });
    /// # let _ = service;
    /// ```
    #[must_use = "the response must be sent for the upgrade to happen"]
    pub fn upgrade<B>(
        &self,
        req: Request<B>,
    ) -> impl Future<Output = UpgradeResponse> + Send + use<T, B> {
        self.melody.upgrade(req)
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
