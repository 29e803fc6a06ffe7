//! The upgrade request's head as a session keeps it for its whole life: packed into one
//! allocation, and unpacked into [`http::request::Parts`] only when the application asks for it.
//!
//! Why: `Parts` is 224 bytes inline, and its header map spends about a hundred bytes more per
//! header on its table, entries and separate allocations. Most sessions never read their
//! request after the upgrade, and an idle session is a few hundred bytes in all
//! (docs/PERFORMANCE_NOTES.md "Idle memory"). Packed, the head is its bytes plus a few
//! length prefixes, and 40 bytes inline. A session that reads it pays for the unpacked copy
//! from then on (made once; later reads borrow it).

use std::sync::OnceLock;

use http::{Extensions, HeaderName, HeaderValue, Method, Uri, Version, request::Parts};

/// A session's request head (see the module doc).
pub(crate) struct RequestHead {
    /// The version, then the method, URI, subprotocol and each header's name and value, each
    /// after its length (see [`Packer`]).
    packed: Box<[u8]>,
    extensions: Extensions,
    unpacked: OnceLock<Box<Parts>>,
}

/// Where the subprotocol is among the fields after the version byte: after the method and
/// the URI.
const SUBPROTOCOL_FIELD: usize = 2;

impl RequestHead {
    /// Packs a head: `headers` are those the session keeps, `uri` its text form.
    pub(crate) fn pack(
        version: Version,
        method: &Method,
        uri: &str,
        subprotocol: Option<&str>,
        headers: &[(&HeaderName, &HeaderValue)],
        extensions: Extensions,
    ) -> Self {
        let fields = [method.as_str(), uri, subprotocol.unwrap_or("")];
        let size = 1
            + fields
                .iter()
                .map(|field| Packer::size(field.len()))
                .sum::<usize>()
            + headers
                .iter()
                .map(|(name, value)| Packer::size(name.as_str().len()) + Packer::size(value.len()))
                .sum::<usize>();
        let mut packer = Packer(Vec::with_capacity(size));
        packer.0.push(version_code(version));
        for field in fields {
            packer.push(field.as_bytes());
        }
        for (name, value) in headers {
            packer.push(name.as_str().as_bytes());
            packer.push(value.as_bytes());
        }
        Self {
            packed: packer.0.into_boxed_slice(),
            extensions,
            unpacked: OnceLock::new(),
        }
    }

    /// The head as `Parts`, unpacked at the first call.
    pub(crate) fn parts(&self) -> &Parts {
        self.unpacked.get_or_init(|| Box::new(self.unpack()))
    }

    /// The subprotocol selected at the upgrade, read from the packed head without unpacking it.
    pub(crate) fn subprotocol(&self) -> Option<&str> {
        let name = self.fields().nth(SUBPROTOCOL_FIELD).unwrap_or_default();
        // Selected from the server's own list: never empty, always text.
        std::str::from_utf8(name)
            .ok()
            .filter(|name| !name.is_empty())
    }

    /// The fields after the version byte.
    fn fields(&self) -> Unpacker<'_> {
        Unpacker(self.packed.get(1..).unwrap_or_default())
    }

    fn unpack(&self) -> Parts {
        let (mut parts, ()) = http::Request::new(()).into_parts();
        parts.version = version_of(self.packed.first().copied().unwrap_or_default());
        let mut fields = self.fields();
        // Each was valid when packed and is read back whole: the fallbacks are never taken.
        if let Some(method) = fields.next() {
            parts.method = Method::from_bytes(method).unwrap_or_default();
        }
        if let Some(uri) = fields.next() {
            parts.uri = Uri::try_from(uri).unwrap_or_default();
        }
        let _subprotocol = fields.next();
        let mut headers = http::HeaderMap::new();
        while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
            if let (Ok(name), Ok(value)) =
                (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
            {
                headers.append(name, value);
            }
        }
        parts.headers = headers;
        // A copy: the session keeps its own for `Session::subprotocol` and the like, and the
        // packed head cannot give them up through a shared reference.
        parts.extensions = self.extensions.clone();
        parts
    }
}

/// Writes length-prefixed byte strings: the length as a little-endian base-128 number (one
/// byte up to 127, which almost every field is), then the bytes.
struct Packer(Vec<u8>);

impl Packer {
    fn size(len: usize) -> usize {
        let bits = usize::BITS - len.leading_zeros();
        bits.div_ceil(7).max(1) as usize + len
    }

    fn push(&mut self, bytes: &[u8]) {
        let mut len = bytes.len();
        while len >= 0x80 {
            // Masked to 7 bits: the cast keeps them all.
            self.0.push((len & 0x7f) as u8 | 0x80);
            len >>= 7;
        }
        self.0.push(len as u8);
        self.0.extend_from_slice(bytes);
    }
}

