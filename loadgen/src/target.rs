//! The server under load: one or more URLs that must each name a loopback address.
//!
//! The load generator refuses every other host, so a typo can never turn a benchmark into traffic
//! towards a machine that is not this one. A [`Service`] is the nodes that act as one server (a
//! cluster on one Redis, or a single node), and says which node each client talks to.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// The schemes a server URL may have: plain HTTP and WebSocket (no TLS on loopback).
const SERVER_SCHEMES: [&str; 2] = ["http://", "ws://"];

/// The scheme of a Redis URL (no TLS on loopback).
const REDIS_SCHEMES: [&str; 1] = ["redis://"];

/// Why a `--url` (or `--redis`) was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    /// The scheme is not one this option takes.
    #[error("unsupported scheme in {0:?}: use {1}")]
    Scheme(String, String),
    /// A list of URLs has an empty entry, or no entry at all.
    #[error("empty URL in the list {0:?}")]
    Empty(String),
    /// The authority part has no explicit port.
    #[error("missing port in {0:?}")]
    MissingPort(String),
    /// The port is not a number from 1 to 65535.
    #[error("invalid port in {0:?}")]
    InvalidPort(String),
    /// The host is not a literal loopback address nor `localhost`.
    #[error("refusing non-loopback host {0:?}: only 127.0.0.0/8, ::1 and localhost are allowed")]
    NotLoopback(String),
}

/// A loopback server address, parsed once from `http://HOST:PORT[/...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Where to connect.
    pub addr: SocketAddr,
}

impl Target {
    /// Parses `http://` or `ws://` URLs whose host is in 127.0.0.0/8, `::1` or `localhost`.
    /// Any path is ignored: the scenarios choose their own paths.
    pub fn parse(url: &str) -> Result<Self, TargetError> {
        Self::parse_with(url, &SERVER_SCHEMES)
    }

    /// Parses a `redis://` URL whose host is loopback, as [`Target::parse`] does; the database
    /// number and any credentials in the path are ignored (`INFO` is server-wide).
    pub fn parse_redis(url: &str) -> Result<Self, TargetError> {
        Self::parse_with(url, &REDIS_SCHEMES)
    }

    fn parse_with(url: &str, schemes: &[&str]) -> Result<Self, TargetError> {
        let rest = schemes
            .iter()
            .find_map(|scheme| url.strip_prefix(scheme))
            .ok_or_else(|| TargetError::Scheme(url.to_owned(), schemes.join(" or ")))?;
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let (host, port) =
            split_host_port(authority).ok_or_else(|| TargetError::MissingPort(url.to_owned()))?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| TargetError::InvalidPort(url.to_owned()))?;
        let ip = loopback_ip(host).ok_or_else(|| TargetError::NotLoopback(host.to_owned()))?;
        Ok(Self {
            addr: SocketAddr::new(ip, port),
        })
    }

    /// The `Host` header value for HTTP requests.
    pub fn host_header(&self) -> String {
        self.addr.to_string()
    }

    /// The WebSocket URL of the signaling endpoint.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }
}

impl FromStr for Target {
    type Err = TargetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A service: the nodes that act as one server, each a loopback [`Target`].
///
/// Which node a client talks to follows fixed rules, so that with several nodes every room and
/// every pairing crosses nodes; with one node every rule picks it:
/// - member `i` of every room connects to node `i mod n` ([`Service::member_node`]);
/// - step `s` (0 to 3) of pairing number `k` goes to node `(k + s) mod n` ([`Service::step_node`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Never empty.
    nodes: Vec<Target>,
}

impl Service {
    /// Parses a comma-separated list of server URLs, each as [`Target::parse`] does.
    pub fn parse(list: &str) -> Result<Self, TargetError> {
        let nodes = list
            .split(',')
            .map(|url| match url.trim() {
                "" => Err(TargetError::Empty(list.to_owned())),
                url => Target::parse(url),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { nodes })
    }

    /// The nodes, in the order given.
    pub fn nodes(&self) -> &[Target] {
        &self.nodes
    }

    /// The node member `member` (0 for a room's first joiner) of every room connects to: node
    /// `member mod n`, so with two nodes the two members of a pair are on different nodes.
    pub fn member_node(&self, member: usize) -> &Target {
        &self.nodes[member % self.nodes.len()]
    }

    /// The index of the node that step `step` of pairing number `pairing` goes to: `(pairing +
    /// step) mod n`. Consecutive steps go to consecutive nodes, so with several nodes every
    /// pairing is created on one node and checked or accepted on others; consecutive pairings
    /// start on consecutive nodes, so every node creates its share.
    pub fn step_node(&self, pairing: u64, step: usize) -> usize {
        let n = self.nodes.len() as u64;
        ((pairing % n + step as u64 % n) % n) as usize
    }
}

impl FromStr for Service {
    type Err = TargetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The nodes' base URLs, comma-separated, as reports show them.
impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, node) in self.nodes.iter().enumerate() {
            let comma = if i == 0 { "" } else { "," };
            write!(f, "{comma}http://{}", node.addr)?;
        }
        Ok(())
    }
}

/// Splits `host:port` or `[v6]:port`; `None` when there is no port.
fn split_host_port(authority: &str) -> Option<(&str, &str)> {
    if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        Some((host, after.strip_prefix(':')?))
    } else {
        authority.rsplit_once(':')
    }
}

