//! axum glue (feature `axum`, on by default): mount a hub with `get(melody.handler())`.

use futures_util::future::BoxFuture;

use axum::{
    extract::Request,
    response::{IntoResponse, Response},
};

use crate::{Melody, UpgradeRejection};

impl Melody {
    /// An axum handler that upgrades requests to sessions of this hub.
    ///
    /// ```
    /// use axum::{Router, routing::get};
    /// use melody::Melody;
    ///
    /// let melody = Melody::new();
    /// melody.handle_message(|s, text| { let _ = s.melody().broadcast(text); });
    /// let app: Router = Router::new().route("/ws", get(melody.handler()));
    /// ```
    ///
    /// To attach values to the session from an extractor, write the handler yourself and call
    /// [`Melody::handle_request_with_keys`]:
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
    ///     melody.handle_request_with_keys(req, Keys::new().with("room", name)).await
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
            let upgrade = melody.handle_request(req);
            Box::pin(async move { upgrade.await.into_response() })
        }
    }
}

impl IntoResponse for UpgradeRejection {
    fn into_response(self) -> Response {
        UpgradeRejection::into_response(self).into_response()
    }
}
