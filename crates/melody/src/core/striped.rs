//! Traffic counters spread over cache lines: every write of every session adds to them, and on
//! a multi-threaded runtime one shared atomic would bounce between the cores' caches on each
//! write. Each thread adds to its own stripe (one cache line holding all four counters); a
//! read sums the stripes.

use std::{
    cell::Cell,
    sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
};

/// Stripes: more than the cores of most servers' runtimes; threads beyond share.
const STRIPES: usize = 16;

/// What is counted, by position in a stripe.
#[derive(Clone, Copy)]
pub(crate) enum Traffic {
    MessagesIn = 0,
    BytesIn = 1,
    MessagesOut = 2,
    BytesOut = 3,
}

/// One thread's counters, alone on its cache line (128 bytes: the line pair some CPUs prefetch
/// together).
#[repr(align(128))]
#[derive(Default)]
struct Stripe([AtomicU64; 4]);

/// The four traffic counters of a hub, striped.
pub(crate) struct StripedTraffic {
    stripes: Box<[Stripe; STRIPES]>,
}

impl StripedTraffic {
    pub(crate) fn new() -> Self {
        Self {
            stripes: Box::default(),
        }
    }

    /// Adds to two counters of this thread's stripe (a message and its bytes).
    pub(crate) fn add(&self, count: (Traffic, u64), bytes: (Traffic, u64)) {
        let stripe = &self.stripes[stripe_of_this_thread()].0;
        stripe[count.0 as usize].fetch_add(count.1, Relaxed);
        stripe[bytes.0 as usize].fetch_add(bytes.1, Relaxed);
    }

    /// The sum over the stripes (each read on its own: not atomic across stripes).
    pub(crate) fn get(&self, what: Traffic) -> u64 {
        self.stripes
            .iter()
            .map(|stripe| stripe.0[what as usize].load(Relaxed))
            .fold(0, u64::wrapping_add)
    }
}

/// This thread's stripe: handed out round-robin at its first count.
fn stripe_of_this_thread() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: Cell<Option<usize>> = const { Cell::new(None) };
    }
    STRIPE.with(|stripe| {
        stripe.get().unwrap_or_else(|| {
            let index = NEXT.fetch_add(1, Relaxed) % STRIPES;
            stripe.set(Some(index));
            index
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_many_threads_add_up() {
        let traffic = std::sync::Arc::new(StripedTraffic::new());
        let threads: Vec<_> = (0..20)
            .map(|_| {
                let traffic = traffic.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        traffic.add((Traffic::MessagesOut, 1), (Traffic::BytesOut, 10));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(traffic.get(Traffic::MessagesOut), 20_000);
        assert_eq!(traffic.get(Traffic::BytesOut), 200_000);
        assert_eq!(traffic.get(Traffic::MessagesIn), 0);
        assert_eq!(std::mem::align_of::<Stripe>(), 128);
    }
}
