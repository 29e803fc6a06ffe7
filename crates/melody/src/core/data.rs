//! Session data: values stored on a session under string keys (Go melody's `Keys`), typed keys
//! that cannot be read back as the wrong type, and [`Keys`], what a session starts with.
//!
//! Every stored value keeps the name of its type, so a read of the wrong type says what is
//! there instead of returning nothing, and text is stored as `String` whether it was given as
//! `&str` or `String`: `set("user", "alice")` reads back with `get::<String>("user")`.

use std::{
    any::{Any, TypeId, type_name},
    collections::HashMap,
    fmt,
    marker::PhantomData,
    sync::Arc,
};

use super::error::DataError;

/// A value stored under a string key, whatever its type.
pub type Value = Arc<dyn Any + Send + Sync>;

/// A stored value and the name of its type.
#[derive(Clone)]
pub(crate) struct Stored {
    value: Value,
    type_name: &'static str,
}

impl Stored {
    /// Stores `value`; text given as `&'static str` is stored as a `String`.
    pub(crate) fn new<T: Any + Send + Sync>(value: T) -> Self {
        if TypeId::of::<T>() == TypeId::of::<&'static str>() {
            if let Some(text) = (&value as &dyn Any).downcast_ref::<&'static str>() {
                return Self::new(String::from(*text));
            }
        }
        Self {
            value: Arc::new(value),
            type_name: type_name::<T>(),
        }
    }

    pub(crate) fn value(&self) -> &Value {
        &self.value
    }

    /// The value as a `T`, or why not.
    pub(crate) fn read<T: Any + Clone>(&self, key: &str) -> Result<T, DataError> {
        self.value
            .downcast_ref::<T>()
            .cloned()
            .ok_or_else(|| DataError::WrongType {
                key: key.to_owned(),
                stored: self.type_name,
                requested: type_name::<T>(),
            })
    }
}

/// A typed key for session data: the value stored under it can only be of type `T`, so a read
/// cannot name the wrong type.
///
/// ```
/// use melody::{Key, Melody};
///
/// const USER: Key<String> = Key::new("user");
/// const VISITS: Key<u32> = Key::new("visits");
///
/// let melody = Melody::new();
/// melody.on_connect(|session| {
///     session.set(VISITS, 1);
///     // session.set(VISITS, "one"); // does not compile: VISITS holds a u32
///     let _name: Option<String> = session.get(USER);
/// });
/// ```
pub struct Key<T> {
    name: &'static str,
    _type: PhantomData<fn() -> T>,
}

impl<T> Key<T> {
    /// A key named `name`. Two keys with the same name share the stored value.
    #[must_use]
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            _type: PhantomData,
        }
    }

    /// The key's name.
    #[must_use]
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<T> Clone for Key<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Key<T> {}

impl<T> fmt::Debug for Key<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key<{}>({:?})", type_name::<T>(), self.name)
    }
}

/// What names a value on a session: a string (any type, chosen at the call) or a [`Key<T>`]
/// (its type fixed by the key).
pub trait AsKey<T> {
    /// The key's name.
    fn key_name(&self) -> &str;
}

impl<T> AsKey<T> for Key<T> {
    fn key_name(&self) -> &str {
        self.name
    }
}

impl<T> AsKey<T> for &str {
    fn key_name(&self) -> &str {
        self
    }
}

impl<T> AsKey<T> for String {
    fn key_name(&self) -> &str {
        self
    }
}

impl<T> AsKey<T> for &String {
    fn key_name(&self) -> &str {
        self
    }
}

/// What a new session starts with: values under string keys (Go melody's
/// `HandleRequestWithKeys`) and topics to be in before its connect handler runs. The auth hook
/// returns one; [`Melody::upgrade_with`](crate::Melody::upgrade_with) takes one.
///
/// ```
/// use melody::Keys;
///
/// let keys = Keys::new()
///     .with("user", "alice") // stored as a String
///     .with("plan", 3u32)
///     .join("room:lobby");
/// assert_eq!(keys.len(), 2);
/// ```
#[derive(Clone, Default)]
pub struct Keys {
    pub(crate) values: HashMap<String, Stored>,
    pub(crate) topics: Vec<String>,
}

impl Keys {
    /// No keys, no topics.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a value under `key` (replacing an earlier one). Text given as `&str` is stored as a
    /// `String`.
    #[must_use]
    pub fn with<T: Any + Send + Sync>(mut self, key: impl AsKey<T>, value: T) -> Self {
        self.insert(key, value);
        self
    }

    /// Adds a value under `key` (replacing an earlier one).
    pub fn insert<T: Any + Send + Sync>(&mut self, key: impl AsKey<T>, value: T) {
        self.values
            .insert(key.key_name().to_owned(), Stored::new(value));
    }

    /// Adds a topic the session joins before its connect handler runs.
    #[must_use]
    pub fn join(mut self, topic: impl Into<String>) -> Self {
        self.topics.push(topic.into());
        self
    }

    /// Adds every value and topic of `other`, replacing values under the same keys.
    pub fn extend(&mut self, other: Keys) {
        self.values.extend(other.values);
        self.topics.extend(other.topics);
    }

    /// Number of values.
    #[must_use]
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are no values.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field("values", &self.values.keys().collect::<Vec<_>>())
            .field("topics", &self.topics)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_stored_as_a_string_however_it_was_given() {
        let keys = Keys::new().with("a", "x").with("b", String::from("y"));
        assert_eq!(keys.values["a"].read::<String>("a").unwrap(), "x");
        assert_eq!(keys.values["b"].read::<String>("b").unwrap(), "y");
    }

    #[test]
    fn a_wrong_type_says_what_is_stored() {
        let stored = Stored::new(7u32);
        assert_eq!(
            stored.read::<String>("n"),
            Err(DataError::WrongType {
                key: "n".into(),
                stored: "u32",
                requested: "alloc::string::String",
            })
        );
    }
}
