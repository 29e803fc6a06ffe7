//! [`RouterError`]: what the router reports to the hub's error handler.

use std::sync::Arc;

use super::BoxError;

/// What the router reports to the hub's error handler, inside
/// [`Error::Handler`](crate::Error::Handler); the session stays open.
///
/// ```
/// use melody::{Error, Melody, router::RouterError};
///
/// let melody = Melody::new();
/// melody.on_error(|session, error| {
///     if let Error::Handler(source) = error {
///         if let Some(RouterError::Malformed(detail)) = source.downcast_ref::<RouterError>() {
///             tracing::warn!(session = %session.id(), %detail, "bad envelope");
///         }
///     }
/// });
/// ```
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RouterError {
    /// Text that is not an envelope, or data that does not decode for an
    /// [`on_data`](super::Router::on_data) route. The sender gets an error envelope, or is
    /// closed with 1003 (see [`Malformed`](super::Malformed)).
    #[error("malformed envelope: {0}")]
    Malformed(String),
    /// A route handler or a middleware returned an error.
    #[error("{0}")]
    Failed(Arc<dyn std::error::Error + Send + Sync>),
}

impl RouterError {
    pub(crate) fn failed(error: BoxError) -> Self {
        Self::Failed(Arc::from(error))
    }
}
