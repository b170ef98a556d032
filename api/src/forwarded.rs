//! Who the client is behind a reverse proxy. The login limit counts attempts per client
//! address; behind a proxy every request comes from the proxy, so the address it forwards in
//! `X-Forwarded-For` is used, but only when the request really comes from a trusted proxy
//! (`TRUSTED_PROXIES`): anyone else could write any address into that header.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// `10.0.0.0/8` or a single address (`10.1.2.3`): the same parser as the webhook allow-list.
pub use runtime::args::parse_network as parse_trusted;

/// The client's address: the TCP peer, unless the peer is a trusted proxy; then the nearest
/// address in `X-Forwarded-For` that is not itself a trusted proxy (walking from the right,
/// since each proxy appends the address it saw).
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in hops.into_iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else {
            // A malformed entry: nothing to its left can be trusted either.
            break;
        };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().expect("header"));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn the_forwarded_address_counts_only_from_a_trusted_proxy() {
        let trusted = vec![
            parse_trusted("10.0.0.0/8").expect("cidr"),
            parse_trusted("192.168.1.1").expect("ip"),
        ];
        let forged = headers(&["203.0.113.9"]);
        assert_eq!(
            client_address(ip("198.51.100.7"), &forged, &trusted),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_address(ip("10.1.2.3"), &forged, &trusted),
            ip("203.0.113.9")
        );
        // The client wrote its own header; the proxy appended what it saw, which is what counts.
        let chained = headers(&["1.1.1.1, 203.0.113.9", "10.9.9.9"]);
        assert_eq!(
            client_address(ip("192.168.1.1"), &chained, &trusted),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_address(ip("10.1.2.3"), &headers(&["bogus"]), &trusted),
            ip("10.1.2.3")
        );
        assert_eq!(
            client_address(ip("10.1.2.3"), &HeaderMap::new(), &trusted),
            ip("10.1.2.3")
        );
        assert!(parse_trusted("10.0.0.0/33").is_err());
    }
}
