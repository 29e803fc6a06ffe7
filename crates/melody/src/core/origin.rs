//! The origin check: which browser pages may open a session.
//!
//! Browsers send an `Origin` header with every WebSocket handshake; other clients usually do not.
//! A request without `Origin` is not a browser's and passes every check but a custom predicate,
//! exactly as Go's gorilla upgrader does.

use std::{fmt, sync::Arc};

use http::{header, request::Parts};

/// Which origins may open a session. Part of [`Config`](crate::Config).
///
/// ```
/// use melody::{CheckOrigin, Config};
///
/// // Same origin only (the default): a page from another site gets 403.
/// let strict = Config::default();
/// // Any origin (Go melody FAQ's `CheckOrigin = func(r) bool { return true }`).
/// let open = Config::default().check_origin(CheckOrigin::Any);
/// // An allow-list; `*.` matches one or more subdomain labels, a lone `*` matches everything.
/// let listed = Config::default().check_origin(CheckOrigin::allow_list([
///     "https://*.example.com",
///     "http://localhost:3000",
/// ]));
/// // Anything else: a predicate over the request's head.
/// let custom = Config::default().check_origin(CheckOrigin::custom(|req| {
///     req.headers.get("origin").is_some_and(|o| o.as_bytes().ends_with(b".internal"))
/// }));
/// ```
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum CheckOrigin {
    /// The `Origin` header's host (and port) must equal the request's `Host`. The default.
    #[default]
    SameOrigin,
    /// Every origin is accepted.
    Any,
    /// The origin must match one of these patterns.
    AllowList(Arc<[OriginPattern]>),
    /// The predicate decides; it sees the request's method, URI, headers and extensions.
    Custom(Arc<dyn Fn(&Parts) -> bool + Send + Sync>),
}

impl CheckOrigin {
    /// An allow-list of origin patterns such as `https://app.example.com`,
    /// `https://*.example.com`, `http://localhost:*` or `*`.
    #[must_use]
    pub fn allow_list<I, S>(patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::AllowList(
            patterns
                .into_iter()
                .map(|p| OriginPattern::new(p.as_ref()))
                .collect(),
        )
    }

    /// A custom predicate over the request head.
    #[must_use]
    pub fn custom(predicate: impl Fn(&Parts) -> bool + Send + Sync + 'static) -> Self {
        Self::Custom(Arc::new(predicate))
    }

    /// Whether the request passes the check.
    pub(crate) fn allows(&self, req: &Parts) -> bool {
        if let Self::Custom(predicate) = self {
            return predicate(req);
        }
        let Some(origin) = req.headers.get(header::ORIGIN) else {
            return true;
        };
        let Some(origin) = origin.to_str().ok().and_then(Origin::parse) else {
            return false;
        };
        match self {
            Self::Any => true,
            Self::SameOrigin => req
                .headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .or_else(|| req.uri.authority().map(|a| a.as_str()))
                .is_some_and(|host| origin.authority().eq_ignore_ascii_case(host)),
            Self::AllowList(patterns) => patterns.iter().any(|p| p.matches(&origin)),
            Self::Custom(_) => unreachable!("handled above"),
        }
    }
}

impl fmt::Debug for CheckOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SameOrigin => f.write_str("SameOrigin"),
            Self::Any => f.write_str("Any"),
            Self::AllowList(patterns) => f.debug_tuple("AllowList").field(patterns).finish(),
            Self::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// One entry of an origin allow-list: `scheme://host[:port]`, where the scheme may be `*`, the
/// host may start with `*.` (one or more labels) or be `*`, and the port may be `*` (any port,
/// or none). The pattern
/// `*` alone matches any origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginPattern {
    scheme: String,
    host: String,
    port: Option<String>,
    any: bool,
}

impl OriginPattern {
    /// Parses a pattern; matching is case-insensitive. A pattern that cannot match anything
    /// (no `://`) matches nothing.
    #[must_use]
    pub fn new(pattern: &str) -> Self {
        let pattern = pattern.trim().to_ascii_lowercase();
        if pattern == "*" {
            return Self {
                scheme: String::new(),
                host: String::new(),
                port: None,
                any: true,
            };
        }
        let (scheme, rest) = pattern.split_once("://").unwrap_or(("", ""));
        let rest = rest.trim_end_matches('/');
        let (host, port) = split_host_port(rest);
        Self {
            scheme: scheme.to_owned(),
            host: host.to_owned(),
            port: port.map(str::to_owned),
            any: false,
        }
    }

