//! axum glue (feature `axum`, on by default): mount a hub with `get(melody.handler())`.

use futures_util::future::BoxFuture;

use axum::{
    extract::Request,
    response::{IntoResponse, Response},
};
use http::request::Parts;

use crate::{Keys, Melody, UpgradeRejection};

impl Melody {
    /// An axum handler that upgrades requests to sessions of this hub.
    ///
    /// Mounted with `get`, it serves HTTP/1.1 handshakes; with `any` (or
    /// `get(handler.clone()).connect(handler)`), HTTP/2 ones too, which are `CONNECT`s
    /// (RFC 8441; see the crate guide's HTTP/2 section).
    ///
    /// ```
    /// use axum::{Router, routing::get};
    /// use melody::Melody;
    ///
    /// let melody = Melody::new();
    /// melody.on_text(|s, text| { let _ = s.melody().all().send(text); });
    /// let app: Router = Router::new().route("/ws", get(melody.handler()));
    /// ```
    ///
    /// To attach values to the session from an extractor, write the handler yourself and call
    /// [`Melody::upgrade_with`]:
    ///
    /// ```
    /// use axum::{Router, extract::{Path, Request, State}, response::IntoResponse, routing::get};
    /// use melody::{Keys, Melody};
    ///
    /// async fn room(
    ///     State(melody): State<Melody>,
    ///     Path(name): Path<String>,
    ///     req: Request,
    /// ) -> impl IntoResponse {
    ///     melody.upgrade_with(req, Keys::new().with("room", name.clone()).join(name)).await
    /// }
    ///
    /// let app: Router = Router::new()
    ///     .route("/room/{name}/ws", get(room))
    ///     .with_state(Melody::new());
    /// ```
    #[must_use = "mount the handler on a route"]
    pub fn handler(
        &self,
    ) -> impl Fn(Request) -> BoxFuture<'static, Response> + Clone + Send + Sync + 'static {
        let melody = self.clone();
        move |req: Request| {
            let upgrade = melody.upgrade(req);
            Box::pin(async move { upgrade.await.into_response() })
        }
    }

    /// An axum handler that upgrades requests to sessions that start with the [`Keys`] `keys`
    /// derives from the request head (values, and topics to join before the connect handler
    /// runs), or refuses them with its [`UpgradeRejection`].
    ///
    /// ```
    /// use axum::{Router, routing::get};
    /// use melody::{AuthRejection, Keys, Melody, UpgradeRejection, http::StatusCode};
    ///
    /// let melody = Melody::new();
    /// // `/ws?device=42` joins the topic "42"; without a device: 400.
    /// let by_device = melody.handler_with(|req| {
    ///     let device = req.uri.query().and_then(|q| q.strip_prefix("device="));
    ///     match device {
    ///         Some(device) if !device.is_empty() => Ok(Keys::new().join(device)),
    ///         _ => Err(UpgradeRejection::Auth(AuthRejection::new(
    ///             StatusCode::BAD_REQUEST,
    ///             "the request names no device",
    ///         ))),
    ///     }
    /// });
    /// let app: Router = Router::new().route("/ws", get(by_device));
    /// ```
    #[must_use = "mount the handler on a route"]
    pub fn handler_with(
        &self,
        keys: impl Fn(&Parts) -> Result<Keys, UpgradeRejection> + Clone + Send + Sync + 'static,
    ) -> impl Fn(Request) -> BoxFuture<'static, Response> + Clone + Send + Sync + 'static {
        let melody = self.clone();
        move |req: Request| {
            let (parts, body) = req.into_parts();
            let keys = keys(&parts);
            let melody = melody.clone();
            Box::pin(async move {
                match keys {
                    Ok(keys) => melody
                        .upgrade_with(Request::from_parts(parts, body), keys)
                        .await
                        .into_response(),
                    Err(rejection) => IntoResponse::into_response(rejection),
                }
            })
        }
    }
}

impl IntoResponse for UpgradeRejection {
    fn into_response(self) -> Response {
        UpgradeRejection::into_response(self).into_response()
    }
}
