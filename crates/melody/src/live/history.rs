//! A topic's history in memory: the last publications, each with its offset in the stream's
//! epoch, bounded by count and age.

use std::{
    collections::VecDeque,
    sync::Arc,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// How much of a topic's past is kept for late and returning subscribers.
///
/// ```
/// use std::time::Duration;
/// use melody::live::History;
///
/// // The last 100 publications of the last 10 minutes.
/// let history = History::new().size(100).ttl(Duration::from_secs(600));
/// # let _ = history;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct History {
    /// Publications kept, at most (the oldest go first). Default 100; at least 1.
    pub size: usize,
    /// How long a publication is kept. Default 5 minutes.
    pub ttl: Duration,
}

impl Default for History {
    fn default() -> Self {
        Self {
            size: 100,
            ttl: Duration::from_secs(300),
        }
    }
}

impl History {
    /// The default: 100 publications, 5 minutes.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`History::size`] (at least 1).
    #[must_use]
    pub fn size(mut self, size: usize) -> Self {
        self.size = size.max(1);
        self
    }

    /// Sets [`History::ttl`].
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }
}

/// A position in a topic's stream: the epoch and the offset of a publication in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPosition {
    /// Names one life of the stream: it changes whenever the history could have been lost
    /// (here: whenever the topic's stream is created anew).
    pub epoch: String,
    /// The offset of the last publication (0 before the first).
    pub offset: u64,
}

/// One kept publication.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) offset: u64,
    pub(crate) at: Instant,
    pub(crate) data: Arc<RawValue>,
}

/// What a subscriber asked to see of the past.
#[derive(Clone, Debug, Default)]
pub(crate) enum Replay {
    /// Nothing: only what comes next.
    #[default]
    Nothing,
    /// The latest `n`.
    Latest(usize),
    /// Everything after this position, if all of it is still here.
    Since(StreamPosition),
}

/// What a subscriber gets of the past.
#[derive(Debug, Default)]
pub(crate) struct Recovery {
    pub(crate) publications: Vec<Entry>,
    /// With `Replay::Since`: whether `publications` is all that was missed.
    pub(crate) recovered: Option<bool>,
}

/// Whether a subscriber at `since` can get everything it missed from a stream at `position`
/// whose oldest kept publication is `oldest_kept` (`position.offset + 1` when none is kept):
/// the same epoch, not ahead of the stream, at most `max` missed, and none of them trimmed.
pub(crate) fn recoverable(
    since: &StreamPosition,
    position: &StreamPosition,
    oldest_kept: u64,
    max: usize,
) -> bool {
    since.epoch == position.epoch
        && since.offset <= position.offset
        && position.offset - since.offset <= max as u64
        && since.offset + 1 >= oldest_kept
}

/// A fresh epoch: 64 random bits from the operating system, in hex. A stream starts with
/// one; a [`HistoryStore`](super::HistoryStore) starting a stream uses one too.
///
/// ```
/// let epoch = melody::live::new_epoch();
/// assert_eq!(epoch.len(), 16);
/// assert_ne!(epoch, melody::live::new_epoch());
/// ```
#[must_use]
pub fn new_epoch() -> String {
    format!("{:016x}", crate::core::random::u64())
}

/// The stream of one topic.
#[derive(Debug)]
pub(crate) struct Stream {
    pub(crate) epoch: String,
    pub(crate) offset: u64,
    entries: VecDeque<Entry>,
    limits: History,
}

impl Stream {
    pub(crate) fn new(limits: History) -> Self {
        Self {
            epoch: new_epoch(),
            offset: 0,
            entries: VecDeque::new(),
            limits,
        }
    }

    pub(crate) fn position(&self) -> StreamPosition {
        StreamPosition {
            epoch: self.epoch.clone(),
            offset: self.offset,
        }
    }

    /// Appends a publication; its offset.
    pub(crate) fn append(&mut self, data: Arc<RawValue>, now: Instant) -> u64 {
        self.offset += 1;
        self.entries.push_back(Entry {
            offset: self.offset,
            at: now,
            data,
        });
        self.trim(now);
        self.offset
    }

    /// Drops what is over the size or older than the ttl.
    pub(crate) fn trim(&mut self, now: Instant) {
        while self.entries.len() > self.limits.size {
            self.entries.pop_front();
        }
        while self
            .entries
            .front()
            .is_some_and(|entry| now.saturating_duration_since(entry.at) > self.limits.ttl)
        {
            self.entries.pop_front();
        }
    }

