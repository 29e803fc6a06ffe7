//! Message bodies for the fan-out scenario: `x` padding (compresses absurdly well) or
//! JSON-like chat traffic whose compression ratio is like real traffic's.

use std::fmt::Write as _;

use serde::Serialize;

/// What fills a message after its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Payload {
    /// `x` repeated: the cheapest to build, and compresses about 100×.
    #[default]
    Padded,
    /// Chat events as JSON (ids, names, rooms, sentences of varying words, timestamps), cut to
    /// the size: compresses 3–6× with DEFLATE like real chat traffic.
    Json,
}

impl Payload {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Padded => "padded",
            Self::Json => "json",
        }
    }

    /// A message of `size` bytes (at least `head`): `head`, then the body. `seed` varies the
    /// JSON body from message to message.
    pub fn message(self, head: &str, seed: u64, size: usize) -> String {
        match self {
            Self::Padded => crate::common::padded(head, size),
            Self::Json => {
                let mut s = String::with_capacity(size.max(head.len()) + 512);
                s.push_str(head);
                json_events(&mut s, seed, size);
                let size = size.max(head.len());
                // Cut at a character boundary, then pad with spaces to the exact size.
                let mut cut = size;
                while !s.is_char_boundary(cut) {
                    cut -= 1;
                }
                s.truncate(cut);
                while s.len() < size {
                    s.push(' ');
                }
                s
            }
        }
    }
}

/// The splitmix64 step: a well-mixed 64-bit value from `x` (also a cheap random generator).
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = splitmix64(self.0);
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const FIRST: &[&str] = &[
    "Alice", "Bob", "Chen", "Dmitri", "Emma", "Fatima", "Gabriel", "Hana", "Igor", "Julia",
    "Kwame", "Lena", "Mateo", "Nadia", "Oscar", "Priya", "Quentin", "Rosa", "Sven", "Tariq", "Uma",
    "Victor", "Wen", "Ximena", "Yusuf", "Zoe", "Ana", "Björn", "Carmen", "Diego",
];

const LAST: &[&str] = &[
    "Johnson",
    "Smith",
    "Wei",
    "Ivanov",
    "Müller",
    "Haddad",
    "Silva",
    "Tanaka",
    "Petrov",
    "Rossi",
    "Mensah",
    "Novak",
    "García",
    "Khan",
    "Larsen",
    "Patel",
    "Dubois",
    "Moreno",
    "Andersson",
    "Aziz",
    "Kim",
    "Nguyen",
    "Okafor",
    "Schmidt",
    "Yilmaz",
    "Costa",
];

const ROOMS: &[&str] = &[
    "general",
    "random",
    "engineering",
    "design",
    "support",
    "release-planning",
    "ops",
    "marketing",
    "announcements",
    "help-desk",
    "frontend",
    "backend",
];

const WORDS: &[&str] = &[
    "the",
    "a",
    "to",
    "and",
    "of",
    "in",
    "is",
    "it",
    "for",
    "on",
    "that",
    "this",
    "with",
    "we",
    "you",
    "be",
    "are",
    "have",
    "not",
    "can",
    "just",
    "will",
    "so",
    "but",
    "if",
    "do",
    "about",
    "what",
    "when",
    "there",
    "some",
    "all",
    "our",
    "more",
    "now",
    "out",
    "up",
    "one",
    "time",
    "think",
    "know",
    "see",
    "get",
    "make",
    "need",
    "want",
    "look",
    "should",
    "would",
    "could",
    "deploy",
    "build",
    "release",
    "server",
    "client",
    "bug",
    "fix",
    "test",
    "branch",
    "merge",
    "review",
    "ticket",
    "meeting",
    "tomorrow",
    "today",
    "yesterday",
    "morning",
    "afternoon",
    "lunch",
    "coffee",
    "thanks",
    "sorry",
    "great",
    "nice",
    "cool",
    "done",
    "ready",
    "blocked",
    "waiting",
    "latency",
    "memory",
    "cache",
    "database",
    "query",
    "index",
    "migration",
    "rollback",
    "staging",
    "production",
    "dashboard",
    "alert",
    "incident",
    "customer",
    "feedback",
    "design",
    "mockup",
    "draft",
    "document",
    "spec",
    "roadmap",
    "sprint",
    "demo",
    "slides",
    "call",
    "link",
    "screenshot",
    "issue",
    "pull",
    "request",
    "comment",
    "approve",
    "works",
    "broken",
    "weird",
    "faster",
    "slower",
    "tried",
    "again",
    "maybe",
    "probably",
    "definitely",
    "honestly",
    "actually",
    "really",
    "pretty",
    "still",
    "already",
    "yet",
    "soon",
    "later",
    "week",
    "month",
    "quarter",
    "numbers",
    "chart",
    "team",
    "everyone",
    "anyone",
    "someone",
    "question",
    "answer",
    "idea",
    "plan",
    "problem",
    "solution",
];

