//! [`FanoutReport`]: what a fan-out run measured.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::common::{CpuUsage, Latency};

/// The result of a fan-out run.
#[derive(Debug, Clone, Serialize)]
pub struct FanoutReport {
    /// Always `"fanout"`.
    pub scenario: &'static str,
    /// Server URL.
    pub url: String,
    /// Subscribers asked for.
    pub subscribers_requested: usize,
    /// Subscribers connected.
    pub subscribers: usize,
    /// Publishers connected.
    pub publishers: usize,
    /// Failed connection attempts by kind.
    pub connect_errors: BTreeMap<String, u64>,
    /// Seconds to connect everyone.
    pub connect_seconds: f64,
    /// Seconds until every subscriber had seen a warm-up.
    pub warmup_seconds: f64,
    /// Whether every subscriber saw a warm-up within the timeout.
    pub warmup_complete: bool,
    /// Message size in bytes.
    pub size: usize,
    /// What fills the messages: `"padded"` or `"json"`.
    pub payload: &'static str,
    /// The subscribers' client: `"tokio-websockets"` or `"raw"` (the generator's own, see
    /// [`crate::client`]).
    pub client: &'static str,
    /// Whether subscribers offered permessage-deflate (the raw client).
    pub deflate: bool,
    /// Subscribers whose handshake agreed to permessage-deflate.
    pub compressed_subscribers: usize,
    /// Offered total rate (messages/s), `None` when unlimited.
    pub rate_offered: Option<f64>,
    /// Window in unlimited mode.
    pub window: u64,
    /// Messages asked for.
    pub messages_planned: u64,
    /// Messages actually sent.
    pub messages_sent: u64,
    /// Times a publisher gave up waiting for the window (a subscriber stalled for 5 s).
    pub window_stalls: u64,
    /// Seconds from the first to the last send.
    pub publish_seconds: f64,
    /// Messages sent per second.
    pub send_rate: f64,
    /// `messages_sent × subscribers`.
    pub expected_deliveries: u64,
    /// New (first-time, in-order) deliveries.
    pub deliveries: u64,
    /// `expected_deliveries − deliveries`.
    pub lost: u64,
    /// Deliveries of a sequence number at or below one already received.
    pub duplicated: u64,
    /// Subscribers whose connection ended before the run did.
    pub disconnected_subscribers: usize,
    /// Whether every subscriber saw every end marker within the timeout.
    pub drain_complete: bool,
    /// Seconds from the first send to the last delivery.
    pub delivery_seconds: f64,
    /// `deliveries / delivery_seconds`.
    pub deliveries_per_sec: f64,
    /// Deliveries that arrived compressed (RSV1).
    pub compressed_deliveries: u64,
    /// Payload bytes of the deliveries as received (compressed size when compressed; frame
    /// headers not counted).
    pub wire_bytes: u64,
    /// Payload bytes of the deliveries as sent by the publisher (inflated size).
    pub message_bytes: u64,
    /// `wire_bytes / deliveries`.
    pub wire_bytes_per_delivery: f64,
    /// `message_bytes / wire_bytes` with `--deflate`, `None` without.
    pub compression_ratio: Option<f64>,
    /// Compressed messages the subscribers inflated (deliveries and markers).
    pub inflations: u64,
    /// Compressed messages taken from the generator's inflate cache instead of inflated.
    pub inflate_cache_hits: u64,
    /// End-to-end latency (send to receive).
    pub latency: Latency,
    /// CPU use from the first send to the last end marker seen.
    pub cpu: CpuUsage,
    /// Server CPU microseconds per delivery (`cpu.server_cpu_s / deliveries`).
    pub server_cpu_us_per_delivery: Option<f64>,
    /// Generator CPU microseconds per delivery.
    pub generator_cpu_us_per_delivery: Option<f64>,
}

impl FanoutReport {
    /// A human-readable summary.
    pub fn summary(&self) -> String {
        let rate = match self.rate_offered {
            Some(r) => format!("{r:.0} msg/s offered"),
            None => format!("unlimited, window {}", self.window),
        };
        let per = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.3} µs"));
        let deflate = if self.deflate {
            format!(
                ", permessage-deflate offered ({} of {} agreed)",
                self.compressed_subscribers, self.subscribers
            )
        } else {
            format!(", {} client", self.client)
        };
        let ratio = self
            .compression_ratio
            .map_or_else(String::new, |r| format!(", ratio {r:.2}×"));
        let inflate = if self.deflate {
            format!(
                "; {} compressed, {} inflated, {} from the inflate cache",
                self.compressed_deliveries, self.inflations, self.inflate_cache_hits
            )
        } else {
            String::new()
        };
        format!(
            "fanout {url}: {subs} subscribers ({errs} connect errors, {ct:.1}s), {pubs} publishers, {size} B {payload}{deflate}, {rate}\n  \
             sent {sent} msgs in {ps:.2}s ({sr:.0} msg/s); deliveries {del} of {exp} in {ds:.2}s = {dps:.0}/s\n  \
             lost {lost}, duplicated {dup}, disconnected {disc}, window stalls {stalls}{drain}\n  \
             wire {wire:.1} B per delivery (message {msg:.1} B){ratio}{inflate}\n  \
             latency {lat}\n  {cpu}; per delivery: server {sper}, generator {gper}",
            url = self.url,
            subs = self.subscribers,
            errs = self.connect_errors.values().sum::<u64>(),
            ct = self.connect_seconds,
            pubs = self.publishers,
            size = self.size,
            payload = self.payload,
            sent = self.messages_sent,
            ps = self.publish_seconds,
            sr = self.send_rate,
            del = self.deliveries,
            exp = self.expected_deliveries,
            ds = self.delivery_seconds,
            dps = self.deliveries_per_sec,
            lost = self.lost,
            dup = self.duplicated,
            disc = self.disconnected_subscribers,
            stalls = self.window_stalls,
            drain = if self.drain_complete {
                ""
            } else {
                " (drain timed out)"
            },
            wire = self.wire_bytes_per_delivery,
            msg = per_delivery(self.message_bytes, self.deliveries),
            lat = self.latency.line(),
            cpu = self.cpu.line(),
            sper = per(self.server_cpu_us_per_delivery),
            gper = per(self.generator_cpu_us_per_delivery),
        )
    }
}

/// `total / deliveries`, 0 without deliveries.
pub(super) fn per_delivery(total: u64, deliveries: u64) -> f64 {
    if deliveries > 0 {
        total as f64 / deliveries as f64
    } else {
        0.0
    }
}
