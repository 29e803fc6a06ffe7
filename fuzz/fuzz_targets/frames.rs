//! The frame reader on any bytes, in any chunking, with and without permessage-deflate: it never
//! panics, and what it reads does not depend on how the bytes were split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use melody::fuzzing::Deflate;

fuzz_target!(|input: &[u8]| {
    // The first byte picks a size limit, the next eight the chunk sizes, the rest is the stream.
    let Some((&limit, rest)) = input.split_first() else {
        return;
    };
    let (cuts, data) = rest.split_at(rest.len().min(8));
    let max_message = [0, 1, 125, 126, 512, 65_535, 65_536, 1 << 20][usize::from(limit % 8)];
    // The top two bits: whether permessage-deflate was agreed, and how.
    let deflate = match limit >> 6 {
        0 | 1 => Deflate::Off,
        2 => Deflate::Alone,
        _ => Deflate::Context,
    };
    melody::fuzzing::frames(max_message, deflate, data, cuts);
});
