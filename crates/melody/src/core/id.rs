//! [`SessionId`]: a session's name, random so that no client can guess another's.

use std::fmt;

/// A session's identifier: random (64 bits from the operating system's generator), so a
/// client cannot guess another session's id from its own, and unique among the connected
/// sessions of a hub.
///
/// On the wire (JSON, [`Display`](fmt::Display)) it is a decimal string, never a number:
/// JavaScript numbers hold integers only up to 2^53, and an id above that would silently
/// change in a browser.
///
/// ```
/// use melody::SessionId;
///
/// let id: SessionId = "18446744073709551615".parse()?;
/// assert_eq!(serde_json::to_string(&id)?, r#""18446744073709551615""#);
/// assert!("007".parse::<SessionId>().is_err()); // only the exact decimal form names an id
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct SessionId(u64);

impl SessionId {
    /// A fresh random id.
    pub(crate) fn random() -> Self {
        Self(super::random::u64())
    }

    /// The id as a number.
    #[must_use]
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl From<u64> for SessionId {
    /// An id as it travels (in an envelope's `target`, between nodes).
    fn from(id: u64) -> Self {
        Self(id)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A string that is not the exact decimal form of a [`SessionId`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a session id")]
pub struct ParseSessionIdError;

impl std::str::FromStr for SessionId {
    type Err = ParseSessionIdError;

    /// Parses the exact decimal form: no sign, no leading zeros, no spaces.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let exact = text.bytes().all(|b| b.is_ascii_digit())
            && !text.is_empty()
            && (text == "0" || !text.starts_with('0'));
        if !exact {
            return Err(ParseSessionIdError);
        }
        text.parse().map(Self).map_err(|_| ParseSessionIdError)
    }
}

impl serde::Serialize for SessionId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for SessionId {
    /// From the decimal string (as serialized); a JSON number is accepted too.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = SessionId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a session id as a decimal string")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<SessionId, E> {
                text.parse().map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, id: u64) -> Result<SessionId, E> {
                Ok(SessionId(id))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl From<&super::session::Session> for SessionId {
    fn from(session: &super::session::Session) -> Self {
        session.id()
    }
}
