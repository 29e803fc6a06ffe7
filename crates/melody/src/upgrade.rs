//! The HTTP side: checks an upgrade request, answers 101 or a clear refusal, and hands the
//! upgraded connection to its session task.
//!
//! Works with any server built on hyper 1 (axum, plain hyper, and what is built on them): the
//! upgrade goes through hyper's `OnUpgrade` request extension.

use std::{
    future::Future,
    net::SocketAddr,
    sync::{Arc, atomic::Ordering},
};

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header, request::Parts};
use http_body_util::Full;
use hyper::upgrade::OnUpgrade;

use crate::{Config, Keys, Melody, connection, handlers::AuthFn, melody::Hub, stats::Reason};

/// The response [`Melody::handle_request`] returns: `101 Switching Protocols` or a refusal.
pub type UpgradeResponse = Response<Full<Bytes>>;

/// The remote address of a connection, for servers that are not axum: insert it into the
/// request's extensions before calling [`Melody::handle_request`] and it becomes
/// [`Session::remote_addr`](crate::Session::remote_addr).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteAddr(pub SocketAddr);

/// The local address of a connection: insert it into the request's extensions and it becomes
/// [`Session::local_addr`](crate::Session::local_addr).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalAddr(pub SocketAddr);

/// Why an upgrade request was refused. Each refusal has a fixed status and a plain-text body.
///
/// | refusal | status |
/// |---|---|
/// | [`MethodNotAllowed`](Self::MethodNotAllowed) | 405 |
/// | [`NotUpgrade`](Self::NotUpgrade), [`InvalidKey`](Self::InvalidKey), [`HttpVersion`](Self::HttpVersion), [`MissingHost`](Self::MissingHost) | 400 |
/// | [`HeadersTooLarge`](Self::HeadersTooLarge) | 431 |
/// | [`UnsupportedVersion`](Self::UnsupportedVersion) | 426 |
/// | [`OriginNotAllowed`](Self::OriginNotAllowed) | 403 |
/// | [`Auth`](Self::Auth) | chosen by the auth hook (401 by default) |
/// | [`UnexpectedBody`](Self::UnexpectedBody) | 400 |
/// | [`TooManyConnections`](Self::TooManyConnections), [`Closed`](Self::Closed), [`AuthTimeout`](Self::AuthTimeout) | 503 |
/// | [`NotUpgradable`](Self::NotUpgradable) | 500 |
///
/// ```
/// use melody::UpgradeRejection;
///
/// assert_eq!(UpgradeRejection::OriginNotAllowed.status().as_u16(), 403);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpgradeRejection {
    /// The request is not a `GET`.
    #[error("websocket upgrades must use GET")]
    MethodNotAllowed,
    /// `Connection: upgrade` or `Upgrade: websocket` is missing.
    #[error("not a websocket upgrade request")]
    NotUpgrade,
    /// `Sec-WebSocket-Key` is missing, repeated, or not 16 base64-encoded bytes.
    #[error("missing or invalid Sec-WebSocket-Key header")]
    InvalidKey,
    /// The request is not HTTP/1.1 (an HTTP/1.0 request cannot be upgraded).
    #[error("websocket upgrades need HTTP/1.1")]
    HttpVersion,
    /// The request has no `Host` header (RFC 6455 section 4.2.1 requires one).
    #[error("missing Host header")]
    MissingHost,
    /// The URI and kept headers exceed [`Config::max_request_head`](crate::Config::max_request_head).
    #[error("request headers too large")]
    HeadersTooLarge,
    /// `Sec-WebSocket-Version` is missing or not 13.
    #[error("unsupported websocket version, only 13 is supported")]
    UnsupportedVersion,
    /// The `Origin` failed the hub's [`CheckOrigin`](crate::CheckOrigin).
    #[error("origin not allowed")]
    OriginNotAllowed,
    /// The auth hook refused the request, with the status and message it chose.
    #[error("{0}")]
    Auth(AuthRejection),
    /// The auth hook did not answer within [`Config::auth_timeout`](crate::Config::auth_timeout).
    #[error("authorization timed out")]
    AuthTimeout,
    /// The upgrade request has a body (`Content-Length` or `Transfer-Encoding`), which a
    /// WebSocket handshake never has: its bytes would be read as WebSocket frames.
    #[error("a websocket upgrade request has no body")]
    UnexpectedBody,
    /// The hub already has [`Config::max_connections`](crate::Config::max_connections) sessions.
    #[error("too many connections")]
    TooManyConnections,
    /// The hub is closed.
    #[error("melody instance is closed")]
    Closed,
    /// The server did not make the connection upgradable (for hyper: serve the connection
    /// `with_upgrades()`).
    #[error("connection cannot be upgraded")]
    NotUpgradable,
}