    /// Whether nothing is kept any more.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// What a subscriber gets of the past, at most `max` publications: with `Since`, all it
    /// missed when that is at most `max` and still kept, else nothing and `recovered: false`.
    pub(crate) fn replay(&mut self, replay: &Replay, max: usize, now: Instant) -> Recovery {
        self.trim(now);
        match replay {
            Replay::Nothing => Recovery::default(),
            Replay::Latest(n) => {
                let n = (*n).min(max).min(self.entries.len());
                Recovery {
                    publications: self
                        .entries
                        .iter()
                        .skip(self.entries.len() - n)
                        .cloned()
                        .collect(),
                    recovered: None,
                }
            }
            Replay::Since(since) => {
                let oldest_kept = self.entries.front().map_or(self.offset + 1, |e| e.offset);
                if !recoverable(since, &self.position(), oldest_kept, max) {
                    return Recovery {
                        publications: Vec::new(),
                        recovered: Some(false),
                    };
                }
                let publications = self
                    .entries
                    .iter()
                    .filter(|entry| entry.offset > since.offset)
                    .cloned()
                    .collect();
                Recovery {
                    publications,
                    recovered: Some(true),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: u64) -> Arc<RawValue> {
        Arc::from(RawValue::from_string(n.to_string()).unwrap())
    }

    fn offsets(recovery: &Recovery) -> Vec<u64> {
        recovery.publications.iter().map(|e| e.offset).collect()
    }

    #[test]
    fn recovers_exactly_what_was_missed() {
        let now = Instant::now();
        let mut stream = Stream::new(History::new().size(5));
        for n in 1..=4 {
            assert_eq!(stream.append(data(n), now), n);
        }
        let epoch = stream.epoch.clone();
        let since = |offset| {
            Replay::Since(StreamPosition {
                epoch: epoch.clone(),
                offset,
            })
        };
        let from_two = since(2);
        let got = stream.replay(&from_two, 100, now);
        assert_eq!((offsets(&got), got.recovered), (vec![3, 4], Some(true)));
        let nothing_missed = since(4);
        let got = stream.replay(&nothing_missed, 100, now);
        assert_eq!((offsets(&got), got.recovered), (vec![], Some(true)));
        // From the very start: everything is still kept.
        let got = stream.replay(&since(0), 100, now);
        assert_eq!(offsets(&got), vec![1, 2, 3, 4]);
        // More missed than the maximum: not recovered.
        let got = stream.replay(&since(0), 3, now);
        assert_eq!((offsets(&got), got.recovered), (vec![], Some(false)));
        // An offset from the future (another epoch in disguise): not recovered.
        let got = stream.replay(&since(9), 100, now);
        assert_eq!(got.recovered, Some(false));
    }

    #[test]
    fn trimming_and_epochs_end_recovery() {
        let now = Instant::now();
        let mut stream = Stream::new(History::new().size(3).ttl(Duration::from_secs(60)));
        for n in 1..=5 {
            stream.append(data(n), now);
        }
        let epoch = stream.epoch.clone();
        let position = |offset| {
            Replay::Since(StreamPosition {
                epoch: epoch.clone(),
                offset,
            })
        };
        // 3, 4, 5 are kept: from 2 on is complete, from 1 on is not.
        assert_eq!(stream.replay(&position(2), 100, now).recovered, Some(true));
        assert_eq!(stream.replay(&position(1), 100, now).recovered, Some(false));
        let other_epoch = Replay::Since(StreamPosition {
            epoch: "elsewhere".into(),
            offset: 4,
        });
        assert_eq!(stream.replay(&other_epoch, 100, now).recovered, Some(false));
        // Expired: nothing is kept, nothing can be recovered except having missed nothing.
        let later = now + Duration::from_secs(61);
        assert_eq!(
            stream.replay(&position(4), 100, later).recovered,
            Some(false)
        );
        assert_eq!(
            stream.replay(&position(5), 100, later).recovered,
            Some(true)
        );
        assert!(stream.is_empty());
        assert_ne!(Stream::new(History::new()).epoch, epoch);
    }

    #[test]
    fn latest_is_bounded() {
        let now = Instant::now();
        let mut stream = Stream::new(History::new().size(10));
        for n in 1..=6 {
            stream.append(data(n), now);
        }
        assert_eq!(
            offsets(&stream.replay(&Replay::Latest(2), 100, now)),
            vec![5, 6]
        );
        assert_eq!(
            offsets(&stream.replay(&Replay::Latest(50), 3, now)),
            vec![4, 5, 6]
        );
        let got = stream.replay(&Replay::Latest(50), 100, now);
        assert_eq!((got.publications.len(), got.recovered), (6, None));
    }
}
