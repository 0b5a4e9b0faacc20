//! [`IpNet`]: one entry of `server.trusted_proxies`, an IP address or a CIDR block, parsed
//! with `std::net` alone (the membership test is two masked integer compares).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An IPv4 or IPv6 address (`192.0.2.7`, `::1`) or CIDR block (`10.0.0.0/8`,
/// `2001:db8::/32`). Written and read as that text in the configuration; a block whose
/// address has bits set beyond its prefix (`10.0.0.1/8`) is refused as a likely typo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    /// The network address (host bits zero).
    addr: IpAddr,
    /// Leading bits that must match: 0..=32 for IPv4, 0..=128 for IPv6.
    prefix_len: u8,
}

impl IpNet {
    /// Whether `ip` is inside this block. An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`,
    /// what a dual-stack `[::]` listener reports for an IPv4 peer) is also compared as the
    /// IPv4 address it carries.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.contains_exact(ip)
            || (ip.to_canonical() != ip && self.contains_exact(ip.to_canonical()))
    }

    fn contains_exact(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = mask_u32(self.prefix_len);
                u32::from(ip) & mask == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = mask_u128(self.prefix_len);
                u128::from(ip) & mask == u128::from(net)
            }
            _ => false,
        }
    }
}

fn mask_u32(prefix_len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix_len))
        .unwrap_or(0)
}

fn mask_u128(prefix_len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix_len))
        .unwrap_or(0)
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(text: &str) -> Result<IpNet, String> {
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len = match prefix_text {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|n| *n <= max && !p.starts_with('+'))
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0..={max}"))?,
        };
        let net = IpNet { addr, prefix_len };
        let host_bits = match addr {
            IpAddr::V4(a) => u32::from(a) & !mask_u32(prefix_len) != 0,
            IpAddr::V6(a) => u128::from(a) & !mask_u128(prefix_len) != 0,
        };
        if host_bits {
            let network = match addr {
                IpAddr::V4(a) => IpAddr::from((u32::from(a) & mask_u32(prefix_len)).to_be_bytes()),
                IpAddr::V6(a) => {
                    IpAddr::from((u128::from(a) & mask_u128(prefix_len)).to_be_bytes())
                }
            };
            return Err(format!(
                "{text:?} has bits set after the prefix (the block is {network}/{prefix_len})"
            ));
        }
        Ok(net)
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let max = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.prefix_len == max {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix_len)
        }
    }
}

impl Serialize for IpNet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpNet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<IpNet, D::Error> {
        let text = String::deserialize(d)?;
        text.trim().parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> IpNet {
        text.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ipv4_blocks_and_addresses() {
        let n = net("10.0.0.0/8");
        assert!(n.contains(ip("10.0.0.0")) && n.contains(ip("10.255.255.255")));
        assert!(!n.contains(ip("11.0.0.0")) && !n.contains(ip("9.255.255.255")));
        let one = net("192.0.2.7");
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.6")));
        assert_eq!(one, net("192.0.2.7/32"));
        let all = net("0.0.0.0/0");
        assert!(all.contains(ip("203.0.113.9")) && !all.contains(ip("::1")));
        let odd = net("172.16.0.0/12");
        assert!(odd.contains(ip("172.31.255.1")) && !odd.contains(ip("172.32.0.1")));
    }

    #[test]
    fn ipv6_blocks_and_addresses() {
        let n = net("2001:db8::/32");
        assert!(n.contains(ip("2001:db8:ffff::1")) && !n.contains(ip("2001:db9::1")));
        assert!(!n.contains(ip("10.0.0.1")));
        let one = net("::1");
        assert!(one.contains(ip("::1")) && !one.contains(ip("::2")));
        assert!(!one.contains(ip("127.0.0.1")));
        assert!(net("::/0").contains(ip("fe80::1")));
        let odd = net("fc00::/7");
        assert!(odd.contains(ip("fdff::1")) && odd.contains(ip("fc00::1")));
        assert!(!odd.contains(ip("fe00::1")));
    }

    #[test]
    fn ipv4_mapped_peers_match_ipv4_blocks() {
        assert!(net("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")));
        assert!(!net("10.0.0.0/8").contains(ip("::ffff:11.1.2.3")));
        assert!(net("::ffff:0:0/96").contains(ip("::ffff:10.1.2.3")));
    }

    #[test]
    fn bad_entries_are_refused_with_the_reason() {
        for (text, needle) in [
            ("", "not an IP address"),
            ("10.0.0", "not an IP address"),
            ("localhost", "not an IP address"),
            ("10.0.0.0/33", "0..=32"),
            ("10.0.0.0/-1", "0..=32"),
            ("10.0.0.0/+8", "0..=32"),
            ("10.0.0.0/", "0..=32"),
            ("10.0.0.0/8/8", "0..=32"),
            ("::/129", "0..=128"),
            ("10.0.0.1/8", "the block is 10.0.0.0/8"),
            ("2001:db8::1/32", "the block is 2001:db8::/32"),
            ("[::1]", "not an IP address"),
            ("10.0.0.1:80", "not an IP address"),
        ] {
            let e = text.parse::<IpNet>().unwrap_err();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn text_round_trips() {
        for text in [
            "10.0.0.0/8",
            "192.0.2.7",
            "2001:db8::/32",
            "::1",
            "0.0.0.0/0",
        ] {
            assert_eq!(net(text).to_string(), text);
        }
        assert_eq!(net("192.0.2.7/32").to_string(), "192.0.2.7");
    }
}
