//! Same-network discovery: which clients are on one network, as rooms.
//!
//! A client's *network group* is derived from its address (through trusted proxies only, see
//! [`crate::limits::client`]): behind one NAT, clients share a public address, so a public
//! address is its own group; a private address (a LAN reached without NAT, a VPN, a carrier
//! NAT) groups by its subnet, an IPv4 /24 or an IPv6 /64. Two clients in one group are on the same
//! network (`lan`), otherwise not (`wan`). This is DropSilk's rule (`getNetworkGroup`), used by
//! its dialect and by signalpost's own `discover`.
//!
//! A group is a lobby room of the directory ([`lobby`]), so discovery works wherever rooms do
//! (one node or a cluster): a session that wants to be discoverable joins its group's lobby with
//! [`join_request`], and its protocol renders the lobby's member list (the lobby has full
//! views) as the users on its network. Lobbies live in a space of their own ([`SPACE`]), apart
//! from every protocol's rooms, so no client can join another network's lobby by naming it.
//!
//! The group of a public address *is* the address: it is kept in the directory and compared,
//! never rendered to peers or logged.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use super::{JoinRequest, MemberInfo, Rejoin, RoomKey, RoomOptions, SessionId};
use crate::config::cidr::canonical;

/// The space of every network lobby.
pub const SPACE: &str = "net";

/// The network group of a client address.
///
/// Public addresses group by the whole address (so two public IPv6 addresses of one /64 are
/// different networks, as in DropSilk). Private addresses (RFC 1918, loopback, link-local,
/// unique-local, carrier-grade NAT) group by their IPv4 /24 (`a.b.c`) or the first four hextets
/// of IPv6. IPv4-mapped IPv6 counts as IPv4, and IPv6 loopback as `127.0.0.1`.
pub fn network_group(ip: IpAddr) -> Arc<str> {
    let ip = match canonical(ip) {
        IpAddr::V6(v6) if v6.is_loopback() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    };
    match ip {
        IpAddr::V4(v4) if is_private_v4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}").into()
        }
        IpAddr::V6(v6) if is_private_v6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}", s[0], s[1], s[2], s[3]).into()
        }
        ip => ip.to_string().into(),
    }
}

/// `lan` or `wan` between two clients: whether their network groups are one.
pub fn same_network(a: IpAddr, b: IpAddr) -> bool {
    network_group(a) == network_group(b)
}

/// Private (10/8, 172.16/12, 192.168/16), loopback, link-local or carrier-grade NAT (100.64/10).
fn is_private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || (a == 100 && (64..128).contains(&b))
}

/// Link-local (fe80::/10) or unique-local (fc00::/7).
fn is_private_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    (first & 0xffc0) == 0xfe80 || (first & 0xfe00) == 0xfc00
}

/// The lobby of network `group` for the sessions of `protocol` (each protocol has its own, so
/// a DropSilk client is listed to DropSilk clients only: they could not talk to others).
pub fn lobby(protocol: &str, group: &str) -> RoomKey {
    RoomKey::new(SPACE, &format!("{protocol}/{group}"))
}

/// Whether a room is a network lobby.
pub fn is_lobby(room: &RoomKey) -> bool {
    room.space() == SPACE
}

/// The join that makes `session` discoverable on its network: into the lobby of `member`'s
/// network group, as `member`. Joining again (already a member) only tells the joiner again.
/// Returns `None` when `member` has no network group.
pub fn join_request(
    session: SessionId,
    protocol: &str,
    member: MemberInfo,
    checked_at: u64,
) -> Option<JoinRequest> {
    let room = lobby(protocol, member.network.as_deref()?);
    Some(JoinRequest {
        session,
        room,
        member,
        options: RoomOptions::lobby(true),
        device: None,
        replace_same_device: false,
        replace_same_peer: false,
        // A lobby is joined beside the session's rooms, never instead of them.
        exclusive: false,
        rejoin: Rejoin::Quiet,
        resume: None,
        checked_at,
    })
}

