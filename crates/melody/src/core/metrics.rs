//! The hub's counters on the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`).
//!
//! Every series is described (help text and unit) and registered at zero when a hub is created,
//! so a Prometheus scrape of a fresh server already lists them all: a dashboard or an alert on
//! `rate(melody_rejections_total[5m])` works before the first refusal.

use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};

use super::stats::Reason;

pub(crate) const SESSIONS: &str = "melody_sessions";
pub(crate) const CONNECTS: &str = "melody_connects_total";
pub(crate) const PARKED: &str = "melody_sessions_parked";
pub(crate) const PARKS: &str = "melody_parks_total";
pub(crate) const MESSAGES_IN: &str = "melody_messages_received_total";
pub(crate) const BYTES_IN: &str = "melody_received_bytes_total";
pub(crate) const MESSAGES_OUT: &str = "melody_messages_sent_total";
pub(crate) const BYTES_OUT: &str = "melody_sent_bytes_total";
pub(crate) const DROPPED: &str = "melody_messages_dropped_total";
pub(crate) const REJECTIONS: &str = "melody_rejections_total";
pub(crate) const COMPRESSIONS: &str = "melody_compressions_total";
pub(crate) const WIRE_BYTES_OUT: &str = "melody_sent_wire_bytes_total";

/// Describes every series and makes each present at zero. Cheap to repeat (one per hub).
pub(crate) fn register() {
    describe_gauge!(SESSIONS, Unit::Count, "WebSocket sessions connected now");
    describe_counter!(CONNECTS, Unit::Count, "WebSocket sessions ever connected");
    describe_gauge!(
        PARKED,
        Unit::Count,
        "sessions parked now (idle, without a task of their own)"
    );
    describe_counter!(PARKS, Unit::Count, "times a session parked");
    describe_counter!(MESSAGES_IN, Unit::Count, "data messages received");
    describe_counter!(BYTES_IN, Unit::Bytes, "payload bytes received");
    describe_counter!(
        MESSAGES_OUT,
        Unit::Count,
        "data messages written and flushed"
    );
    describe_counter!(BYTES_OUT, Unit::Bytes, "payload bytes written and flushed");
    describe_counter!(
        DROPPED,
        Unit::Count,
        "messages dropped because a session's queue was full"
    );
    describe_counter!(
        COMPRESSIONS,
        Unit::Count,
        "payloads run through the compressor (permessage-deflate); a shared-mode broadcast counts once"
    );
    describe_counter!(
        WIRE_BYTES_OUT,
        Unit::Bytes,
        "payload bytes written and flushed as they went on the wire (compressed where they were)"
    );
    describe_counter!(
        REJECTIONS,
        Unit::Count,
        "upgrades refused and sessions closed for what they sent, by reason"
    );
    gauge!(SESSIONS).increment(0.0);
    gauge!(PARKED).increment(0.0);
    for name in [
        CONNECTS,
        PARKS,
        MESSAGES_IN,
        BYTES_IN,
        MESSAGES_OUT,
        BYTES_OUT,
        DROPPED,
        COMPRESSIONS,
        WIRE_BYTES_OUT,
    ] {
        counter!(name).increment(0);
    }
    for reason in Reason::ALL {
        counter!(REJECTIONS, "reason" => reason.label()).increment(0);
    }
}

pub(crate) fn connected() {
    counter!(CONNECTS).increment(1);
    gauge!(SESSIONS).increment(1.0);
}

pub(crate) fn parked() {
    gauge!(PARKED).increment(1.0);
}

pub(crate) fn park_held() {
    counter!(PARKS).increment(1);
}

pub(crate) fn unparked() {
    gauge!(PARKED).decrement(1.0);
}

pub(crate) fn disconnected() {
    gauge!(SESSIONS).decrement(1.0);
}

pub(crate) fn received(bytes: usize) {
    counter!(MESSAGES_IN).increment(1);
    counter!(BYTES_IN).increment(bytes as u64);
}

pub(crate) fn sent(messages: usize, bytes: usize, wire_bytes: usize) {
    counter!(MESSAGES_OUT).increment(messages as u64);
    counter!(BYTES_OUT).increment(bytes as u64);
    counter!(WIRE_BYTES_OUT).increment(wire_bytes as u64);
}

pub(crate) fn compressed() {
    counter!(COMPRESSIONS).increment(1);
}

pub(crate) fn dropped() {
    counter!(DROPPED).increment(1);
}

pub(crate) fn rejected(reason: Reason) {
    counter!(REJECTIONS, "reason" => reason.label()).increment(1);
}
