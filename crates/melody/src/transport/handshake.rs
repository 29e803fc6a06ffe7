//! The HTTP side of a session: checks an upgrade request, answers 101 or a clear refusal, and
//! hands the upgraded connection to its session task.
//!
//! Works with any server built on hyper 1 (axum, plain hyper, `melody::serve`, and what is built
//! on them): the upgrade goes through hyper's `OnUpgrade` request extension.

use std::{net::SocketAddr, sync::Arc};

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header, request::Parts};
use http_body_util::Full;
use hyper::upgrade::OnUpgrade;

use super::connection;
use crate::core::{
    admission::{UpgradeRejection, UpgradeResponse},
    config::Config,
    data::Keys,
    hub::Hub,
    lifecycle::Slot,
    session::Subprotocol,
    stats::Reason,
};

/// The remote address of a connection, for servers that are not axum: insert it into the
/// request's extensions before calling [`Melody::upgrade`](crate::Melody::upgrade) and it becomes
/// [`Session::remote_addr`](crate::Session::remote_addr).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteAddr(pub SocketAddr);

/// The local address of a connection: insert it into the request's extensions and it becomes
/// [`Session::local_addr`](crate::Session::local_addr).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalAddr(pub SocketAddr);

/// Checks an upgrade request, runs the admission (origin, auth, slot), starts the session task
/// and answers `101 Switching Protocols`; or refuses.
pub(crate) async fn upgrade(
    hub: &Arc<Hub>,
    mut parts: Parts,
    mut keys: Keys,
) -> Result<UpgradeResponse, UpgradeRejection> {
    let accept = check_request(&parts)?;
    let subprotocol = select_subprotocol(&parts.headers, &hub.config)?;
    if !hub.config.check_origin.allows(&parts) {
        hub.counters.rejected(Reason::Origin);
        return Err(UpgradeRejection::OriginNotAllowed);
    }
    if hub.is_closed() {
        return Err(UpgradeRejection::Closed);
    }
    keys.extend(hub.authorize(&parts).await?);
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
    let mut parts = compact(parts, &hub.config).ok_or(UpgradeRejection::HeadersTooLarge)?;
    let protocol_header = subprotocol.as_deref().map(HeaderValue::from_str);
    if let Some(name) = subprotocol {
        parts.extensions.insert(Subprotocol(name));
    }
    connection::spawn(hub.clone(), on_upgrade, parts, keys, addrs, slot);

    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    if let Some(Ok(value)) = protocol_header {
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, value);
    }
    Ok(response)
}

/// The subprotocol to answer: of those the client offers (`Sec-WebSocket-Protocol`, any number
/// of comma-separated lists), the first in the server's preference order. Names are compared
/// exactly (RFC 6455 section 4.1: they are case-sensitive tokens).
fn select_subprotocol(
    headers: &HeaderMap,
    config: &Config,
) -> Result<Option<Box<str>>, UpgradeRejection> {
    let offered = || {
        headers
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
    };
    let selected = config
        .subprotocols
        .iter()
        .find(|name| offered().any(|offer| offer == &***name));
    match selected {
        Some(name) => Ok(Some(name.clone())),
        None if config.require_subprotocol => Err(UpgradeRejection::NoSubprotocol),
        None => Ok(None),
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
