//! permessage-deflate (RFC 7692): the negotiation at the upgrade and the DEFLATE transform of
//! message payloads. The frame reader inflates with [`Inflater`]; the session's writer
//! compresses with [`compress_alone`] (one payload for every session, so a broadcast
//! compresses once) or a session's own [`Deflater`].

mod codec;
mod negotiate;

pub(crate) use codec::{Deflater, InflateError, Inflater, compress_alone};
pub(crate) use negotiate::{Agreed, MAX_WINDOW_BITS, MIN_WINDOW_BITS, Policy, negotiate};
