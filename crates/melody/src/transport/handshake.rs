//! The HTTP side of a session: checks a handshake request, answers it or refuses it clearly,
//! and hands the upgraded stream to its session task.
//!
//! Two kinds of handshake open the same session ([`Handshake`](check::Handshake)): an
//! HTTP/1.1 `GET` with `Upgrade: websocket` (RFC 6455), answered `101`, after which the
//! connection is the WebSocket; and an HTTP/2 `CONNECT` with `:protocol websocket`
//! (RFC 8441), answered `200`, after which one stream of the connection is, while the
//! connection goes on carrying others.
//!
//! Works with any server built on hyper 1 (axum, plain hyper, `melody::serve`, and what is built
//! on them): either way the stream comes from hyper's `OnUpgrade` request extension.

use std::{net::SocketAddr, sync::Arc};

use http::{Extensions, HeaderMap, HeaderValue, header, request::Parts};
use hyper::upgrade::OnUpgrade;

mod check;
mod refusal;

use self::check::check_request;
use super::connection;
use crate::core::{
    admission::{UpgradeRejection, UpgradeResponse},
    config::Config,
    data::Keys,
    hub::Hub,
    lifecycle::Slot,
    request_head::RequestHead,
    stats::Reason,
};
use crate::protocol::deflate;

/// The remote address of a connection, for servers that are not axum: insert it into the
/// request's extensions before calling [`Melody::upgrade`](crate::Melody::upgrade) and it becomes
/// [`Session::remote_addr`](crate::Session::remote_addr).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteAddr(pub SocketAddr);

/// The local address of a connection: insert it into the request's extensions and it becomes
/// [`Session::local_addr`](crate::Session::local_addr).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalAddr(pub SocketAddr);

