//! permessage-deflate negotiation (RFC 7692 section 7): reads the client's offers from
//! `Sec-WebSocket-Extensions`, accepts the first one the server's policy can serve, and writes
//! the answer. An offer that breaks the RFC's rules (an unknown or repeated parameter, a bad
//! value) is declined, never an error: the next offer is tried, and with none left the session
//! runs uncompressed.

use http::{HeaderMap, HeaderValue, header};

/// The smallest LZ77 window the compressor can keep to: zlib (and zlib-rs) turn a raw deflate
/// window of 8 bits into 9, so an offer limiting the server to 8 bits is declined.
pub(crate) const MIN_WINDOW_BITS: u8 = 9;
/// The largest LZ77 window, 32 KiB.
pub(crate) const MAX_WINDOW_BITS: u8 = 15;

/// What the server is willing to do, from its configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Policy {
    /// The window the server compresses with at most (9 to 15).
    pub(crate) window_bits: u8,
    /// Whether the server keeps its compression context between messages (per-session
    /// compressor); `false` compresses every message on its own, so one compressed frame
    /// serves every session.
    pub(crate) server_context: bool,
    /// Whether the client may keep its context between messages (the server then keeps a
    /// decompressor per session); `false` asks it not to, so no session holds inflate state.
    pub(crate) client_context: bool,
}

/// The parameters both sides agreed on for one session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Agreed {
    /// The server compresses every message on its own (no context between messages).
    pub(crate) server_no_context_takeover: bool,
    /// The client compresses every message on its own.
    pub(crate) client_no_context_takeover: bool,
    /// The window the server compresses with.
    pub(crate) server_window_bits: u8,
}

/// One client offer of permessage-deflate, as parsed.
#[derive(Debug, Default, PartialEq, Eq)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: offered without a value.
    client_max_window_bits: Option<Option<u8>>,
}

/// Negotiates permessage-deflate for an upgrade request: the agreed parameters and the
/// `Sec-WebSocket-Extensions` value to answer, or `None` to run uncompressed.
pub(crate) fn negotiate(headers: &HeaderMap, policy: Policy) -> Option<(Agreed, HeaderValue)> {
    let offers = headers
        .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(split_outside_quotes::<','>);
    for element in offers {
        let mut parts = split_outside_quotes::<';'>(element);
        let name = parts.next().unwrap_or_default().trim();
        if !name.eq_ignore_ascii_case("permessage-deflate") {
            continue;
        }
        if let Some(offer) = parse_offer(parts) {
            if let Some(accepted) = accept(&offer, policy) {
                return Some(accepted);
            }
        }
    }
    None
}

/// Splits on `SEP` except inside double-quoted strings (which may hold either separator).
fn split_outside_quotes<const SEP: char>(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let text = rest?;
        let (mut quoted, mut escaped) = (false, false);
        for (at, c) in text.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                c if c == SEP && !quoted => {
                    rest = Some(&text[at + 1..]);
                    return Some(&text[..at]);
                }
                _ => {}
            }
        }
        rest = None;
        Some(text)
    })
}

/// Parses the parameters of one offer; `None` when the RFC says to decline it (section 7: an
/// unknown parameter, a parameter given twice, or a value that is not valid for it).
fn parse_offer<'a>(params: impl Iterator<Item = &'a str>) -> Option<Offer> {
    let mut offer = Offer::default();
    let mut seen = [false; 4];
    for param in params {
        let (name, value) = match param.split_once('=') {
            Some((name, value)) => (name.trim(), Some(unquote(value.trim())?)),
            None => (param.trim(), None),
        };
        let index = match name.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" if value.is_none() => {
                offer.server_no_context_takeover = true;
                0
            }
            "client_no_context_takeover" if value.is_none() => {
                offer.client_no_context_takeover = true;
                1
            }
            "server_max_window_bits" => {
                offer.server_max_window_bits = Some(window_bits(value?)?);
                2
            }
            "client_max_window_bits" => {
                offer.client_max_window_bits = Some(match value {
                    Some(value) => Some(window_bits(value)?),
                    None => None,
                });
                3
            }
            _ => return None,
        };
        if std::mem::replace(&mut seen[index], true) {
            return None;
        }
    }
    Some(offer)
}

/// A parameter value, without its quotes if it has them (RFC 6455's quoted-string).
fn unquote(value: &str) -> Option<&str> {
    match value.strip_prefix('"') {
        Some(inner) => inner.strip_suffix('"'),
        None => Some(value),
    }
}

/// A window size in bits: a decimal integer from 8 to 15 without leading zeros.
fn window_bits(value: &str) -> Option<u8> {
    if value.starts_with('0') || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok().filter(|bits| (8..=15).contains(bits))
}

