//! Who is at the other end: the client's address (for throttling) and whether it reached us
//! over HTTPS, believing forwarding headers only from the proxies `server.trusted_proxies`
//! names. (The `request` module applies them to a request with the server's settings.)
//!
//! `X-Forwarded-For` is a list each proxy appends to: `client, proxy1, proxy2`, with the last
//! proxy being our peer. Its *leftmost* entry is whatever the client wrote, so it is never the
//! answer. The client is the address seen by the outermost trusted proxy:
//! - `trusted_proxies = N` (hops): the N-th entry from the right (`1`: the rightmost, which a
//!   single nginx wrote);
//! - `trusted_proxies = ["10.0.0.0/8", …]`: walking from our peer leftwards, the first address
//!   outside those networks.
//!
//! Without trusted proxies, the peer address is the client and forwarding headers are ignored.

use std::net::IpAddr;

use crate::TrustedProxies;
use actix_web::HttpRequest;

/// A network in CIDR notation (`10.0.0.0/8`, `::1/128`, or a bare address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses `addr/prefix` or a bare address.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` is not an address or a network (e.g. 10.0.0.0/8, ::1/128)");
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(Self { addr, prefix })
    }

    /// Whether `ip` is in this network (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (canonical(self.addr), ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(u32::from(net).into(), u32::from(ip).into(), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_eq(u128::from(net), u128::from(ip), self.prefix, 128),
            _ => false,
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn prefix_eq(a: u128, b: u128, prefix: u8, bits: u8) -> bool {
    let shift = u32::from(bits - prefix);
    if shift >= 128 { true } else { (a >> shift) == (b >> shift) }
}

/// The configured proxies, parsed once.
#[derive(Clone, Debug)]
pub enum Proxies {
    /// Forwarding headers are ignored.
    None,
    /// This many hops.
    Hops(usize),
    /// Proxies are in these networks.
    Networks(Vec<Network>),
}

impl Proxies {
    /// From the settings; a malformed network is a start-up error naming the setting.
    pub fn from_settings(proxies: &TrustedProxies) -> anyhow::Result<Self> {
        Ok(match proxies {
            TrustedProxies::Hops(0) => Self::None,
            TrustedProxies::Hops(n) => Self::Hops(usize::from(*n)),
            TrustedProxies::Networks(list) if list.is_empty() => Self::None,
            TrustedProxies::Networks(list) => Self::Networks(
                list.iter()
                    .map(|n| Network::parse(n))
                    .collect::<Result<_, _>>()
                    .map_err(|e| anyhow::anyhow!("server.trusted_proxies: {e}"))?,
            ),
        })
    }

    /// Whether the peer is a proxy whose forwarding headers count.
    pub fn trusts_peer(&self, peer: Option<IpAddr>) -> bool {
        match self {
            Self::None => false,
            Self::Hops(_) => true,
            Self::Networks(nets) => peer.is_some_and(|p| nets.iter().any(|n| n.contains(p))),
        }
    }

    /// The client's address, from the peer and the `X-Forwarded-For` values.
    pub fn client(&self, peer: Option<IpAddr>, forwarded_for: &[&str]) -> Option<IpAddr> {
        if !self.trusts_peer(peer) {
            return peer;
        }
        // The chain as seen from us, rightmost first: what each hop saw, then our peer.
        let chain: Vec<Option<IpAddr>> = forwarded_for
            .iter()
            .flat_map(|value| value.split(','))
            .map(|entry| parse_forwarded_addr(entry.trim()))
            .collect();
        match self {
            Self::None => peer,
            Self::Hops(n) => {
                // Hop 1 is our peer; the address it saw is the rightmost entry; and so on. Fewer
                // entries than hops: the leftmost one we have (a proxy chain shorter than
                // configured adds no client-written entries beyond it).
                if chain.is_empty() {
                    return peer;
                }
                let index = chain.len().saturating_sub(*n);
                chain[index].or(peer)
            }
            Self::Networks(nets) => {
                let mut client = peer;
                for entry in chain.iter().rev() {
                    match entry {
                        Some(ip) if nets.iter().any(|n| n.contains(*ip)) => client = Some(*ip),
                        Some(ip) => return Some(*ip),
                        // Garbage in the header: stop at the last address we could trust.
                        None => return client,
                    }
                }
                client
            }
        }
    }
}