impl UpgradeRejection {
    /// The HTTP status of this refusal.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::NotUpgrade | Self::InvalidKey | Self::HttpVersion | Self::MissingHost => {
                StatusCode::BAD_REQUEST
            }
            Self::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::UnsupportedVersion => StatusCode::UPGRADE_REQUIRED,
            Self::OriginNotAllowed => StatusCode::FORBIDDEN,
            Self::Auth(rejection) => rejection.status,
            Self::TooManyConnections | Self::Closed | Self::AuthTimeout => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::UnexpectedBody => StatusCode::BAD_REQUEST,
            Self::NotUpgradable => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The plain-text body of this refusal.
    #[must_use]
    pub fn body_text(&self) -> String {
        self.to_string()
    }

    /// The refusal as an HTTP response.
    #[must_use]
    pub fn into_response(self) -> UpgradeResponse {
        let mut response = Response::new(Full::new(Bytes::from(self.body_text())));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        match &self {
            Self::MethodNotAllowed => {
                headers.insert(header::ALLOW, HeaderValue::from_static("GET"));
            }
            Self::UnsupportedVersion => {
                headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
                headers.insert(
                    header::SEC_WEBSOCKET_VERSION,
                    HeaderValue::from_static("13"),
                );
            }
            _ => {}
        }
        response
    }
}

/// An auth hook's refusal: the status (401 unless chosen otherwise) and a plain-text message.
///
/// ```
/// use melody::AuthRejection;
/// use melody::http::StatusCode;
///
/// assert_eq!(AuthRejection::unauthorized("missing token").status(), StatusCode::UNAUTHORIZED);
/// assert_eq!(AuthRejection::new(StatusCode::FORBIDDEN, "banned").to_string(), "banned");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AuthRejection {
    status: StatusCode,
    message: String,
}

impl AuthRejection {
    /// A refusal with 401 Unauthorized.
    #[must_use]
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    /// A refusal with any status. A status that is not a 4xx or 5xx error becomes 401.
    #[must_use]
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        let status = if status.is_client_error() || status.is_server_error() {
            status
        } else {
            StatusCode::UNAUTHORIZED
        };
        Self {
            status,
            message: message.into(),
        }
    }

    /// The status of the refusal.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

/// A connection slot under [`Config::max_connections`](crate::Config::max_connections),
/// held from the upgrade until the session ends.
pub(crate) struct Slot(Option<Arc<Hub>>);

