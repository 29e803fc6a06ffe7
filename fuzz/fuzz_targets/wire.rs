//! The cluster's wire decoders on any bytes: they never panic, and what decodes encodes back to
//! the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use melody::cluster::{Frame, NodePresence};

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = Frame::decode(data) {
        assert_eq!(Frame::decode(&frame.encode()).as_ref(), Ok(&frame));
    }
    if let Ok(presence) = NodePresence::decode(data) {
        assert_eq!(NodePresence::decode(&presence.encode()).as_ref(), Ok(&presence));
    }
});