/// Checks a handshake request, runs the admission (origin, auth, slot), starts the session task
/// and accepts the handshake (`101` or `200`, see [`Handshake`](check::Handshake)); or refuses.
pub(crate) async fn upgrade(
    hub: &Arc<Hub>,
    mut parts: Parts,
    mut keys: Keys,
) -> Result<UpgradeResponse, UpgradeRejection> {
    let handshake = check_request(&parts)?;
    let subprotocol = select_subprotocol(&parts.headers, &hub.config)?;
    let deflate = hub
        .config
        .compression
        .policy()
        .and_then(|policy| deflate::negotiate(&parts.headers, policy));
    if !hub.config.check_origin.allows(&parts) {
        hub.counters.rejected(Reason::Origin);
        return Err(UpgradeRejection::OriginNotAllowed);
    }
    if hub.is_closed() {
        return Err(UpgradeRejection::Closed);
    }
    // A refusal is the HTTP response, before any slot is taken; told after the upgrade
    // (`close_on_auth_refusal`), it needs the upgrade and so a slot.
    let told_later = match hub.authorize(&parts).await {
        Ok(granted) => {
            keys.extend(granted);
            None
        }
        Err(UpgradeRejection::Auth(rejection)) if hub.config.close_on_auth_refusal => {
            Some(rejection)
        }
        Err(refused) => return Err(refused),
    };
    let Some(slot) = Slot::acquire(hub) else {
        hub.counters.rejected(Reason::MaxConnections);
        return Err(UpgradeRejection::TooManyConnections);
    };
    let on_upgrade = parts
        .extensions
        .remove::<OnUpgrade>()
        .ok_or(UpgradeRejection::NotUpgradable)?;
    if let Some(rejection) = told_later {
        refusal::close_after_upgrade(hub, on_upgrade, slot, &rejection);
        // Told in the close frame: the handshake itself succeeds, with nothing negotiated.
        return Ok(handshake.accept());
    }
    let addrs = (
        remote_addr(&parts),
        parts.extensions.get::<LocalAddr>().map(|a| a.0),
    );
    let head = compact(parts, subprotocol.as_deref(), &hub.config)
        .ok_or(UpgradeRejection::HeadersTooLarge)?;
    let protocol_header = subprotocol.as_deref().map(HeaderValue::from_str);
    let agreed = deflate.as_ref().map(|(agreed, _)| *agreed);
    connection::spawn(hub.clone(), on_upgrade, head, keys, addrs, slot, agreed);

    let mut response = handshake.accept();
    // What was negotiated is answered alike over both kinds of handshake.
    let headers = response.headers_mut();
    if let Some(Ok(value)) = protocol_header {
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, value);
    }
    if let Some((_, value)) = deflate {
        headers.insert(header::SEC_WEBSOCKET_EXTENSIONS, value);
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

/// The request head a session keeps ([`RequestHead`]): the URI and the kept headers, without
/// the handshake headers, packed into the session's own allocation; `None` when that is over
/// [`Config::max_request_head`].
///
/// hyper parses them as slices of its connection read buffer; a session that kept those would
/// keep the whole buffer (kilobytes) alive for its lifetime. Measured with `melody-bench idle`.
/// The bound matters as much: a client controls how many headers it sends.
fn compact(mut parts: Parts, subprotocol: Option<&str>, config: &Config) -> Option<RequestHead> {
    let kept = |name: &header::HeaderName| {
        !HANDSHAKE_HEADERS.contains(name)
            && config
                .keep_headers
                .as_ref()
                .is_none_or(|names| names.contains(name))
    };
    let uri = parts.uri.to_string();
    let headers: Vec<_> = parts
        .headers
        .iter()
        .filter(|(name, _)| kept(name))
        .collect();
    let size = uri.len()
        + headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len())
            .sum::<usize>();
    if size > config.max_request_head {
        return None;
    }
    // The addresses become the session's own (`remote_addr`, `local_addr`, read before this):
    // the extensions they came from are not kept a second time (a boxed value each). axum's
    // `ConnectInfo` stays where it says something else (behind a proxy, `RemoteAddr` may be
    // the client's address and `ConnectInfo` the proxy's).
    let extensions = &mut parts.extensions;
    #[cfg(feature = "axum")]
    if let Some(info) = extensions.remove::<::axum::extract::ConnectInfo<SocketAddr>>() {
        let remote = extensions.get::<RemoteAddr>().map(|addr| addr.0);
        if remote.is_some_and(|remote| remote != info.0) {
            extensions.insert(info);
        }
    }
    extensions.remove::<RemoteAddr>();
    extensions.remove::<LocalAddr>();
    // axum's router keeps the URI as it came as well: kept only where it differs (a nested
    // router strips a prefix), so a session never holds the same URI twice.
    #[cfg(feature = "axum")]
    if let Some(::axum::extract::OriginalUri(original)) = extensions.remove() {
        if original != parts.uri {
            extensions.insert(::axum::extract::OriginalUri(own_uri(&original)));
        }
    }
    let extensions = tightened(std::mem::take(extensions));
    Some(RequestHead::pack(
        parts.version,
        &parts.method,
        &uri,
        subprotocol,
        &headers,
        extensions,
    ))
}

/// The same extensions in a table of their own size. Hyper, the server and the router grew the
/// table as they inserted into it, and a hash table does not shrink when entries leave (the
/// session removed several): the session would keep room for twice its entries for its whole
/// life. The entries, among them other crates' private types, are moved, not copied.
fn tightened(extensions: Extensions) -> Extensions {
    match extensions.len() {
        0 => return Extensions::new(),
        // The smallest table (4 buckets) holds 3 entries: up to 2 and the seed below. With more,
        // the seed could push the new table one size up, past the one it replaces.
        1..=2 => {}
        _ => return extensions,
    }
    // `Extensions` only moves entries into a table that exists: one is made with a seed.
    #[derive(Clone)]
    struct Seed;
    let mut tight = Extensions::new();
    tight.insert(Seed);
    tight.extend(extensions);
    tight.remove::<Seed>();
    tight
}

/// A copy of the URI in its own allocation.
#[cfg(feature = "axum")]
fn own_uri(uri: &http::Uri) -> http::Uri {
    http::Uri::try_from(uri.to_string()).unwrap_or_else(|_| uri.clone())
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
