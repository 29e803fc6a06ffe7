//! The HTTP side: checks an upgrade request, answers 101 or a clear refusal, and hands the
//! upgraded connection to its session task.
//!
//! Works with any server built on hyper 1 (axum, plain hyper, and what is built on them): the
//! upgrade goes through hyper's `OnUpgrade` request extension.

use std::net::SocketAddr;

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header, request::Parts};
use http_body_util::Full;
use hyper::upgrade::OnUpgrade;

use crate::{Keys, Melody, connection};

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
/// | [`NotUpgrade`](Self::NotUpgrade), [`InvalidKey`](Self::InvalidKey) | 400 |
/// | [`UnsupportedVersion`](Self::UnsupportedVersion) | 426 |
/// | [`OriginNotAllowed`](Self::OriginNotAllowed) | 403 |
/// | [`Closed`](Self::Closed) | 503 |
/// | [`NotUpgradable`](Self::NotUpgradable) | 500 |
///
/// ```
/// use melody::UpgradeRejection;
///
/// assert_eq!(UpgradeRejection::OriginNotAllowed.status().as_u16(), 403);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpgradeRejection {
    /// The request is not a `GET`.
    #[error("websocket upgrades must use GET")]
    MethodNotAllowed,
    /// `Connection: upgrade` or `Upgrade: websocket` is missing.
    #[error("not a websocket upgrade request")]
    NotUpgrade,
    /// `Sec-WebSocket-Key` is missing or not 16 base64-encoded bytes.
    #[error("missing or invalid Sec-WebSocket-Key header")]
    InvalidKey,
    /// `Sec-WebSocket-Version` is missing or not 13.
    #[error("unsupported websocket version, only 13 is supported")]
    UnsupportedVersion,
    /// The `Origin` failed the hub's [`CheckOrigin`](crate::CheckOrigin).
    #[error("origin not allowed")]
    OriginNotAllowed,
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
            Self::NotUpgrade | Self::InvalidKey => StatusCode::BAD_REQUEST,
            Self::UnsupportedVersion => StatusCode::UPGRADE_REQUIRED,
            Self::OriginNotAllowed => StatusCode::FORBIDDEN,
            Self::Closed => StatusCode::SERVICE_UNAVAILABLE,
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
        match self {
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

impl Melody {
    /// Upgrades an HTTP request to a WebSocket session of this hub (Go melody's
    /// `HandleRequest`). Returns `101 Switching Protocols`, or the refusal's status (see
    /// [`UpgradeRejection`]); the session starts once the server has switched protocols.
    ///
    /// Call it on a request served by hyper with upgrades on (axum's `serve` does that; for
    /// hyper use `serve_connection(..).with_upgrades()`).
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, as the session task is spawned on the current one.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use hyper::{Request, body::Incoming, service::service_fn};
    /// use melody::Melody;
    ///
    /// let melody = Melody::new();
    /// let service = service_fn(move |req: Request<Incoming>| {
    ///     let melody = melody.clone();
    ///     async move { Ok::<_, Infallible>(melody.handle_request(req)) }
    /// });
    /// # let _ = service;
    /// ```
    #[must_use = "the response must be sent for the upgrade to happen"]
    pub fn handle_request<B>(&self, req: Request<B>) -> UpgradeResponse {
        self.handle_request_with_keys(req, Keys::new())
    }

    /// As [`Melody::handle_request`], with values stored on the new session under string keys
    /// (Go melody's `HandleRequestWithKeys`).
    #[must_use = "the response must be sent for the upgrade to happen"]
    pub fn handle_request_with_keys<B>(&self, req: Request<B>, keys: Keys) -> UpgradeResponse {
        match self.upgrade(req, keys) {
            Ok(response) => response,
            Err(rejection) => {
                tracing::debug!(%rejection, status = %rejection.status(), "websocket upgrade refused");
                rejection.into_response()
            }
        }
    }

    fn upgrade<B>(&self, req: Request<B>, keys: Keys) -> Result<UpgradeResponse, UpgradeRejection> {
        let (mut parts, _body) = req.into_parts();
        let accept = check_request(&parts)?;
        if !self.config().check_origin.allows(&parts) {
            return Err(UpgradeRejection::OriginNotAllowed);
        }
        if self.is_closed() {
            return Err(UpgradeRejection::Closed);
        }
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or(UpgradeRejection::NotUpgradable)?;
        let addrs = (
            remote_addr(&parts),
            parts.extensions.get::<LocalAddr>().map(|a| a.0),
        );
        connection::spawn(self.hub().clone(), on_upgrade, parts, keys, addrs);

        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        Ok(response)
    }
}

/// Checks method and handshake headers; returns the `Sec-WebSocket-Accept` value.
fn check_request(parts: &Parts) -> Result<HeaderValue, UpgradeRejection> {
    if parts.method != Method::GET {
        return Err(UpgradeRejection::MethodNotAllowed);
    }
    let headers = &parts.headers;
    if !header_has_token(headers, header::CONNECTION, "upgrade")
        || !header_has_token(headers, header::UPGRADE, "websocket")
    {
        return Err(UpgradeRejection::NotUpgrade);
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(UpgradeRejection::UnsupportedVersion);
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or(UpgradeRejection::InvalidKey)?
        .as_bytes();
    match BASE64.decode(key) {
        Ok(decoded) if decoded.len() == 16 => Ok(accept_key(key)),
        _ => Err(UpgradeRejection::InvalidKey),
    }
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
        let plain = Request::get("/ws").body(()).unwrap().into_parts().0;
        assert_eq!(check_request(&plain), Err(UpgradeRejection::NotUpgrade));
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
