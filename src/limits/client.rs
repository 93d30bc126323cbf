//! Who the client is: its address (through trusted proxies only), grouped into the key every
//! per-client limit counts against.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

pub use crate::config::cidr::{Cidr, canonical};

/// The key a client's limits count against: its IPv4 address, or its IPv6 /64 (one subscriber
/// usually holds a whole /64, so counting single IPv6 addresses would let it rotate for free).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientKey(IpAddr);

impl ClientKey {
    /// The key of a client address.
    pub fn of(ip: IpAddr) -> Self {
        match canonical(ip) {
            IpAddr::V4(v4) => Self(IpAddr::V4(v4)),
            IpAddr::V6(v6) => {
                let net = u128::from(v6) & (u128::MAX << 64);
                Self(IpAddr::V6(Ipv6Addr::from(net)))
            }
        }
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => v4.fmt(f),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// The client's address: the socket peer, unless the peer is a trusted proxy, in which case the
/// right-most `X-Forwarded-For` entry that is not itself a trusted proxy. Entries left of that one
/// were written by the client and prove nothing.
pub fn client_ip(
    peer: Option<SocketAddr>,
    forwarded_for: Option<&str>,
    trusted: &[Cidr],
) -> IpAddr {
    let peer_ip = peer.map_or(IpAddr::from([0, 0, 0, 0]), |p| canonical(p.ip()));
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer_ip) {
        return peer_ip;
    }
    let Some(header) = forwarded_for else {
        return peer_ip;
    };
    let mut last_hop = peer_ip;
    for entry in header.rsplit(',') {
        match parse_forwarded_entry(entry) {
            Some(ip) if is_trusted(ip) => last_hop = ip,
            Some(ip) => return ip,
            // Garbage in the chain: the last hop we could read is the best we know.
            None => return last_hop,
        }
    }
    last_hop
}

/// One `X-Forwarded-For` entry: an address, possibly with a port or in brackets.
fn parse_forwarded_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(sock) = entry.parse::<SocketAddr>() {
        return Some(canonical(sock.ip()));
    }
    entry
        .strip_prefix('[')
        .and_then(|e| e.strip_suffix(']'))
        .and_then(|e| e.parse().ok())
        .map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidrs(s: &[&str]) -> Vec<Cidr> {
        s.iter().map(|c| c.parse().unwrap()).collect()
    }

    fn peer(s: &str) -> Option<SocketAddr> {
        Some(SocketAddr::new(s.parse().unwrap(), 4000))
    }

    #[test]
    fn cidr_ranges_contain_what_they_should() {
        let net: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains("10.200.3.4".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.1.1".parse().unwrap()));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().is_err());
    }

    #[test]
    fn forwarded_for_is_ignored_from_an_untrusted_peer() {
        let ip = client_ip(
            peer("203.0.113.9"),
            Some("1.2.3.4"),
            &cidrs(&["10.0.0.0/8"]),
        );
        assert_eq!(ip, "203.0.113.9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn the_right_most_untrusted_entry_is_the_client() {
        let trusted = cidrs(&["10.0.0.0/8", "192.168.1.1"]);
        let ip = client_ip(
            peer("10.0.0.2"),
            Some("6.6.6.6, 198.51.100.7, 192.168.1.1"),
            &trusted,
        );
        assert_eq!(ip, "198.51.100.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_chain_of_only_proxies_yields_the_left_most_proxy() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        let ip = client_ip(peer("10.0.0.2"), Some("10.0.0.9"), &trusted);
        assert_eq!(ip, "10.0.0.9".parse::<IpAddr>().unwrap());
        let ip = client_ip(peer("10.0.0.2"), None, &trusted);
        assert_eq!(ip, "10.0.0.2".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn forwarded_entries_may_carry_ports_and_brackets() {
        let trusted = cidrs(&["127.0.0.1"]);
        let ip = client_ip(peer("127.0.0.1"), Some("[2001:db8::1]:443"), &trusted);
        assert_eq!(ip, "2001:db8::1".parse::<IpAddr>().unwrap());
        let ip = client_ip(peer("127.0.0.1"), Some("203.0.113.1:5000"), &trusted);
        assert_eq!(ip, "203.0.113.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn ipv6_clients_are_grouped_by_64() {
        let a = ClientKey::of("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = ClientKey::of("2001:db8:1:2:bbbb::2".parse().unwrap());
        let c = ClientKey::of("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.to_string(), "2001:db8:1:2::/64");
        assert_ne!(
            ClientKey::of("1.2.3.4".parse().unwrap()),
            ClientKey::of("1.2.3.5".parse().unwrap())
        );
    }
}
