//! What a handshake request asks for: an HTTP/1.1 upgrade or an HTTP/2 extended CONNECT
//! ([`Handshake`]), checked header by header, and the response that accepts each.

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Version, header, request::Parts};
use http_body_util::Full;

use crate::core::admission::{UpgradeRejection, UpgradeResponse};

/// The kind of handshake a request makes, and so how it is accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Handshake {
    /// RFC 6455: an HTTP/1.1 `GET` with `Upgrade: websocket`. Accepted with `101 Switching
    /// Protocols` and this `Sec-WebSocket-Accept`; the whole connection becomes the WebSocket.
    Upgrade {
        /// `Sec-WebSocket-Accept`: proves the server read this request's key.
        accept: HeaderValue,
    },
    /// RFC 8441: an HTTP/2 `CONNECT` with `:protocol websocket`. Accepted with `200 OK` and no
    /// handshake headers of its own (RFC 8441 section 5: no key, no accept, no `Upgrade`,
    /// which HTTP/2 forbids); the request's stream becomes the WebSocket.
    Connect,
}

impl Handshake {
    /// The response accepting this handshake, before the negotiated headers (subprotocol)
    /// that both kinds answer alike.
    pub(super) fn accept(self) -> UpgradeResponse {
        let mut response = Response::new(Full::new(Bytes::new()));
        match self {
            Self::Upgrade { accept } => {
                *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                let headers = response.headers_mut();
                headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
                headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
            }
            // `200` (the default status) opens the stream; the body stays empty, as a
            // success response to CONNECT has none (RFC 9110 section 9.3.6), and hyper resets
            // the stream of one that announces a length.
            Self::Connect => {}
        }
        response
    }
}

/// Checks the method, the version and the handshake headers: which kind of handshake the
/// request makes, or why it is refused.
pub(super) fn check_request(parts: &Parts) -> Result<Handshake, UpgradeRejection> {
    if parts.version == Version::HTTP_2 {
        check_connect(parts)
    } else {
        check_upgrade(parts)
    }
}

/// An HTTP/1.1 upgrade (RFC 6455 section 4.2.1).
fn check_upgrade(parts: &Parts) -> Result<Handshake, UpgradeRejection> {
    if parts.method != Method::GET {
        return Err(UpgradeRejection::MethodNotAllowed);
    }
    if parts.version != Version::HTTP_11 {
        return Err(UpgradeRejection::HttpVersion);
    }
    let headers = &parts.headers;
    if headers.get_all(header::HOST).iter().count() != 1 {
        return Err(UpgradeRejection::MissingHost);
    }
    if has_body(headers) {
        return Err(UpgradeRejection::UnexpectedBody);
    }
    if !header_has_token(headers, header::CONNECTION, "upgrade")
        || !header_has_token(headers, header::UPGRADE, "websocket")
    {
        return Err(UpgradeRejection::NotUpgrade);
    }
    if !is_version_13(headers) {
        return Err(UpgradeRejection::UnsupportedVersion);
    }
    let key = only(headers, header::SEC_WEBSOCKET_KEY)
        .ok_or(UpgradeRejection::InvalidKey)?
        .as_bytes();
    match BASE64.decode(key) {
        Ok(decoded) if decoded.len() == 16 => Ok(Handshake::Upgrade {
            accept: accept_key(key),
        }),
        _ => Err(UpgradeRejection::InvalidKey),
    }
}

/// An HTTP/2 extended CONNECT (RFC 8441 section 5). The server must have enabled it (hyper's
/// `enable_connect_protocol`), else the client is not allowed to send `:protocol`.
fn check_connect(parts: &Parts) -> Result<Handshake, UpgradeRejection> {
    // HTTP/2 has no `101` (RFC 9113 section 8.6): a GET cannot become a WebSocket there.
    if parts.method != Method::CONNECT {
        return Err(UpgradeRejection::HttpVersion);
    }
    // A CONNECT without `:protocol` asks for a TCP tunnel; with another, for another protocol.
    let websocket = parts
        .extensions
        .get::<hyper::ext::Protocol>()
        .is_some_and(|protocol| protocol.as_str().eq_ignore_ascii_case("websocket"));
    if !websocket {
        return Err(UpgradeRejection::NotUpgrade);
    }
    let headers = &parts.headers;
    // `:authority` stands for `Host` in HTTP/2 (RFC 9113 section 8.3.1); either will do, as
    // the origin check reads either.
    let hosts = headers.get_all(header::HOST).iter().count();
    if hosts > 1 || (hosts == 0 && parts.uri.authority().is_none()) {
        return Err(UpgradeRejection::MissingHost);
    }
    if has_body(headers) {
        return Err(UpgradeRejection::UnexpectedBody);
    }
    if !is_version_13(headers) {
        return Err(UpgradeRejection::UnsupportedVersion);
    }
    // `Sec-WebSocket-Key`, if sent, means nothing here: the stream is the client's own.
    Ok(Handshake::Connect)
}

