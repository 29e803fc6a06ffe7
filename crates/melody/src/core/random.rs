//! Random numbers from the operating system, for what a client must not guess or a cluster
//! must not repeat: session ids and node ids.

/// 64 random bits from the operating system's generator.
pub(crate) fn u64() -> u64 {
    // The generator only fails where the system has no entropy source at all, which would
    // make every id guessable: better to stop than to hand out predictable ids.
    getrandom::u64().expect("the operating system's random number generator failed")
}