/// The others on one's network: a lobby's member list without `me`.
pub fn others<'a>(
    members: &'a [MemberInfo],
    me: &'a str,
) -> impl Iterator<Item = &'a MemberInfo> + 'a {
    members.iter().filter(move |m| &*m.peer != me)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(s: &str) -> String {
        network_group(s.parse().unwrap()).to_string()
    }

    #[test]
    fn a_public_address_is_its_own_group() {
        assert_eq!(group("81.2.69.50"), "81.2.69.50");
        assert_ne!(group("81.2.69.51"), group("81.2.69.52"));
        assert_eq!(
            group("2a00:1450:4001:81c::200e"),
            "2a00:1450:4001:81c::200e"
        );
        assert_ne!(
            group("2a00:1450:4001:81c::200e"),
            group("2a00:1450:4001:81c::200f"),
            "public IPv6 of one /64 are different networks"
        );
    }

    #[test]
    fn private_addresses_group_by_their_subnet() {
        assert_eq!(group("192.168.60.10"), "192.168.60");
        assert_eq!(group("192.168.60.10"), group("192.168.60.20"));
        assert_ne!(group("192.168.61.10"), group("192.168.62.10"));
        assert_eq!(group("10.1.2.3"), "10.1.2");
        assert_eq!(group("172.16.9.1"), "172.16.9");
        assert_eq!(group("172.32.9.1"), "172.32.9.1", "outside 172.16/12");
        assert_eq!(
            group("100.64.5.1"),
            group("100.64.5.2"),
            "carrier-grade NAT"
        );
        assert_eq!(group("100.128.5.1"), "100.128.5.1", "outside 100.64/10");
        assert_eq!(group("169.254.1.1"), "169.254.1", "link-local");
        assert_eq!(group("127.0.0.1"), "127.0.0");
        assert_eq!(group("::1"), "127.0.0", "IPv6 loopback counts as 127.0.0.1");
        assert_eq!(group("::ffff:192.168.60.7"), "192.168.60");
        assert_eq!(group("fd12:3456:789a:1::10"), "fd12:3456:789a:1");
        assert_eq!(
            group("fd12:3456:789a:1::10"),
            group("fd12:3456:789a:1:aaaa::20")
        );
        assert_ne!(group("fd12:3456:789a:2::10"), group("fd12:3456:789a:3::10"));
        assert_eq!(group("fe80::1:2"), "fe80:0:0:0");
    }

    #[test]
    fn lan_or_wan_is_whether_the_groups_are_one() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(same_network(ip("81.2.69.50"), ip("81.2.69.50")));
        assert!(!same_network(ip("81.2.69.53"), ip("192.168.63.10")));
        assert!(same_network(ip("192.168.60.10"), ip("192.168.60.20")));
    }

    #[test]
    fn lobbies_are_apart_from_every_protocols_rooms() {
        let key = lobby("s", "81.2.69.50");
        assert!(is_lobby(&key));
        assert_eq!(key.space(), SPACE);
        assert_ne!(key, RoomKey::new("s", "s/81.2.69.50"));
        assert!(!is_lobby(&RoomKey::new("s", "net:x")));
        assert_ne!(lobby("s", "g"), lobby("dropsilk", "g"));
    }

    #[test]
    fn a_member_without_a_network_cannot_be_discovered() {
        let member = MemberInfo::peer("p".into());
        assert!(join_request(SessionId(1), "s", member.clone(), 0).is_none());
        let member = MemberInfo {
            network: Some("10.0.0".into()),
            ..member
        };
        let request = join_request(SessionId(1), "s", member, 0).unwrap();
        assert_eq!(request.room, lobby("s", "10.0.0"));
        assert!(request.options.lobby && request.options.full_views);
        assert!(!request.exclusive);
    }

    #[test]
    fn others_leaves_oneself_out() {
        let members: Vec<MemberInfo> = ["a", "b", "c"]
            .iter()
            .map(|p| MemberInfo::peer((*p).into()))
            .collect();
        let peers: Vec<&str> = others(&members, "b").map(|m| &*m.peer).collect();
        assert_eq!(peers, ["a", "c"]);
    }
}
