//! Admission: what decides, before the upgrade, whether a connection becomes a session (or an
//! SSE stream): the auth hook and its time limit, the refusals and their HTTP responses.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header, request::Parts};
use http_body_util::Full;

use super::{data::Keys, hub::Hub, stats::Reason};

/// The response [`Melody::upgrade`](crate::Melody::upgrade) returns: `101 Switching Protocols`
/// (HTTP/1.1), `200 OK` (HTTP/2, RFC 8441), or a refusal.
pub type UpgradeResponse = Response<Full<Bytes>>;

/// Why an upgrade request was refused. Each refusal has a fixed status and a plain-text body.
///
/// | refusal | status |
/// |---|---|
/// | [`MethodNotAllowed`](Self::MethodNotAllowed) | 405 |
/// | [`NotUpgrade`](Self::NotUpgrade), [`InvalidKey`](Self::InvalidKey), [`HttpVersion`](Self::HttpVersion), [`MissingHost`](Self::MissingHost), [`NoSubprotocol`](Self::NoSubprotocol) | 400 |
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
    /// The request (HTTP/1) is not a `GET`.
    #[error("websocket upgrades must use GET")]
    MethodNotAllowed,
    /// `Connection: upgrade` or `Upgrade: websocket` is missing; over HTTP/2, the `CONNECT`
    /// has no `:protocol` or another one than `websocket`.
    #[error("not a websocket upgrade request")]
    NotUpgrade,
    /// `Sec-WebSocket-Key` is missing, repeated, or not 16 base64-encoded bytes (HTTP/1.1).
    #[error("missing or invalid Sec-WebSocket-Key header")]
    InvalidKey,
    /// The request is neither an HTTP/1.1 `GET` nor an HTTP/2 `CONNECT`: an HTTP/1.0 request
    /// cannot be upgraded, and over HTTP/2 a WebSocket is opened with an extended `CONNECT`
    /// (RFC 8441), never a `GET`.
    #[error("websocket handshakes need an HTTP/1.1 GET or an HTTP/2 CONNECT")]
    HttpVersion,
    /// The request has no `Host` header, or more than one (RFC 6455 section 4.2.1 requires
    /// one); over HTTP/2, neither `:authority` nor `Host`.
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
    /// The client offered none of the [`Config::subprotocols`](crate::Config::subprotocols) and
    /// the hub requires one ([`Config::require_subprotocol`](crate::Config::require_subprotocol)).
    #[error("none of the offered subprotocols is supported")]
    NoSubprotocol,
    /// The server did not make the connection upgradable (for hyper: serve an HTTP/1 connection
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
            Self::NotUpgrade
            | Self::InvalidKey
            | Self::HttpVersion
            | Self::MissingHost
            | Self::NoSubprotocol => StatusCode::BAD_REQUEST,
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

impl Hub {
    /// Runs the auth hook, if any, on a request head: the keys it grants, or its refusal. The
    /// hook gets [`Config::auth_timeout`](crate::Config::auth_timeout) to answer.
    pub(crate) async fn authorize(&self, parts: &Parts) -> Result<Keys, UpgradeRejection> {
        let Some(auth) = self.handlers_full().auth.clone() else {
            return Ok(Keys::new());
        };
        match tokio::time::timeout(self.config.auth_timeout, auth(parts)).await {
            Ok(Ok(keys)) => Ok(keys),
            Ok(Err(rejection)) => {
                self.counters.rejected(Reason::Auth);
                Err(UpgradeRejection::Auth(rejection))
            }
            Err(_) => {
                self.counters.rejected(Reason::Auth);
                Err(UpgradeRejection::AuthTimeout)
            }
        }
    }
}
