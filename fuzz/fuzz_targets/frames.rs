//! The frame reader on any bytes, in any chunking: it never panics, and what it reads does not
//! depend on how the bytes were split.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    // The first byte picks a size limit, the next eight the chunk sizes, the rest is the stream.
    let Some((&limit, rest)) = input.split_first() else {
        return;
    };
    let (cuts, data) = rest.split_at(rest.len().min(8));
    let max_message = [0, 1, 125, 126, 512, 65_535, 65_536, 1 << 20][usize::from(limit % 8)];
    melody::fuzzing::frames(max_message, data, cuts);
});