/// The agreement for one valid offer, or `None` when the server cannot serve it.
fn accept(offer: &Offer, policy: Policy) -> Option<(Agreed, HeaderValue)> {
    let requested = offer.server_max_window_bits.unwrap_or(MAX_WINDOW_BITS);
    if requested < MIN_WINDOW_BITS {
        return None;
    }
    let server_window_bits = requested.min(policy.window_bits);
    let agreed = Agreed {
        // A client may ask the server not to keep context; the server may decide so itself.
        server_no_context_takeover: offer.server_no_context_takeover || !policy.server_context,
        // The server may ask the client to drop its context in any answer (section 7.1.1.2);
        // it does so when it keeps no inflate state, or when the client offered it anyway.
        client_no_context_takeover: offer.client_no_context_takeover || !policy.client_context,
        server_window_bits,
    };
    let mut answer = String::from("permessage-deflate");
    if agreed.server_no_context_takeover {
        answer.push_str("; server_no_context_takeover");
    }
    if agreed.client_no_context_takeover {
        answer.push_str("; client_no_context_takeover");
    }
    // Stated when the client asked for a limit, or when the server uses a smaller window
    // than the default (section 7.1.2.1 allows both).
    if offer.server_max_window_bits.is_some() || server_window_bits < MAX_WINDOW_BITS {
        answer.push_str(&format!("; server_max_window_bits={server_window_bits}"));
    }
    // `client_max_window_bits` is never answered: the server inflates with a full window,
    // whatever the client uses.
    let value = HeaderValue::from_str(&answer).expect("ASCII answer");
    Some((agreed, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHARED: Policy = Policy {
        window_bits: 15,
        server_context: false,
        client_context: false,
    };
    const DEDICATED: Policy = Policy {
        window_bits: 15,
        server_context: true,
        client_context: true,
    };

    fn answer(offer: &str, policy: Policy) -> Option<String> {
        let mut headers = HeaderMap::new();
        for line in offer.split('\n') {
            headers.append(
                header::SEC_WEBSOCKET_EXTENSIONS,
                HeaderValue::from_str(line).unwrap(),
            );
        }
        negotiate(&headers, policy).map(|(_, value)| value.to_str().unwrap().to_owned())
    }

    #[test]
    fn a_browser_offer_gets_the_shared_answer() {
        assert_eq!(
            answer("permessage-deflate; client_max_window_bits", SHARED).as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
        );
        assert_eq!(
            answer("permessage-deflate; client_max_window_bits", DEDICATED).as_deref(),
            Some("permessage-deflate")
        );
    }

    #[test]
    fn requested_limits_are_honoured() {
        assert_eq!(
            answer(
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=10",
                DEDICATED
            )
            .as_deref(),
            Some("permessage-deflate; server_no_context_takeover; server_max_window_bits=10")
        );
        assert_eq!(
            answer(
                "permessage-deflate; server_max_window_bits=\"12\"",
                DEDICATED
            )
            .as_deref(),
            Some("permessage-deflate; server_max_window_bits=12")
        );
        let small = Policy {
            window_bits: 11,
            ..SHARED
        };
        assert!(
            answer("permessage-deflate", small)
                .unwrap()
                .ends_with("server_max_window_bits=11")
        );
        assert!(
            answer("permessage-deflate; server_max_window_bits=13", small)
                .unwrap()
                .ends_with("server_max_window_bits=11")
        );
        assert!(
            answer("permessage-deflate; client_no_context_takeover", DEDICATED)
                .unwrap()
                .contains("client_no_context_takeover")
        );
    }

    #[test]
    fn invalid_offers_are_declined_and_the_next_one_is_tried() {
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_max_window_bits=1a",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; unknown",
            "permessage-deflate; server_max_window_bits=\"10",
            // zlib cannot compress with an 8-bit window.
            "permessage-deflate; server_max_window_bits=8",
            "x-webkit-deflate-frame",
            "",
        ] {
            assert_eq!(answer(bad, SHARED), None, "{bad}");
        }
        assert_eq!(
            answer(
                "permessage-deflate; server_max_window_bits=8, permessage-deflate",
                DEDICATED
            )
            .as_deref(),
            Some("permessage-deflate")
        );
        assert_eq!(
            answer(
                "foo; x=\"a,permessage-deflate\"\npermessage-deflate",
                DEDICATED
            )
            .as_deref(),
            Some("permessage-deflate")
        );
        assert_eq!(
            answer(
                "  PerMessage-Deflate ;  Client_Max_Window_Bits = 9 ",
                DEDICATED
            )
            .as_deref(),
            Some("permessage-deflate")
        );
    }

    #[test]
    fn the_agreement_matches_the_answer() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::SEC_WEBSOCKET_EXTENSIONS,
            HeaderValue::from_static("permessage-deflate; server_max_window_bits=10"),
        );
        let (agreed, _) = negotiate(&headers, SHARED).unwrap();
        assert_eq!(
            agreed,
            Agreed {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                server_window_bits: 10,
            }
        );
    }
}