const REACTIONS: &[&str] = &[
    "+1", "heart", "laughing", "eyes", "rocket", "tada", "thinking",
];

/// Appends chat events as JSON (`{"events":[{…},{…},…`) until `out` holds at least `size`
/// bytes; the caller cuts it to size.
fn json_events(out: &mut String, seed: u64, size: usize) {
    let mut rng = Rng(splitmix64(seed ^ 0x6a73_6f6e));
    let mut ts = 1_764_000_000_000 + (seed % 10_000_000) * 997;
    let mut id = 40_000_000 + (seed % 1_000_000) * 64;
    out.push_str(r#"{"events":["#);
    let mut first = true;
    while out.len() < size {
        if !first {
            out.push(',');
        }
        first = false;
        id += 1 + rng.below(3) as u64;
        ts += rng.below(4000) as u64;
        chat_event(out, &mut rng, id, ts);
    }
}

/// One chat event from one of 40 regular users (their profiles repeat, as in real traffic).
fn chat_event(out: &mut String, rng: &mut Rng, id: u64, ts: u64) {
    let u = rng.below(40);
    let user = 100_000 + (u * 7919) % 90_000;
    let first = FIRST[u % FIRST.len()];
    let last = LAST[(u * 7) % LAST.len()];
    let _ = write!(
        out,
        r#"{{"type":"message","id":"{id}","room":"{}","ts":{ts},"user":{{"id":{user},"name":"{first} {last}","avatar":"https://cdn.example.com/avatars/{user}.png","bot":false}},"text":""#,
        ROOMS[rng.below(ROOMS.len()) / 2 + rng.below(2)],
    );
    let text_at = out.len();
    let words = 3 + rng.below(20);
    for w in 0..words {
        if w > 0 {
            out.push(' ');
        }
        // Common words far more often than rare ones, as in speech.
        let n = WORDS.len();
        out.push_str(WORDS[rng.below(n) * rng.below(n) / n]);
        if rng.below(10) == 0 {
            out.push_str(if rng.below(2) == 0 { "," } else { "?" });
        }
    }
    // The text again as rich-text blocks, as chat services send it.
    let text = out[text_at..].to_owned();
    let _ = write!(
        out,
        r#"","blocks":[{{"type":"rich_text","elements":[{{"type":"text","text":"{text}"}}]}}],"edited":{}"#,
        rng.below(8) == 0
    );
    if rng.below(3) == 0 {
        let _ = write!(
            out,
            r#","reactions":[{{"emoji":"{}","count":{}}}]"#,
            REACTIONS[rng.below(REACTIONS.len())],
            1 + rng.below(9)
        );
    } else {
        out.push_str(r#","reactions":[]"#);
    }
    if rng.below(4) == 0 {
        let _ = write!(out, r#","reply_to":"{}""#, id - 1 - rng.below(20) as u64);
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    fn deflated_len(data: &[u8]) -> usize {
        let mut c = Compress::new(Compression::new(1), false);
        let mut out = Vec::with_capacity(data.len() + 64);
        c.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
        out.len()
    }

    #[test]
    fn sizes_are_exact_and_bodies_vary() {
        for size in [1, 22, 64, 300, 4096, 20_000] {
            let m = Payload::Json.message("0:17:123456789:", 17, size);
            assert_eq!(m.len(), size.max(15), "{size}");
            assert!(m.starts_with("0:17:123456789:"));
            assert_eq!(Payload::Padded.message("ab", 1, size).len(), size.max(2));
        }
        let a = Payload::Json.message("0:1:5:", 1, 4096);
        let b = Payload::Json.message("0:2:5:", 2, 4096);
        assert_ne!(a[6..], b[6..]);
        assert!(
            a[6..].starts_with(r#"{"events":[{"type":"message","id":"4"#),
            "{a}"
        );
    }

    #[test]
    fn json_compresses_like_real_traffic() {
        for seed in 0..20 {
            let m = Payload::Json.message(&format!("0:{seed}:1764000000000000:"), seed, 4096);
            let ratio = m.len() as f64 / deflated_len(m.as_bytes()) as f64;
            assert!(
                (3.0..=6.0).contains(&ratio),
                "seed {seed}: ratio {ratio:.2}"
            );
        }
        let padded = Payload::Padded.message("0:1:1764000000000000:", 1, 4096);
        assert!(padded.len() > 50 * deflated_len(padded.as_bytes()));
    }
}