/// The loopback address a host names, if it names one.
fn loopback_ip(host: &str) -> Option<IpAddr> {
    if host.eq_ignore_ascii_case("localhost") {
        return Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    let ip: IpAddr = host.parse().ok()?;
    match ip {
        IpAddr::V4(v4) if v4.is_loopback() => Some(ip),
        IpAddr::V6(v6) if v6 == Ipv6Addr::LOCALHOST => Some(ip),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_are_accepted() {
        for (url, addr) in [
            ("http://127.0.0.1:8080", "127.0.0.1:8080"),
            ("http://127.3.4.5:1/whatever", "127.3.4.5:1"),
            ("ws://localhost:9000/ws", "127.0.0.1:9000"),
            ("http://[::1]:8080/", "[::1]:8080"),
        ] {
            let target = Target::parse(url).expect(url);
            assert_eq!(target.addr, addr.parse().expect("addr"), "{url}");
        }
    }

    #[test]
    fn other_hosts_are_refused() {
        for url in [
            "http://10.0.0.1:80",
            "http://192.168.1.1:80",
            "http://0.0.0.0:80",
            "http://example.com:80",
            "http://[::]:80",
            "http://128.0.0.1:80",
        ] {
            assert!(
                matches!(Target::parse(url), Err(TargetError::NotLoopback(_))),
                "{url}"
            );
        }
    }

    #[test]
    fn malformed_urls_are_refused() {
        assert!(matches!(
            Target::parse("https://127.0.0.1:1"),
            Err(TargetError::Scheme(..))
        ));
        assert!(matches!(
            Target::parse("redis://127.0.0.1:1"),
            Err(TargetError::Scheme(..))
        ));
        assert!(matches!(
            Target::parse("http://127.0.0.1"),
            Err(TargetError::MissingPort(_))
        ));
        assert!(matches!(
            Target::parse("http://127.0.0.1:0"),
            Err(TargetError::InvalidPort(_))
        ));
        assert!(matches!(
            Target::parse("http://127.0.0.1:x"),
            Err(TargetError::InvalidPort(_))
        ));
    }

    #[test]
    fn ws_url_uses_the_ws_path() {
        let target = Target::parse("http://127.0.0.1:8080").expect("target");
        assert_eq!(target.ws_url(), "ws://127.0.0.1:8080/ws");
    }

    #[test]
    fn redis_urls_are_loopback_only_too() {
        let redis = Target::parse_redis("redis://127.0.0.1:6390/0").expect("loopback redis");
        assert_eq!(redis.addr, "127.0.0.1:6390".parse().expect("addr"));
        assert!(matches!(
            Target::parse_redis("redis://10.0.0.1:6379"),
            Err(TargetError::NotLoopback(_))
        ));
        assert!(matches!(
            Target::parse_redis("http://127.0.0.1:6379"),
            Err(TargetError::Scheme(..))
        ));
    }

    #[test]
    fn a_single_url_is_a_service_of_one_node() {
        let service = Service::parse("http://127.0.0.1:8080").expect("one node");
        assert_eq!(
            service.nodes(),
            [Target::parse("http://127.0.0.1:8080").expect("url")]
        );
        assert_eq!(service.to_string(), "http://127.0.0.1:8080");
    }

    #[test]
    fn url_lists_parse_in_order() {
        let service =
            Service::parse("http://127.0.0.1:1, ws://localhost:2/ws,http://[::1]:3").expect("list");
        let addrs: Vec<String> = service.nodes().iter().map(|n| n.addr.to_string()).collect();
        assert_eq!(addrs, ["127.0.0.1:1", "127.0.0.1:2", "[::1]:3"]);
        assert_eq!(
            service.to_string(),
            "http://127.0.0.1:1,http://127.0.0.1:2,http://[::1]:3"
        );
    }

    #[test]
    fn url_lists_refuse_any_bad_or_empty_entry() {
        assert!(matches!(
            Service::parse("http://127.0.0.1:1,http://10.0.0.1:2"),
            Err(TargetError::NotLoopback(_))
        ));
        for list in [
            "",
            ",",
            "http://127.0.0.1:1,",
            "http://127.0.0.1:1,,http://127.0.0.1:2",
        ] {
            assert!(
                matches!(Service::parse(list), Err(TargetError::Empty(_))),
                "{list:?}"
            );
        }
    }

    fn nodes(n: u16) -> Service {
        let list: Vec<String> = (1..=n).map(|p| format!("http://127.0.0.1:{p}")).collect();
        Service::parse(&list.join(",")).expect("list")
    }

    #[test]
    fn members_of_a_room_spread_over_the_nodes() {
        let port = |service: &Service, member| service.member_node(member).addr.port();
        let one = nodes(1);
        assert!((0..5).all(|member| port(&one, member) == 1));
        let two = nodes(2);
        assert_eq!((port(&two, 0), port(&two, 1)), (1, 2));
        let three = nodes(3);
        let ports: Vec<u16> = (0..8).map(|member| port(&three, member)).collect();
        assert_eq!(ports, [1, 2, 3, 1, 2, 3, 1, 2]);
    }

    #[test]
    fn the_steps_of_a_pairing_rotate_over_the_nodes() {
        let steps = |service: &Service, pairing| -> Vec<usize> {
            (0..4)
                .map(|step| service.step_node(pairing, step))
                .collect()
        };
        assert_eq!(steps(&nodes(1), 7), [0, 0, 0, 0]);
        // Two nodes: create and accept on one, both checks on the other.
        assert_eq!(steps(&nodes(2), 0), [0, 1, 0, 1]);
        assert_eq!(steps(&nodes(2), 1), [1, 0, 1, 0]);
        assert_eq!(steps(&nodes(3), 2), [2, 0, 1, 2]);
        assert_eq!(steps(&nodes(4), 1), [1, 2, 3, 0]);
        assert_eq!(steps(&nodes(5), u64::MAX), [0, 1, 2, 3]);
    }
}