/// Reads back what a [`Packer`] wrote.
struct Unpacker<'a>(&'a [u8]);

impl<'a> Iterator for Unpacker<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let mut len = 0usize;
        let mut shift = 0;
        loop {
            let (&byte, rest) = self.0.split_first()?;
            self.0 = rest;
            len |= usize::from(byte & 0x7f).checked_shl(shift)?;
            if byte < 0x80 {
                break;
            }
            shift += 7;
        }
        let (field, rest) = self.0.split_at_checked(len)?;
        self.0 = rest;
        Some(field)
    }
}

fn version_code(version: Version) -> u8 {
    match version {
        Version::HTTP_09 => 0,
        Version::HTTP_10 => 1,
        Version::HTTP_2 => 3,
        Version::HTTP_3 => 4,
        _ => 2,
    }
}

fn version_of(code: u8) -> Version {
    match code {
        0 => Version::HTTP_09,
        1 => Version::HTTP_10,
        3 => Version::HTTP_2,
        4 => Version::HTTP_3,
        _ => Version::HTTP_11,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packed(request: http::Request<()>, subprotocol: Option<&str>) -> RequestHead {
        let (parts, ()) = request.into_parts();
        RequestHead::pack(
            parts.version,
            &parts.method,
            &parts.uri.to_string(),
            subprotocol,
            &parts.headers.iter().collect::<Vec<_>>(),
            parts.extensions.clone(),
        )
    }

    #[test]
    fn unpacks_what_was_packed() {
        let long = "v".repeat(20_000);
        let request = http::Request::builder()
            .uri("/ws/room?name=gopher&x=%20")
            .header("host", "example.com")
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .header("x-long", &long)
            .header("x-empty", "")
            .header("x-obs-text", HeaderValue::from_bytes(b"caf\xe9").unwrap())
            .extension(7u32)
            .body(())
            .unwrap();
        let head = packed(request, Some("chat.v2"));
        let parts = head.parts();
        assert_eq!(parts.method, Method::GET);
        assert_eq!(parts.version, Version::HTTP_11);
        assert_eq!(parts.uri, "/ws/room?name=gopher&x=%20");
        assert_eq!(parts.headers.len(), 6);
        let cookies: Vec<_> = parts.headers.get_all("cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert_eq!(parts.headers["x-long"], long.as_str());
        assert_eq!(parts.headers["x-empty"], "");
        assert_eq!(parts.headers["x-obs-text"].as_bytes(), b"caf\xe9");
        assert_eq!(parts.extensions.get::<u32>(), Some(&7));
        assert_eq!(head.subprotocol(), Some("chat.v2"));
        // Unpacked once: later reads borrow the same copy.
        assert!(std::ptr::eq(parts, head.parts()));
    }

    #[test]
    fn an_http2_connect_keeps_its_authority_and_version() {
        let request = http::Request::builder()
            .method(Method::CONNECT)
            .version(Version::HTTP_2)
            .uri("https://example.com/ws")
            .body(())
            .unwrap();
        let head = packed(request, None);
        let parts = head.parts();
        assert_eq!(parts.method, Method::CONNECT);
        assert_eq!(parts.version, Version::HTTP_2);
        assert_eq!(parts.uri, "https://example.com/ws");
        assert!(parts.headers.is_empty());
        assert_eq!(head.subprotocol(), None);
    }

    #[test]
    fn lengths_round_trip_at_every_width() {
        for len in [0, 1, 127, 128, 16_383, 16_384, 2_097_152] {
            let bytes = vec![b'a'; len];
            let mut packer = Packer(Vec::new());
            packer.push(&bytes);
            packer.push(b"next");
            assert_eq!(packer.0.len(), Packer::size(len) + Packer::size(4));
            let mut fields = Unpacker(&packer.0);
            assert_eq!(fields.next(), Some(&bytes[..]));
            assert_eq!(fields.next(), Some(&b"next"[..]));
            assert_eq!(fields.next(), None);
        }
    }

    #[test]
    fn a_truncated_head_reads_as_ended() {
        assert_eq!(Unpacker(&[5, b'a']).next(), None);
        assert_eq!(Unpacker(&[0x80]).next(), None);
        assert_eq!(Unpacker(&[0xff; 12]).next(), None);
    }

    /// What a session keeps inline for its head (see [`crate::core::session`]'s size test).
    #[test]
    fn the_head_is_small() {
        assert!(std::mem::size_of::<RequestHead>() <= 40);
    }
}