    fn matches(&self, origin: &Origin<'_>) -> bool {
        if self.any {
            return true;
        }
        if self.host.is_empty() {
            return false;
        }
        let scheme_ok = self.scheme == "*" || self.scheme.eq_ignore_ascii_case(origin.scheme);
        let port_ok = match (&self.port, origin.port) {
            (Some(p), _) if p == "*" => true,
            (Some(p), Some(o)) => p == o,
            (None, None) => true,
            _ => false,
        };
        scheme_ok && port_ok && host_matches(&self.host, origin.host)
    }
}

fn host_matches(pattern: &str, host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    if pattern == "*" {
        return true;
    }
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .strip_suffix(suffix)
            .and_then(|head| head.strip_suffix('.'))
            .is_some_and(|labels| !labels.is_empty() && labels.split('.').all(is_label)),
        None => host == pattern,
    }
}

fn is_label(label: &str) -> bool {
    !label.is_empty()
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn split_host_port(authority: &str) -> (&str, Option<&str>) {
    // IPv6 literals keep their brackets: `[::1]:8080`.
    let port_sep = match authority.rfind(']') {
        Some(end) => authority[end..].find(':').map(|i| end + i),
        None => authority.rfind(':'),
    };
    match port_sep {
        Some(i) => (&authority[..i], Some(&authority[i + 1..])),
        None => (authority, None),
    }
}

/// A parsed `Origin` header: `scheme://host[:port]`.
struct Origin<'a> {
    scheme: &'a str,
    host: &'a str,
    port: Option<&'a str>,
    authority: &'a str,
}

impl<'a> Origin<'a> {
    fn parse(value: &'a str) -> Option<Self> {
        let (scheme, authority) = value.split_once("://")?;
        if scheme.is_empty() || authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
            return None;
        }
        let (host, port) = split_host_port(authority);
        if host.is_empty()
            || port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
        {
            return None;
        }
        Some(Self {
            scheme,
            host,
            port,
            authority,
        })
    }

    fn authority(&self) -> &'a str {
        self.authority
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(origin: Option<&str>, host: &str) -> Parts {
        let mut builder = http::Request::get("/ws").header("host", host);
        if let Some(origin) = origin {
            builder = builder.header("origin", origin);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn same_origin_compares_host_and_port() {
        let check = CheckOrigin::SameOrigin;
        assert!(check.allows(&parts(None, "a.com")));
        assert!(check.allows(&parts(Some("http://a.com"), "a.com")));
        assert!(check.allows(&parts(Some("https://A.com:8443"), "a.com:8443")));
        assert!(!check.allows(&parts(Some("http://a.com:1"), "a.com:2")));
        assert!(!check.allows(&parts(Some("http://evil.com"), "a.com")));
        assert!(!check.allows(&parts(Some("null"), "a.com")));
    }

    #[test]
    fn allow_list_wildcards() {
        let check = CheckOrigin::allow_list(["https://*.example.com", "http://localhost:*"]);
        assert!(check.allows(&parts(Some("https://app.example.com"), "x")));
        assert!(check.allows(&parts(Some("https://a.b.example.com"), "x")));
        assert!(!check.allows(&parts(Some("https://example.com"), "x")));
        assert!(!check.allows(&parts(Some("http://app.example.com"), "x")));
        assert!(!check.allows(&parts(Some("https://evilexample.com"), "x")));
        assert!(!check.allows(&parts(Some("https://app.example.com:444"), "x")));
        assert!(check.allows(&parts(Some("http://localhost:3000"), "x")));
        assert!(check.allows(&parts(Some("http://localhost"), "x")));
        assert!(!check.allows(&parts(Some("http://localhost.evil"), "x")));
    }

    #[test]
    fn star_allows_any_origin() {
        let check = CheckOrigin::allow_list(["*"]);
        assert!(check.allows(&parts(Some("https://whatever.io"), "x")));
    }

    #[test]
    fn custom_predicate_decides_alone() {
        let check = CheckOrigin::custom(|req| req.headers.contains_key("x-ok"));
        assert!(!check.allows(&parts(None, "a.com")));
    }

    #[test]
    fn ipv6_hosts() {
        let check = CheckOrigin::allow_list(["http://[::1]:*"]);
        assert!(check.allows(&parts(Some("http://[::1]:8080"), "x")));
        assert!(CheckOrigin::SameOrigin.allows(&parts(Some("http://[::1]:80"), "[::1]:80")));
    }
}
