//! Which topics are live, and how: patterns and what each turns on.

use std::{fmt, sync::Arc};

use serde_json::Value;

use super::{history::History, wire::Member};
use crate::Session;

/// A topic name, or a prefix ending in `*` (`room:*`; `*` alone is every topic).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Pattern {
    Exact(String),
    Prefix(String),
}

impl Pattern {
    pub(crate) fn parse(pattern: &str) -> Self {
        match pattern.strip_suffix('*') {
            Some(prefix) => Self::Prefix(prefix.to_owned()),
            None => Self::Exact(pattern.to_owned()),
        }
    }

    pub(crate) fn matches(&self, topic: &str) -> bool {
        match self {
            Self::Exact(name) => name == topic,
            Self::Prefix(prefix) => topic.starts_with(prefix.as_str()),
        }
    }
}

/// What a pattern turns on.
#[derive(Clone, Debug)]
pub(crate) struct Rule {
    pub(crate) pattern: Pattern,
    pub(crate) presence: bool,
    pub(crate) history: Option<History>,
}

/// What a topic gets, from every rule that matches it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Features {
    /// Some rule names it: clients may subscribe.
    pub(crate) open: bool,
    pub(crate) presence: bool,
    /// The first matching rule's history.
    pub(crate) history: Option<History>,
}

impl Features {
    /// Whether the topic needs state of its own (members or a stream).
    pub(crate) fn keeps_state(&self) -> bool {
        self.presence || self.history.is_some()
    }
}

pub(crate) type InfoFn = Arc<dyn Fn(&Session) -> Value + Send + Sync>;
pub(crate) type AuthorizeFn = Arc<dyn Fn(&Session, &str) -> bool + Send + Sync>;
pub(crate) type MemberFn = Arc<dyn Fn(&super::LiveHub, &str, &Member) + Send + Sync>;
pub(crate) type AuthorizeSseFn = Arc<dyn Fn(&http::request::Parts, &str) -> bool + Send + Sync>;

/// Everything `Live` was configured with.
#[derive(Clone, Default)]
pub(crate) struct Settings {
    pub(crate) rules: Vec<Rule>,
    pub(crate) info: Option<InfoFn>,
    pub(crate) authorize: Option<AuthorizeFn>,
    pub(crate) authorize_sse: Option<AuthorizeSseFn>,
    pub(crate) on_join: Option<MemberFn>,
    pub(crate) on_leave: Option<MemberFn>,
    pub(crate) max_recover: usize,
}

impl Settings {
    pub(crate) fn features(&self, topic: &str) -> Features {
        let mut features = Features::default();
        for rule in self.rules.iter().filter(|rule| rule.pattern.matches(topic)) {
            features.open = true;
            features.presence |= rule.presence;
            if features.history.is_none() {
                features.history = rule.history;
            }
        }
        features
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("rules", &self.rules)
            .field("info", &self.info.is_some())
            .field("authorize", &self.authorize.is_some())
            .field("authorize_sse", &self.authorize_sse.is_some())
            .field("on_join", &self.on_join.is_some())
            .field("on_leave", &self.on_leave.is_some())
            .field("max_recover", &self.max_recover)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_names_and_prefixes() {
        assert!(Pattern::parse("room:*").matches("room:lobby"));
        assert!(Pattern::parse("room:*").matches("room:"));
        assert!(!Pattern::parse("room:*").matches("rooms"));
        assert!(Pattern::parse("*").matches("anything"));
        assert!(Pattern::parse("news").matches("news"));
        assert!(!Pattern::parse("news").matches("news:1"));
    }

    #[test]
    fn features_add_up_and_the_first_history_wins() {
        let settings = Settings {
            rules: vec![
                Rule {
                    pattern: Pattern::parse("room:*"),
                    presence: true,
                    history: None,
                },
                Rule {
                    pattern: Pattern::parse("room:vip"),
                    presence: false,
                    history: Some(History::new().size(7)),
                },
                Rule {
                    pattern: Pattern::parse("*"),
                    presence: false,
                    history: Some(History::new().size(9)),
                },
            ],
            ..Settings::default()
        };
        let vip = settings.features("room:vip");
        assert!(vip.open && vip.presence);
        assert_eq!(vip.history.unwrap().size, 7);
        assert_eq!(settings.features("other").history.unwrap().size, 9);
        assert!(!settings.features("other").presence);
        assert_eq!(Settings::default().features("x"), Features::default());
    }
}
