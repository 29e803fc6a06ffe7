//! A session's two socket addresses, kept small: every session holds them for its whole life.

use std::net::{SocketAddr, SocketAddrV4};

/// The remote and local address of a session: 16 bytes inline when both are IPv4 or unknown
/// (nearly always), boxed otherwise. Two `Option<SocketAddr>` would take 64 bytes of every
/// session (an IPv6 address is 28 bytes).
pub(crate) enum Endpoints {
    V4 {
        remote: Option<SocketAddrV4>,
        local: Option<SocketAddrV4>,
    },
    Other(Box<(Option<SocketAddr>, Option<SocketAddr>)>),
}

impl Endpoints {
    pub(crate) fn new(remote: Option<SocketAddr>, local: Option<SocketAddr>) -> Self {
        /// `None` when the address does not fit the inline form.
        fn v4(addr: Option<SocketAddr>) -> Option<Option<SocketAddrV4>> {
            match addr {
                None => Some(None),
                Some(SocketAddr::V4(addr)) => Some(Some(addr)),
                Some(SocketAddr::V6(_)) => None,
            }
        }
        match (v4(remote), v4(local)) {
            (Some(remote), Some(local)) => Self::V4 { remote, local },
            _ => Self::Other(Box::new((remote, local))),
        }
    }

    pub(crate) fn remote(&self) -> Option<SocketAddr> {
        match self {
            Self::V4 { remote, .. } => remote.map(SocketAddr::V4),
            Self::Other(addrs) => addrs.0,
        }
    }

    pub(crate) fn local(&self) -> Option<SocketAddr> {
        match self {
            Self::V4 { local, .. } => local.map(SocketAddr::V4),
            Self::Other(addrs) => addrs.1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_come_back_as_given() {
        let v4: SocketAddr = "10.1.2.3:4567".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
        let v4_mapped: SocketAddr = "[::ffff:10.1.2.3]:80".parse().unwrap();
        for (remote, local) in [
            (None, None),
            (Some(v4), None),
            (None, Some(v4)),
            (Some(v4), Some(v4)),
            (Some(v6), Some(v4)),
            (Some(v4), Some(v6)),
            (Some(v6), None),
            (Some(v4_mapped), Some(v6)),
        ] {
            let endpoints = Endpoints::new(remote, local);
            assert_eq!((endpoints.remote(), endpoints.local()), (remote, local));
        }
        assert!(matches!(
            Endpoints::new(Some(v4), Some(v4)),
            Endpoints::V4 { .. }
        ));
    }

    #[test]
    fn the_usual_case_is_small() {
        assert!(std::mem::size_of::<Endpoints>() <= 24);
    }
}
