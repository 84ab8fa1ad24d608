//! Reading a request: header values by name, query parameters (URL-decoded), and the client
//! address behind trusted reverse proxies.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use percent_encoding::percent_decode;

use super::RequestView;

/// Every value of header `name` (any case), in arrival order.
pub(super) fn header_values<'a>(
    req: &'a RequestView<'_>,
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    req.headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Every non-empty value of header `name`, trimmed.
pub(super) fn present_values<'a>(req: &'a RequestView<'_>, name: &'a str) -> Vec<&'a str> {
    header_values(req, name)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect()
}

/// Every value of query parameter `name`, decoded as a form would encode it (`%XX` and `+`).
pub(super) fn query_values(query: Option<&str>, name: &str) -> Vec<Vec<u8>> {
    let Some(query) = query else {
        return Vec::new();
    };
    query
        .split('&')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decode(key) == name.as_bytes()).then(|| form_decode(value))
        })
        .collect()
}

fn form_decode(s: &str) -> Vec<u8> {
    let spaced = s.replace('+', " ");
    percent_decode(spaced.as_bytes()).collect()
}

/// The address of the client that sent a request.
///
/// The TCP peer, unless it is one of `trusted_proxies`: then `X-Forwarded-For` is walked from
/// the right (the entry the nearest proxy appended), skipping trusted proxies, and the first
/// untrusted address is the client. Entries left of it were written by the client itself and
/// prove nothing. If every entry is trusted, the leftmost is the client; a malformed entry
/// stops the walk at the last good address. IPv4-mapped IPv6 addresses count as IPv4.
pub fn client_address(
    peer: IpAddr,
    headers: &[(String, String)],
    trusted_proxies: &[IpNet],
) -> IpAddr {
    let trusted = |addr: &IpAddr| trusted_proxies.iter().any(|net| net.contains(addr));
    let mut client = peer.to_canonical();
    if !trusted(&client) {
        return client;
    }
    // Several X-Forwarded-For headers form one list, in order (RFC 9110, section 5.3).
    let entries: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("x-forwarded-for"))
        .flat_map(|(_, v)| v.split(','))
        .collect();
    for entry in entries.iter().rev() {
        let Some(addr) = parse_forwarded_address(entry) else {
            break;
        };
        client = addr;
        if !trusted(&client) {
            break;
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, optionally with a port (`[v6]:port`, `v4:port`).
fn parse_forwarded_address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    let addr = entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()?;
    Some(addr.to_canonical())
}

/// A network or single address from configuration (`10.0.0.0/8`, `192.0.2.7`, `::1`).
pub(super) fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}
