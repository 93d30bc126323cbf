//! The server under load: a URL that must name a loopback address.
//!
//! The load generator refuses every other host, so a typo can never turn a benchmark into traffic
//! towards a machine that is not this one.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// Why a `--url` was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    /// Only plain HTTP and WebSocket URLs are understood (no TLS on loopback).
    #[error("unsupported scheme in {0:?}: use http:// or ws://")]
    Scheme(String),
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
        let rest = ["http://", "ws://"]
            .iter()
            .find_map(|scheme| url.strip_prefix(scheme))
            .ok_or_else(|| TargetError::Scheme(url.to_owned()))?;
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
            Err(TargetError::Scheme(_))
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
}