/// An `X-Forwarded-For` entry: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or `[2001:db8::1]:80`.
fn parse_forwarded_addr(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse() {
        return Some(ip);
    }
    if let Ok(socket) = entry.parse::<std::net::SocketAddr>() {
        return Some(socket.ip());
    }
    None
}

/// Whether the request came straight from this machine (loopback peer, no forwarding headers:
/// a local proxy forwarding someone else's request adds them).
pub fn is_direct_local(req: &HttpRequest) -> bool {
    let forwarded =
        ["x-forwarded-for", "forwarded", "x-real-ip"].iter().any(|h| req.headers().contains_key(*h));
    !forwarded && req.peer_addr().is_some_and(|a| canonical(a.ip()).is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn networks_parse_and_match() {
        let lan = Network::parse("10.0.0.0/8").unwrap();
        assert!(lan.contains(ip("10.1.2.3")) && !lan.contains(ip("11.0.0.1")));
        assert!(lan.contains(ip("::ffff:10.9.9.9")), "IPv4-mapped");
        let one = Network::parse("127.0.0.1").unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let v6 = Network::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")) && !v6.contains(ip("2001:db9::1")));
        assert!(Network::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        for bad in ["10.0.0.0/33", "nonsense", "10.0.0.0/x", ""] {
            assert!(Network::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client() {
        let proxies = Proxies::None;
        assert_eq!(proxies.client(Some(ip("203.0.113.9")), &["1.1.1.1"]), Some(ip("203.0.113.9")));
    }

    #[test]
    fn the_leftmost_entry_written_by_the_client_is_never_believed() {
        // The client sent `X-Forwarded-For: 6.6.6.6`; nginx appended the address it saw.
        let one_hop = Proxies::Hops(1);
        let header = ["6.6.6.6, 198.51.100.7"];
        assert_eq!(one_hop.client(Some(ip("127.0.0.1")), &header), Some(ip("198.51.100.7")));
        let two_hops = Proxies::Hops(2);
        assert_eq!(
            two_hops.client(Some(ip("10.0.0.2")), &["6.6.6.6, 198.51.100.7, 10.0.0.1"]),
            Some(ip("198.51.100.7"))
        );
        assert_eq!(one_hop.client(Some(ip("127.0.0.1")), &[]), Some(ip("127.0.0.1")), "no header: the peer");
        // Two header lines count as one list.
        assert_eq!(
            one_hop.client(Some(ip("127.0.0.1")), &["6.6.6.6", "198.51.100.7"]),
            Some(ip("198.51.100.7"))
        );
    }

    #[test]
    fn networks_walk_from_the_right_to_the_first_untrusted_address() {
        let proxies = Proxies::from_settings(&TrustedProxies::Networks(vec![
            "127.0.0.1/32".into(),
            "10.0.0.0/8".into(),
        ]))
        .unwrap();
        let header = ["6.6.6.6, 198.51.100.7, 10.0.0.5"];
        assert_eq!(proxies.client(Some(ip("127.0.0.1")), &header), Some(ip("198.51.100.7")));
        // A peer outside the networks is the client, whatever it claims.
        assert_eq!(proxies.client(Some(ip("203.0.113.1")), &header), Some(ip("203.0.113.1")));
        assert_eq!(proxies.client(Some(ip("127.0.0.1")), &["junk, 10.0.0.5"]), Some(ip("10.0.0.5")));
        assert!(Proxies::from_settings(&TrustedProxies::Networks(vec!["10.0.0.0/99".into()])).is_err());
    }
}
