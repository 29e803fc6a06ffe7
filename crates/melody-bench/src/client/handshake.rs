//! The raw client's HTTP/1.1 upgrade (RFC 6455 section 4.1), written by hand so that it can
//! offer permessage-deflate (RFC 7692), and the reading of the server's answer.

use std::io;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The offer a browser makes, and the one the raw client sends.
pub const DEFLATE_OFFER: &str = "permessage-deflate; client_max_window_bits";

/// The GUID of RFC 6455 section 1.3, appended to the key for `Sec-WebSocket-Accept`.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Largest response head read.
const MAX_HEAD: usize = 16 * 1024;

/// The permessage-deflate parameters the server answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Deflate {
    /// The server compresses every message on its own (no LZ77 context between messages).
    pub server_no_context_takeover: bool,
    /// The server asks the client to compress every message on its own.
    pub client_no_context_takeover: bool,
    /// The server's window, when it stated one.
    pub server_max_window_bits: Option<u8>,
    /// The window the server asks the client to compress with, when it stated one.
    pub client_max_window_bits: Option<u8>,
}

/// A fresh `Sec-WebSocket-Key`: 16 bytes, base64.
pub fn new_key(seed: u64) -> String {
    let a = crate::payload::splitmix64(seed);
    let b = crate::payload::splitmix64(a);
    let mut raw = [0u8; 16];
    raw[..8].copy_from_slice(&a.to_le_bytes());
    raw[8..].copy_from_slice(&b.to_le_bytes());
    STANDARD.encode(raw)
}

/// The `Sec-WebSocket-Accept` a server must answer for `key`.
pub fn accept_key(key: &str) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    STANDARD.encode(sha.digest().bytes())
}

/// The upgrade request for `path` on `authority`.
pub fn request(authority: &str, path: &str, key: &str, offer_deflate: bool) -> String {
    let extensions = if offer_deflate {
        format!("Sec-WebSocket-Extensions: {DEFLATE_OFFER}\r\n")
    } else {
        String::new()
    };
    format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extensions}\r\n"
    )
}

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// Checks a response head (status line and headers, without the blank line): a 101 with the
/// right accept key; returns the permessage-deflate agreement, `None` when the server runs
/// the session uncompressed.
///
/// # Errors
///
/// Fails on any other status, a wrong or missing accept key, or an extension answer that was
/// not offered (another extension, a parameter the client did not allow, a bad value).
pub fn check_response(head: &str, key: &str, offered: bool) -> io::Result<Option<Deflate>> {
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let mut parts = status.splitn(3, ' ');
    let (version, code) = (parts.next(), parts.next());
    if version != Some("HTTP/1.1") || code != Some("101") {
        return Err(invalid(format!("upgrade refused: {status}")));
    }
    let mut accepted = false;
    let mut deflate = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(invalid(format!("malformed header line: {line}")));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("sec-websocket-accept") {
            accepted = value == accept_key(key);
        } else if name.eq_ignore_ascii_case("sec-websocket-extensions") {
            for element in value.split(',').filter(|e| !e.trim().is_empty()) {
                if !offered || deflate.is_some() {
                    return Err(invalid(format!("extension not offered: {element}")));
                }
                deflate = Some(parse_deflate(element)?);
            }
        }
    }
    if !accepted {
        return Err(invalid("missing or wrong Sec-WebSocket-Accept"));
    }
    Ok(deflate)
}

/// Parses one answered extension, which must be permessage-deflate with parameters the
/// offer allows (RFC 7692 section 7.1).
fn parse_deflate(element: &str) -> io::Result<Deflate> {
    let mut params = element.split(';').map(str::trim);
    let name = params.next().unwrap_or_default();
    if !name.eq_ignore_ascii_case("permessage-deflate") {
        return Err(invalid(format!("extension not offered: {name}")));
    }
    let mut agreed = Deflate::default();
    for param in params {
        let (key, value) = match param.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim().trim_matches('"'))),
            None => (param, None),
        };
        let bits = |v: Option<&str>| {
            v.and_then(|v| v.parse::<u8>().ok())
                .filter(|b| (8..=15).contains(b))
                .ok_or_else(|| invalid(format!("bad window bits: {param}")))
        };
        match (key.to_ascii_lowercase().as_str(), value) {
            ("server_no_context_takeover", None) => agreed.server_no_context_takeover = true,
            ("client_no_context_takeover", None) => agreed.client_no_context_takeover = true,
            ("server_max_window_bits", v) => agreed.server_max_window_bits = Some(bits(v)?),
            ("client_max_window_bits", v) => agreed.client_max_window_bits = Some(bits(v)?),
            _ => return Err(invalid(format!("unexpected parameter: {param}"))),
        }
    }
    Ok(agreed)
}

