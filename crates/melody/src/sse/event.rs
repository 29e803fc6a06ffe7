//! [`Event`]: one Server-Sent Event, and its `text/event-stream` encoding.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

/// One Server-Sent Event: `data`, and optionally an event name, an id and a retry delay.
///
/// ```
/// use std::time::Duration;
/// use melody::sse::Event;
///
/// let event = Event::new("line one\nline two").event("update").id("7").retry(Duration::from_secs(3));
/// assert_eq!(
///     &event.encode()[..],
///     b"event: update\nid: 7\nretry: 3000\ndata: line one\ndata: line two\n\n"
/// );
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    event: Option<String>,
    id: Option<String>,
    data: String,
    retry: Option<Duration>,
}

impl Event {
    /// An event carrying `data` (which may span several lines).
    #[must_use]
    pub fn new(data: impl Into<String>) -> Self {
        Self {
            data: data.into(),
            ..Self::default()
        }
    }

    /// Sets the event name (`event:`). Line breaks are removed, as the format cannot carry them.
    #[must_use]
    pub fn event(mut self, name: impl Into<String>) -> Self {
        self.event = Some(one_line(name.into()));
        self
    }

    /// Sets the event id (`id:`), which the browser sends back as `Last-Event-ID` when it
    /// reconnects. Line breaks and NUL are removed.
    #[must_use]
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(one_line(id.into()).replace('\0', ""));
        self
    }

    /// Sets how long the browser waits before reconnecting (`retry:`, in milliseconds).
    #[must_use]
    pub fn retry(mut self, delay: Duration) -> Self {
        self.retry = Some(delay);
        self
    }

    /// The data.
    #[must_use]
    pub fn data(&self) -> &str {
        &self.data
    }

    /// The event in the `text/event-stream` wire format.
    #[must_use]
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.data.len() + 32);
        if let Some(event) = &self.event {
            put_field(&mut out, "event", event);
        }
        if let Some(id) = &self.id {
            put_field(&mut out, "id", id);
        }
        if let Some(retry) = self.retry {
            put_field(&mut out, "retry", &retry.as_millis().to_string());
        }
        for line in lines(&self.data) {
            put_field(&mut out, "data", line);
        }
        out.put_u8(b'\n');
        out.freeze()
    }
}

/// The lines of `text` as an event stream parser reads them: a line ends at `\r\n`, `\r` or
/// `\n`. Splitting on `\n` alone would let a bare `\r` in published data start a line of its
/// own, and so inject `id:`, `event:` or `retry:` fields into every subscriber's stream.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let text = rest?;
        match text.find(['\r', '\n']) {
            Some(end) => {
                let skip = if text[end..].starts_with("\r\n") {
                    2
                } else {
                    1
                };
                rest = Some(&text[end + skip..]);
                Some(&text[..end])
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}

fn one_line(text: String) -> String {
    if text.contains(['\r', '\n']) {
        text.replace(['\r', '\n'], "")
    } else {
        text
    }
}

fn put_field(out: &mut BytesMut, name: &str, value: &str) {
    out.put_slice(name.as_bytes());
    out.put_slice(b": ");
    out.put_slice(value.as_bytes());
    out.put_u8(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_lines_end_where_an_event_stream_parser_ends_them() {
        let split = |text| lines(text).collect::<Vec<_>>();
        assert_eq!(split("a"), ["a"]);
        assert_eq!(split(""), [""]);
        assert_eq!(split("a\nb"), ["a", "b"]);
        assert_eq!(split("a\rb"), ["a", "b"]);
        assert_eq!(split("a\r\nb"), ["a", "b"]);
        assert_eq!(split("a\n\rb"), ["a", "", "b"]);
        assert_eq!(split("a\r"), ["a", ""]);
        assert_eq!(
            &Event::new("x\rid: 1\r\nretry: 2").encode()[..],
            b"data: x\ndata: id: 1\ndata: retry: 2\n\n"
        );
    }
}
