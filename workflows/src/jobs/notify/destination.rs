//! Where webhooks may go. A channel's URL is chosen by whoever administers channels, and the
//! workers run inside the operator's network: without a guard a webhook could reach loopback
//! services, the private network or a cloud metadata endpoint (`169.254.169.254`). So only
//! public addresses are allowed unless a network is allow-listed (`WEBHOOK_ALLOW_NETWORKS`),
//! and the check is made on the address actually connected to: the resolver below answers
//! only permitted addresses, so a name that resolves elsewhere on the next lookup (DNS
//! rebinding) cannot slip past. IP literals never reach a resolver and are checked before the
//! request.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// The networks webhooks may reach besides the public internet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestinationPolicy {
    pub allow: Vec<IpNet>,
}

impl DestinationPolicy {
    /// Allows these networks besides public addresses (tests and local receivers).
    pub fn allowing(allow: impl IntoIterator<Item = IpNet>) -> Self {
        Self {
            allow: allow.into_iter().collect(),
        }
    }

    /// Loopback allowed: for tests whose receivers listen on 127.0.0.1.
    pub fn allowing_loopback() -> Self {
        Self::allowing(["127.0.0.0/8", "::1/128"].map(|n| n.parse().expect("a valid network")))
    }

    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        is_public(ip) || self.allow.iter().any(|net| net.contains(&ip))
    }

    /// Why `ip` is refused, for the delivery's error; `None` when it is permitted.
    pub fn refusal(&self, ip: IpAddr) -> Option<String> {
        (!self.permits(ip)).then(|| {
            format!(
                "{ip} is a {} address; webhooks reach only public addresses unless WEBHOOK_ALLOW_NETWORKS names it",
                class(canonical(ip))
            )
        })
    }
}

/// An IPv4 address written as IPv6 (`::ffff:10.0.0.1`) is judged as the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn class(ip: IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(v4) if v4.is_loopback() => "loopback",
        IpAddr::V6(v6) if v6.is_loopback() => "loopback",
        IpAddr::V4(v4) if v4.is_link_local() => "link-local (cloud metadata)",
        IpAddr::V6(v6) if v6.is_unicast_link_local() => "link-local",
        IpAddr::V4(v4) if v4.is_private() || is_shared_v4(v4) => "private",
        IpAddr::V6(v6) if v6.is_unique_local() => "private",
        _ => "non-public",
    }
}

/// 100.64.0.0/10, carrier-grade NAT: private in practice.
fn is_shared_v4(v4: Ipv4Addr) -> bool {
    let [a, b, ..] = v4.octets();
    a == 100 && (b & 0xc0) == 64
}

/// A globally routable unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || is_shared_v4(v4)
                || a == 0
                || a >= 240
                // 192.0.0.0/24 (protocol assignments) and 198.18.0.0/15 (benchmarking).
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (b & 0xfe) == 18))
        }
        IpAddr::V6(v6) => {
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
                || is_documentation_v6(v6)
                // 64:ff9b::/96 (NAT64) may translate to any IPv4 address, private ones too.
                || v6.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0])
        }
    }
}

fn is_documentation_v6(v6: Ipv6Addr) -> bool {
    let s = v6.segments();
    s[0] == 0x2001 && s[1] == 0x0db8
}

const REFUSED_MARK: &str = "resolves only to refused addresses";

/// The resolver's refusal: every address the name has is outside the policy.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves only to refused addresses: {reason}")] // REFUSED_MARK
pub struct DestinationRefused {
    pub host: String,
    pub reason: String,
}

/// Resolves with the system resolver and answers only the addresses the policy permits.
#[derive(Debug)]
pub(super) struct GuardedResolver {
    pub policy: Arc<DestinationPolicy>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let permitted: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| policy.permits(a.ip()))
                .collect();
            if permitted.is_empty() {
                let reason = found
                    .first()
                    .and_then(|a| policy.refusal(a.ip()))
                    .unwrap_or_else(|| "no address".into());
                return Err(Box::new(DestinationRefused { host, reason }) as _);
            }
            Ok(Box::new(permitted.into_iter()) as Addrs)
        })
    }
}

/// The policy's refusal behind a failed request, if that is why it failed.
pub(super) fn refused_by_policy(error: &reqwest::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<DestinationRefused>() {
            return Some(refused.to_string());
        }
        // Some layers of the HTTP stack keep only their cause's words.
        let words = e.to_string();
        if words.contains(REFUSED_MARK) {
            return Some(words);
        }
        source = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(raw: &str) -> IpAddr {
        raw.parse().expect("address")
    }

    #[test]
    fn only_public_addresses_pass_by_default() {
        let policy = DestinationPolicy::default();
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
        ] {
            assert!(!policy.permits(ip(refused)), "{refused} must be refused");
        }
        for allowed in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert!(policy.permits(ip(allowed)), "{allowed} must pass");
        }
        assert!(
            policy
                .refusal(ip("169.254.169.254"))
                .is_some_and(|r| r.contains("metadata"))
        );
    }

    #[test]
    fn an_allow_listed_network_passes_and_nothing_else_does() {
        let policy = DestinationPolicy::allowing(["10.5.0.0/16".parse().expect("net")]);
        assert!(policy.permits(ip("10.5.1.1")));
        assert!(!policy.permits(ip("10.6.1.1")));
        assert!(!policy.permits(ip("127.0.0.1")));
        assert!(DestinationPolicy::allowing_loopback().permits(ip("::ffff:127.0.0.1")));
    }
}