impl Slot {
    pub(crate) fn acquire(hub: &Arc<Hub>) -> Option<Self> {
        let max = hub.config.max_connections;
        if max == 0 {
            return Some(Self(None));
        }
        let taken = hub.slots.fetch_add(1, Ordering::AcqRel);
        let slot = Self(Some(hub.clone()));
        (taken < max).then_some(slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(hub) = &self.0 {
            hub.slots.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Melody {
    /// Upgrades an HTTP request to a WebSocket session of this hub (Go melody's
    /// `HandleRequest`). Resolves to `101 Switching Protocols`, or the refusal's status (see
    /// [`UpgradeRejection`]); the session starts once the server has switched protocols.
    ///
    /// Call it on a request served by hyper with upgrades on (axum's `serve` does that; for
    /// hyper use `serve_connection(..).with_upgrades()`). The request body is dropped at once,
    /// so the returned future is `Send` whatever the body type.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use hyper::{Request, body::Incoming, service::service_fn};
    /// use melody::Melody;
    ///
    /// let melody = Melody::new();
    /// let service = service_fn(move |req: Request<Incoming>| {
    ///     let upgrade = melody.handle_request(req);
    ///     async move { Ok::<_, Infallible>(upgrade.await) }
    /// });
    /// # let _ = service;
    /// ```
    ///
    /// # Panics
    ///
    /// When polled outside a Tokio runtime, as the session task is spawned on the current one.
    #[must_use = "the response must be sent for the upgrade to happen"]
    pub fn handle_request<B>(
        &self,
        req: Request<B>,
    ) -> impl Future<Output = UpgradeResponse> + Send + use<B> {
        self.handle_request_with_keys(req, Keys::new())
    }

    /// As [`Melody::handle_request`], with values stored on the new session under string keys
    /// (Go melody's `HandleRequestWithKeys`).
    #[must_use = "the response must be sent for the upgrade to happen"]
    pub fn handle_request_with_keys<B>(
        &self,
        req: Request<B>,
        keys: Keys,
    ) -> impl Future<Output = UpgradeResponse> + Send + use<B> {
        let (parts, _body) = req.into_parts();
        let melody = self.clone();
        async move {
            match melody.upgrade(parts, keys).await {
                Ok(response) => response,
                Err(rejection) => {
                    tracing::debug!(%rejection, status = %rejection.status(), "websocket upgrade refused");
                    rejection.into_response()
                }
            }
        }
    }

    /// Sets the auth hook: it sees each upgrade request after the handshake and origin checks
    /// and before a connection slot is taken. It refuses with an [`AuthRejection`] (no session,
    /// no slot used), or accepts with [`Keys`] to store on the new session.
    ///
    /// The hook is a plain function returning a future, so it can read the request head
    /// synchronously and then await whatever it needs (a database, a token service):
    ///
    /// ```
    /// use melody::{AuthRejection, Keys, Melody};
    ///
    /// let melody = Melody::new();
    /// melody.handle_auth(|req| {
    ///     let token = req
    ///         .uri
    ///         .query()
    ///         .and_then(|q| q.strip_prefix("token="))
    ///         .map(str::to_owned);
    ///     async move {
    ///         match token.as_deref() {
    ///             Some("secret") => Ok(Keys::new().with("user", "alice").with("plan", "pro")),
    ///             _ => Err(AuthRejection::unauthorized("missing or bad token")),
    ///         }
    ///     }
    /// });
    /// ```
    pub fn handle_auth<F, Fut>(&self, auth: F) -> &Self
    where
        F: Fn(&Parts) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Keys, AuthRejection>> + Send + 'static,
    {
        let auth: AuthFn = Arc::new(move |req| Box::pin(auth(req)));
        self.set_handler(|h| h.auth = Some(auth.clone()))
    }

    /// Runs the auth hook, if any, on a request head: the keys it grants, or its refusal.
    pub(crate) async fn authorize(&self, parts: &Parts) -> Result<Keys, UpgradeRejection> {
        let Some(auth) = self.hub().handlers_full().auth.clone() else {
            return Ok(Keys::new());
        };
        let wait = self.config().auth_timeout;
        match tokio::time::timeout(wait, auth(parts)).await {
            Ok(Ok(keys)) => Ok(keys),
            Ok(Err(rejection)) => {
                self.hub().counters.rejected(Reason::Auth);
                Err(UpgradeRejection::Auth(rejection))
            }
            Err(_) => {
                self.hub().counters.rejected(Reason::Auth);
                Err(UpgradeRejection::AuthTimeout)
            }
        }
    }

    async fn upgrade(
        &self,
        mut parts: Parts,
        mut keys: Keys,
    ) -> Result<UpgradeResponse, UpgradeRejection> {
        let hub = self.hub();
        let accept = check_request(&parts)?;
        if !self.config().check_origin.allows(&parts) {
            hub.counters.rejected(Reason::Origin);
            return Err(UpgradeRejection::OriginNotAllowed);
        }
        if self.is_closed() {
            return Err(UpgradeRejection::Closed);
        }
        keys.extend(self.authorize(&parts).await?);
        let Some(slot) = Slot::acquire(hub) else {
            hub.counters.rejected(Reason::MaxConnections);
            return Err(UpgradeRejection::TooManyConnections);
        };
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or(UpgradeRejection::NotUpgradable)?;
        let addrs = (
            remote_addr(&parts),
            parts.extensions.get::<LocalAddr>().map(|a| a.0),
        );
        let parts = compact(parts, &hub.config).ok_or(UpgradeRejection::HeadersTooLarge)?;
        connection::spawn(hub.clone(), on_upgrade, parts, keys, addrs, slot);

        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        Ok(response)
    }
}

/// Headers that only served the handshake; a session does not keep them.
const HANDSHAKE_HEADERS: [header::HeaderName; 5] = [
    header::CONNECTION,
    header::UPGRADE,
    header::SEC_WEBSOCKET_KEY,
    header::SEC_WEBSOCKET_VERSION,
    header::SEC_WEBSOCKET_EXTENSIONS,
];

/// The request head a session keeps: its own copies of the URI and the kept headers, without
/// the handshake headers; `None` when that is over [`Config::max_request_head`].
///
/// hyper parses them as slices of its connection read buffer; a session that kept those would
/// keep the whole buffer (kilobytes) alive for its lifetime. Measured with `melody-bench idle`.
/// The bound matters as much: a client controls how many headers it sends.
fn compact(mut parts: Parts, config: &Config) -> Option<Parts> {
    let kept = |name: &header::HeaderName| {
        !HANDSHAKE_HEADERS.contains(name)
            && config
                .keep_headers
                .as_ref()
                .is_none_or(|names| names.contains(name))
    };
    let mut size = parts.uri.to_string().len();
    let mut count = 0;
    for (name, value) in parts.headers.iter().filter(|(name, _)| kept(name)) {
        size += name.as_str().len() + value.len();
        count += 1;
    }
    if size > config.max_request_head {
        return None;
    }
    let mut headers = HeaderMap::with_capacity(count);
    for (name, value) in parts.headers.iter().filter(|(name, _)| kept(name)) {
        let name = header::HeaderName::from_bytes(name.as_str().as_bytes())
            .unwrap_or_else(|_| name.clone());
        let value = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        headers.append(name, value);
    }
    parts.headers = headers;
    parts.uri = own_uri(&parts.uri);
    // axum's router keeps the URI as it came as well: kept only where it differs (a nested
    // router strips a prefix), so a session never holds the same URI twice.
    #[cfg(feature = "axum")]
    if let Some(::axum::extract::OriginalUri(uri)) = parts.extensions.remove() {
        if uri != parts.uri {
            parts
                .extensions
                .insert(::axum::extract::OriginalUri(own_uri(&uri)));
        }
    }
    Some(parts)
}

/// A copy of the URI in its own allocation.
fn own_uri(uri: &http::Uri) -> http::Uri {
    http::Uri::try_from(uri.to_string()).unwrap_or_else(|_| uri.clone())
}

/// Checks method and handshake headers; returns the `Sec-WebSocket-Accept` value.
fn check_request(parts: &Parts) -> Result<HeaderValue, UpgradeRejection> {
    if parts.method != Method::GET {
        return Err(UpgradeRejection::MethodNotAllowed);
    }
    if parts.version != http::Version::HTTP_11 {
        return Err(UpgradeRejection::HttpVersion);
    }
    let headers = &parts.headers;
    if headers.get_all(header::HOST).iter().count() != 1 {
        return Err(UpgradeRejection::MissingHost);
    }
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get_all(header::CONTENT_LENGTH)
            .iter()
            .any(|length| length.as_bytes() != b"0");
    if has_body {
        return Err(UpgradeRejection::UnexpectedBody);
    }
    if !header_has_token(headers, header::CONNECTION, "upgrade")
        || !header_has_token(headers, header::UPGRADE, "websocket")
    {
        return Err(UpgradeRejection::NotUpgrade);
    }
    if only(headers, header::SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes) != Some(b"13") {
        return Err(UpgradeRejection::UnsupportedVersion);
    }
    let key = only(headers, header::SEC_WEBSOCKET_KEY)
        .ok_or(UpgradeRejection::InvalidKey)?
        .as_bytes();
    match BASE64.decode(key) {
        Ok(decoded) if decoded.len() == 16 => Ok(accept_key(key)),
        _ => Err(UpgradeRejection::InvalidKey),
    }
}

/// The value of a header that must appear exactly once.
fn only(headers: &HeaderMap, name: header::HeaderName) -> Option<&HeaderValue> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    values.next().is_none().then_some(first)
}

/// Whether a comma-separated header contains `token` (case-insensitive) in any of its values.
fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// `base64(sha1(key + GUID))`, RFC 6455 section 4.2.2.
fn accept_key(key: &[u8]) -> HeaderValue {
    const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let mut sha1 = sha1_smol::Sha1::new();
    sha1.update(key);
    sha1.update(GUID);
    let encoded = BASE64.encode(sha1.digest().bytes());
    HeaderValue::from_str(&encoded).expect("base64 is a valid header value")
}

fn remote_addr(parts: &Parts) -> Option<SocketAddr> {
    if let Some(addr) = parts.extensions.get::<RemoteAddr>() {
        return Some(addr.0);
    }
    #[cfg(feature = "axum")]
    if let Some(info) = parts
        .extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(info.0);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(edit: impl FnOnce(http::request::Builder) -> http::request::Builder) -> Parts {
        let builder = Request::get("/ws")
            .header("host", "example.com")
            .header("connection", "keep-alive, Upgrade")
            .header("upgrade", "WebSocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
        edit(builder).body(()).unwrap().into_parts().0
    }

    #[test]
    fn accept_key_matches_rfc_example() {
        let accept = check_request(&request(|b| b)).unwrap();
        assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn refusals() {
        let post = Request::post("/ws").body(()).unwrap().into_parts().0;
        assert_eq!(
            check_request(&post),
            Err(UpgradeRejection::MethodNotAllowed)
        );
        let plain = Request::get("/ws")
            .header("host", "example.com")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        assert_eq!(check_request(&plain), Err(UpgradeRejection::NotUpgrade));
        let mut http10 = request(|b| b);
        http10.version = http::Version::HTTP_10;
        assert_eq!(check_request(&http10), Err(UpgradeRejection::HttpVersion));
        let mut no_host = request(|b| b);
        no_host.headers.remove("host");
        assert_eq!(check_request(&no_host), Err(UpgradeRejection::MissingHost));
        let two_keys = request(|b| b.header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="));
        assert_eq!(check_request(&two_keys), Err(UpgradeRejection::InvalidKey));
        let body = request(|b| b.header("content-length", "5"));
        assert_eq!(check_request(&body), Err(UpgradeRejection::UnexpectedBody));
        let chunked = request(|b| b.header("transfer-encoding", "chunked"));
        assert_eq!(
            check_request(&chunked),
            Err(UpgradeRejection::UnexpectedBody)
        );
        let empty = request(|b| b.header("content-length", "0"));
        assert!(check_request(&empty).is_ok());
        let two_versions = request(|b| b.header("sec-websocket-version", "13"));
        assert_eq!(
            check_request(&two_versions),
            Err(UpgradeRejection::UnsupportedVersion)
        );
        let mut wrong = request(|b| b);
        wrong
            .headers
            .insert("sec-websocket-version", HeaderValue::from_static("8"));
        assert_eq!(
            check_request(&wrong),
            Err(UpgradeRejection::UnsupportedVersion)
        );
        let mut short_key = request(|b| b);
        short_key
            .headers
            .insert("sec-websocket-key", HeaderValue::from_static("c2hvcnQ="));
        assert_eq!(check_request(&short_key), Err(UpgradeRejection::InvalidKey));
    }

    #[test]
    fn rejection_responses_carry_their_headers() {
        let response = UpgradeRejection::UnsupportedVersion.into_response();
        assert_eq!(response.status(), 426);
        assert_eq!(response.headers()["upgrade"], "websocket");
        assert_eq!(response.headers()["sec-websocket-version"], "13");
        assert_eq!(
            UpgradeRejection::MethodNotAllowed.into_response().headers()["allow"],
            "GET"
        );
    }
}