/// Whether the request announces a body, whose bytes would be read as WebSocket frames.
fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get_all(header::CONTENT_LENGTH)
            .iter()
            .any(|length| length.as_bytes() != b"0")
}

/// `Sec-WebSocket-Version: 13`, once: the only version there is.
fn is_version_13(headers: &HeaderMap) -> bool {
    only(headers, header::SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes) == Some(b"13")
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

#[cfg(test)]
mod tests {
    use http::Request;

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

    /// An RFC 8441 request as hyper hands it over: HTTP/2, CONNECT, `:protocol` as an
    /// extension, `:authority` in the URI, no `Host`.
    fn connect(edit: impl FnOnce(http::request::Builder) -> http::request::Builder) -> Parts {
        let builder = Request::builder()
            .method(Method::CONNECT)
            .version(Version::HTTP_2)
            .uri("https://example.com/ws")
            .extension(hyper::ext::Protocol::from_static("websocket"))
            .header("sec-websocket-version", "13");
        edit(builder).body(()).unwrap().into_parts().0
    }

    #[test]
    fn accept_key_matches_rfc_example() {
        let handshake = check_request(&request(|b| b)).unwrap();
        assert_eq!(
            handshake,
            Handshake::Upgrade {
                accept: HeaderValue::from_static("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
            }
        );
    }

    #[test]
    fn each_kind_is_accepted_its_own_way() {
        let upgrade = check_request(&request(|b| b)).unwrap().accept();
        assert_eq!(upgrade.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(upgrade.headers()["upgrade"], "websocket");
        assert_eq!(upgrade.headers()["connection"], "upgrade");
        assert_eq!(
            upgrade.headers()["sec-websocket-accept"],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );

        let connect = check_request(&connect(|b| b)).unwrap();
        assert_eq!(connect, Handshake::Connect);
        let connect = connect.accept();
        assert_eq!(connect.status(), StatusCode::OK);
        // HTTP/2 forbids connection-specific headers, and RFC 8441 has no key to answer.
        assert!(connect.headers().is_empty());
    }

    #[test]
    fn http2_connect() {
        // A `Host` instead of `:authority`, a key nobody asked for, another spelling: accepted.
        let mut with_host = connect(|b| {
            b.header("host", "example.com")
                .header("sec-websocket-key", "ignored")
        });
        with_host.uri = http::Uri::from_static("/ws");
        assert_eq!(check_request(&with_host), Ok(Handshake::Connect));
        let shouting = connect(|b| b.extension(hyper::ext::Protocol::from_static("WebSocket")));
        assert_eq!(check_request(&shouting), Ok(Handshake::Connect));

        let mut get = connect(|b| b);
        get.method = Method::GET;
        assert_eq!(check_request(&get), Err(UpgradeRejection::HttpVersion));
        let mut upgrade_over_h2 = request(|b| b);
        upgrade_over_h2.version = Version::HTTP_2;
        assert_eq!(
            check_request(&upgrade_over_h2),
            Err(UpgradeRejection::HttpVersion)
        );
        let mut tunnel = connect(|b| b);
        tunnel.extensions.remove::<hyper::ext::Protocol>();
        assert_eq!(check_request(&tunnel), Err(UpgradeRejection::NotUpgrade));
        let other = connect(|b| b.extension(hyper::ext::Protocol::from_static("connect-udp")));
        assert_eq!(check_request(&other), Err(UpgradeRejection::NotUpgrade));
        let mut no_authority = connect(|b| b);
        no_authority.uri = http::Uri::from_static("/ws");
        assert_eq!(
            check_request(&no_authority),
            Err(UpgradeRejection::MissingHost)
        );
        let two_hosts = connect(|b| b.header("host", "a.example").header("host", "b.example"));
        assert_eq!(
            check_request(&two_hosts),
            Err(UpgradeRejection::MissingHost)
        );
        let body = connect(|b| b.header("content-length", "5"));
        assert_eq!(check_request(&body), Err(UpgradeRejection::UnexpectedBody));
        let mut no_version = connect(|b| b);
        no_version.headers.remove("sec-websocket-version");
        assert_eq!(
            check_request(&no_version),
            Err(UpgradeRejection::UnsupportedVersion)
        );
        let mut wrong = connect(|b| b);
        wrong
            .headers
            .insert("sec-websocket-version", HeaderValue::from_static("8"));
        assert_eq!(
            check_request(&wrong),
            Err(UpgradeRejection::UnsupportedVersion)
        );
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
        http10.version = Version::HTTP_10;
        assert_eq!(check_request(&http10), Err(UpgradeRejection::HttpVersion));
        // CONNECT is HTTP/2's way; over HTTP/1.1 it is just another method.
        let connect_h1 = Request::connect("example.com:443")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        assert_eq!(
            check_request(&connect_h1),
            Err(UpgradeRejection::MethodNotAllowed)
        );
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
}
