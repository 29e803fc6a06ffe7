//! [`TopicResolver`]: how a request names the topic its SSE stream (or WebSocket) follows.

use std::{fmt, sync::Arc};

use http::request::Parts;

/// How a request names its topic: a header, a query parameter, a path segment, or your own
/// function. The request's `Last-Event-ID` header is passed to custom resolvers.
///
/// ```
/// use melody::sse::TopicResolver;
///
/// let by_header = TopicResolver::header("x-device-id");
/// let by_query = TopicResolver::query("topic");
/// let by_path = TopicResolver::path_segment(1); // "/devices/42/events" -> "42"
/// let custom = TopicResolver::custom(|req, last_event_id| {
///     let user = req.headers.get("x-user")?.to_str().ok()?;
///     let _resume_from = last_event_id;
///     Some(format!("user:{user}"))
/// });
/// ```
#[derive(Clone)]
pub struct TopicResolver(Arc<ResolveFn>);

type ResolveFn = dyn Fn(&Parts, Option<&str>) -> Option<String> + Send + Sync;

impl TopicResolver {
    /// The value of a request header.
    #[must_use]
    pub fn header(name: &'static str) -> Self {
        Self::custom(move |req, _| {
            let value = req.headers.get(name)?.to_str().ok()?.trim();
            (!value.is_empty()).then(|| value.to_owned())
        })
    }

    /// The value of a query parameter (percent-decoding `%XX` and `+`).
    #[must_use]
    pub fn query(name: &'static str) -> Self {
        Self::custom(move |req, _| {
            let query = req.uri.query()?;
            query.split('&').find_map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (key == name && !value.is_empty()).then(|| percent_decode(value))?
            })
        })
    }

    /// The path segment at `index`, counting from 0 after the leading `/`.
    #[must_use]
    pub fn path_segment(index: usize) -> Self {
        Self::custom(move |req, _| {
            let segment = req
                .uri
                .path()
                .trim_start_matches('/')
                .split('/')
                .nth(index)?;
            (!segment.is_empty()).then(|| percent_decode(segment))?
        })
    }

    /// Your own function of the request head and its `Last-Event-ID`.
    #[must_use]
    pub fn custom(
        resolve: impl Fn(&Parts, Option<&str>) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        Self(Arc::new(resolve))
    }

    /// The topic for this request, if it names one.
    #[must_use]
    pub fn resolve(&self, req: &Parts) -> Option<String> {
        let last_event_id = req
            .headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok());
        (self.0)(req, last_event_id)
    }
}

impl fmt::Debug for TopicResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TopicResolver(..)")
    }
}

fn percent_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let [first, tail @ ..] = rest {
        match first {
            b'%' => {
                let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
                bytes.push(u8::from_str_radix(hex, 16).ok()?);
                rest = &tail[2..];
            }
            b'+' => {
                bytes.push(b' ');
                rest = tail;
            }
            other => {
                bytes.push(*other);
                rest = tail;
            }
        }
    }
    String::from_utf8(bytes).ok()
}