/// Sends the upgrade request on `stream` and reads the answer: the agreement and whatever
/// arrived after the response head (the start of the first frames).
///
/// # Errors
///
/// Fails on I/O errors and on a response [`check_response`] refuses.
pub async fn upgrade<S>(
    stream: &mut S,
    authority: &str,
    path: &str,
    key: &str,
    offer_deflate: bool,
) -> io::Result<(Option<Deflate>, BytesMut)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    stream
        .write_all(request(authority, path, key, offer_deflate).as_bytes())
        .await?;
    let mut buf = BytesMut::with_capacity(1024);
    let end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if buf.len() >= MAX_HEAD {
            return Err(invalid("response head too long"));
        }
        buf.reserve(1024);
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    };
    let head = buf.split_to(end + 4);
    let head = std::str::from_utf8(&head[..end]).map_err(|_| invalid("non-UTF-8 head"))?;
    let deflate = check_response(head, key, offer_deflate)?;
    Ok((deflate, buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_the_rfc_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(new_key(7).len(), 24);
        assert_ne!(new_key(7), new_key(8));
    }

    fn head(extensions: &str) -> String {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let mut h = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\
             sec-websocket-accept: {}",
            accept_key(key)
        );
        if !extensions.is_empty() {
            h.push_str(&format!("\r\nSec-WebSocket-Extensions: {extensions}"));
        }
        h
    }

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    #[test]
    fn answers_are_read() {
        assert_eq!(check_response(&head(""), KEY, true).unwrap(), None);
        let shared = check_response(
            &head("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
            KEY,
            true,
        )
        .unwrap()
        .unwrap();
        assert!(shared.server_no_context_takeover && shared.client_no_context_takeover);
        let bits = check_response(
            &head("permessage-deflate; server_max_window_bits=10; client_max_window_bits=\"9\""),
            KEY,
            true,
        )
        .unwrap()
        .unwrap();
        assert_eq!(bits.server_max_window_bits, Some(10));
        assert_eq!(bits.client_max_window_bits, Some(9));
        assert!(!bits.server_no_context_takeover);
    }

    #[test]
    fn bad_answers_are_refused() {
        // An extension that was not offered, twice, or with a parameter outside the offer.
        assert!(check_response(&head("permessage-deflate"), KEY, false).is_err());
        assert!(check_response(&head("x-webkit-deflate-frame"), KEY, true).is_err());
        assert!(
            check_response(&head("permessage-deflate, permessage-deflate"), KEY, true).is_err()
        );
        assert!(check_response(&head("permessage-deflate; foo"), KEY, true).is_err());
        assert!(
            check_response(
                &head("permessage-deflate; server_max_window_bits=16"),
                KEY,
                true
            )
            .is_err()
        );
        // Wrong accept key, or not a 101.
        assert!(check_response(&head(""), "AAAAAAAAAAAAAAAAAAAAAA==", true).is_err());
        assert!(check_response("HTTP/1.1 400 Bad Request", KEY, true).is_err());
    }

    #[test]
    fn the_request_offers_what_browsers_offer() {
        let r = request("127.0.0.1:5000", "/ws", KEY, true);
        assert!(r.starts_with("GET /ws HTTP/1.1\r\nHost: 127.0.0.1:5000\r\n"));
        assert!(
            r.contains("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n")
        );
        assert!(r.ends_with("\r\n\r\n"));
        assert!(!request("h", "/", KEY, false).contains("Extensions"));
    }
}
