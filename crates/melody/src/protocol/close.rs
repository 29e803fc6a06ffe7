//! Close codes and close frames (RFC 6455 section 7.4), as they travel and as they are reported.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

/// A WebSocket close status code (RFC 6455, section 7.4).
///
/// The named constants are those Go melody exports; any other code in `1000..=4999` can be built
/// with [`CloseCode::new`].
///
/// ```
/// use melody::CloseCode;
///
/// assert_eq!(u16::from(CloseCode::GOING_AWAY), 1001);
/// assert!(CloseCode::NO_STATUS_RECEIVED.is_reserved());
/// assert_eq!(CloseCode::new(4000).map(u16::from), Some(4000));
/// assert_eq!(CloseCode::new(999), None);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(u16);

impl CloseCode {
    /// 1000: the purpose of the connection was fulfilled.
    pub const NORMAL_CLOSURE: Self = Self(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: Self = Self(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: Self = Self(1002);
    /// 1003: a message of a kind the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: Self = Self(1003);
    /// 1005: reported when a close frame carried no code. Never sent on the wire.
    pub const NO_STATUS_RECEIVED: Self = Self(1005);
    /// 1006: reported when the connection dropped without a close frame. Never sent on the wire.
    pub const ABNORMAL_CLOSURE: Self = Self(1006);
    /// 1007: a text message was not valid UTF-8.
    pub const INVALID_FRAME_PAYLOAD_DATA: Self = Self(1007);
    /// 1008: a message broke the endpoint's policy (rate limit, slow consumer).
    pub const POLICY_VIOLATION: Self = Self(1008);
    /// 1009: a message was larger than the endpoint accepts.
    pub const MESSAGE_TOO_BIG: Self = Self(1009);
    /// 1010: the client expected an extension the server did not negotiate.
    pub const MANDATORY_EXTENSION: Self = Self(1010);
    /// 1011: the server hit an unexpected condition.
    pub const INTERNAL_SERVER_ERR: Self = Self(1011);
    /// 1012: the service is restarting.
    pub const SERVICE_RESTART: Self = Self(1012);
    /// 1013: try again later (overload).
    pub const TRY_AGAIN_LATER: Self = Self(1013);
    /// 1015: reported when the TLS handshake failed. Never sent on the wire.
    pub const TLS_HANDSHAKE: Self = Self(1015);

    /// A close code from its number; `None` outside `1000..=4999`.
    #[must_use]
    pub const fn new(code: u16) -> Option<Self> {
        if code >= 1000 && code <= 4999 {
            Some(Self(code))
        } else {
            None
        }
    }

    /// Whether the code may only be reported locally and never sent in a close frame
    /// (1004, 1005, 1006, 1015).
    #[must_use]
    pub const fn is_reserved(self) -> bool {
        matches!(self.0, 1004 | 1005 | 1006 | 1015)
    }

    /// Whether a close frame may carry the code: the registered codes that are not only
    /// reported locally (1000–1003, 1007–1014) and the ranges for libraries and applications
    /// (3000–4999). 1016–2999 are kept for future standards, and a peer treats them as a
    /// protocol error.
    #[must_use]
    pub const fn may_be_sent(self) -> bool {
        matches!(self.0, 1000..=1015 | 3000..=4999) && !self.is_reserved()
    }

    /// The number.
    #[must_use]
    pub const fn as_u16(self) -> u16 {
        self.0
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> Self {
        code.0
    }
}

impl fmt::Debug for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CloseCode({})", self.0)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// The longest close reason a close frame can carry, in bytes.
pub const MAX_CLOSE_REASON_LEN: usize = 123;

/// A close frame: a code and a short reason.
///
/// ```
/// use melody::{CloseCode, CloseFrame};
///
/// let frame = CloseFrame::new(CloseCode::GOING_AWAY, "server restart");
/// assert_eq!(frame.code(), CloseCode::GOING_AWAY);
/// assert_eq!(frame.reason(), "server restart");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseFrame {
    code: CloseCode,
    reason: String,
}

impl CloseFrame {
    /// A close frame. A reason longer than 123 bytes is cut at the last character boundary
    /// that fits, as the protocol allows no more.
    #[must_use]
    pub fn new(code: CloseCode, reason: impl Into<String>) -> Self {
        let mut reason = reason.into();
        if reason.len() > MAX_CLOSE_REASON_LEN {
            let mut cut = MAX_CLOSE_REASON_LEN;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason.truncate(cut);
        }
        Self { code, reason }
    }

    /// A 1000 Normal Closure frame with no reason.
    #[must_use]
    pub fn normal() -> Self {
        Self::new(CloseCode::NORMAL_CLOSURE, "")
    }

    /// The close code.
    #[must_use]
    pub fn code(&self) -> CloseCode {
        self.code
    }

    /// The reason text (at most 123 bytes).
    #[must_use]
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// Parses a close payload as it travels on the wire: two bytes of code, then UTF-8 text.
    /// An empty payload reads as 1005 No Status Received.
    ///
    /// # Errors
    ///
    /// [`InvalidClosePayload`] when the payload is one byte long, the code is outside
    /// `1000..=4999`, or the reason is not UTF-8.
    pub fn from_payload(payload: &[u8]) -> Result<Self, InvalidClosePayload> {
        match payload {
            [] => Ok(Self::new(CloseCode::NO_STATUS_RECEIVED, "")),
            [_] => Err(InvalidClosePayload),
            [hi, lo, reason @ ..] => {
                let code =
                    CloseCode::new(u16::from_be_bytes([*hi, *lo])).ok_or(InvalidClosePayload)?;
                let reason = std::str::from_utf8(reason).map_err(|_| InvalidClosePayload)?;
                Ok(Self::new(code, reason))
            }
        }
    }

    /// The frame if it may be sent ([`CloseCode::may_be_sent`]), or 1005 without a reason,
    /// which stands for an empty close payload (Go melody's `CloseWithMsg(nil)`); otherwise the
    /// code that may not travel.
    pub(crate) fn sendable(self) -> Result<Self, CloseCode> {
        let empty = self.code == CloseCode::NO_STATUS_RECEIVED && self.reason.is_empty();
        if self.code.may_be_sent() || empty {
            Ok(self)
        } else {
            Err(self.code)
        }
    }

    /// The wire payload: the code in network byte order followed by the reason.
    #[must_use]
    pub fn to_payload(&self) -> Bytes {
        format_close_message(self.code, &self.reason)
    }
}

/// A close payload that is not two bytes of valid code followed by UTF-8 text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid close payload")]
pub struct InvalidClosePayload;

/// Formats a close code and text as a close frame payload (Go melody's `FormatCloseMessage`).
///
/// A text longer than 123 bytes is cut at a character boundary.
///
/// ```
/// use melody::{CloseCode, format_close_message};
///
/// let payload = format_close_message(CloseCode::NORMAL_CLOSURE, "bye");
/// assert_eq!(&payload[..], &[0x03, 0xE8, b'b', b'y', b'e']);
/// ```
#[must_use]
pub fn format_close_message(code: CloseCode, text: &str) -> Bytes {
    let reason = CloseFrame::new(code, text).reason;
    let mut payload = BytesMut::with_capacity(2 + reason.len());
    payload.put_u16(code.0);
    payload.put_slice(reason.as_bytes());
    payload.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_payload_round_trips() {
        let frame = CloseFrame::new(CloseCode::POLICY_VIOLATION, "rate limit");
        assert_eq!(CloseFrame::from_payload(&frame.to_payload()), Ok(frame));
    }

    #[test]
    fn empty_close_payload_is_no_status() {
        let frame = CloseFrame::from_payload(&[]).unwrap();
        assert_eq!(frame.code(), CloseCode::NO_STATUS_RECEIVED);
    }

    #[test]
    fn bad_close_payloads_are_rejected() {
        assert_eq!(CloseFrame::from_payload(&[3]), Err(InvalidClosePayload));
        assert_eq!(CloseFrame::from_payload(&[0, 10]), Err(InvalidClosePayload));
        assert_eq!(
            CloseFrame::from_payload(&[3, 232, 0xff]),
            Err(InvalidClosePayload)
        );
    }

    #[test]
    fn long_reason_is_cut_on_a_char_boundary() {
        let frame = CloseFrame::new(CloseCode::NORMAL_CLOSURE, "é".repeat(100));
        assert!(frame.reason().len() <= MAX_CLOSE_REASON_LEN);
        assert_eq!(frame.reason().len(), 122);
    }
}
