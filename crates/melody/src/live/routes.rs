//! The protocol's requests on the router: `subscribe`, `unsubscribe`, `presence`, `ping`.

use std::sync::Arc;

use super::{
    history::Replay,
    state::{LiveState, SubscribeError, Subscription},
    wire::{MAX_TOPIC_LEN, Publication, Subscribe, Subscribed, TopicOnly},
};
use crate::{
    JoinError, Session,
    router::{BoxError, Envelope, Reject, Router},
};

/// Adds the protocol's routes to `router` (replacing routes of the same types).
pub(crate) fn add(router: Router, state: &Arc<LiveState>) -> Router {
    let (subscribing, leaving, asking) = (state.clone(), state.clone(), state.clone());
    router
        .on("subscribe", move |session, envelope| {
            let state = subscribing.clone();
            async move { subscribe(&state, &session, &envelope).await }
        })
        .on_request("unsubscribe", move |session, request: TopicOnly| {
            let state = leaving.clone();
            async move {
                let left = state.unsubscribe(&session, &request.topic);
                Ok(serde_json::json!({ "topic": request.topic, "left": left }))
            }
        })
        .on_request("presence", move |session, request: TopicOnly| {
            let state = asking.clone();
            async move {
                let features = state.settings.features(&request.topic);
                if !features.presence || !session.is_in(&request.topic) {
                    return Err(forbidden());
                }
                let members = state.cluster_members(&request.topic);
                Ok(serde_json::json!({ "topic": request.topic, "members": members }))
            }
        })
        // A client's heartbeat: browsers cannot see WebSocket pings, so a client proves the
        // connection alive by asking this and getting the reply.
        .on_request("ping", |_, _: serde::de::IgnoredAny| async { Ok(()) })
}

fn forbidden() -> BoxError {
    Reject::new("forbidden").into()
}

/// `subscribe`: checks, then joins and answers under the topic's lock (state.rs says why).
async fn subscribe(
    state: &LiveState,
    session: &Session,
    envelope: &Envelope,
) -> Result<(), BoxError> {
    let request: Subscribe = match envelope.data_as() {
        Ok(request) => request,
        Err(error) => {
            return Err(Reject::new("malformed envelope")
                .message(error.to_string())
                .into());
        }
    };
    let topic = request.topic.as_str();
    if topic.len() > MAX_TOPIC_LEN {
        return Err(Reject::new("malformed envelope")
            .message(format!("a topic is at most {MAX_TOPIC_LEN} bytes"))
            .into());
    }
    let features = state.settings.features(topic);
    let allowed = features.open
        && state
            .settings
            .authorize
            .as_ref()
            .is_none_or(|authorize| authorize(session, topic));
    if !allowed {
        return Err(forbidden());
    }
    let replay = match (request.since, request.history) {
        (Some(since), _) => Replay::Since(since),
        (None, Some(n)) => Replay::Latest(n),
        (None, None) => Replay::Nothing,
    };
    let answer = |subscription: &Subscription| {
        let reply = Subscribed {
            topic,
            position: subscription.position.clone(),
            recovered: subscription.recovery.recovered,
            publications: subscription
                .recovery
                .publications
                .iter()
                .map(Publication::of)
                .collect(),
            members: subscription.members.clone(),
        };
        match envelope.reply(session, reply) {
            Ok(()) | Err(crate::router::ReplyError::NotARequest) => Ok(()),
            Err(error) => Err(error.into()),
        }
    };
    let outcome = match (&state.store, features.history) {
        (Some(_), Some(history)) => {
            state
                .subscribe_stored(session, topic, features, history, &replay, answer)
                .await
        }
        _ => state.subscribe(session, topic, features, &replay, answer),
    };
    match outcome {
        Ok(()) => Ok(()),
        Err(SubscribeError::Join(JoinError::TooManyTopics { max })) => {
            Err(Reject::new("too many topics")
                .message(format!("a session may be in at most {max} topics"))
                .into())
        }
        // The session is closing: nobody is left to answer.
        Err(SubscribeError::Join(_)) => Ok(()),
        Err(SubscribeError::Reply(error)) => Err(error),
    }
}
