"""Which IP addresses an outbound fetch of attacker-chosen text (a home_domain) may connect to.

Checked against the IANA special-purpose address registries (iana-ipv4-special-registry,
iana-ipv6-special-registry) and the IPv6 address space registry, not only against Python's
`ipaddress` flags (which, in 3.11, call 2002::/16 6to4, fec0::/10 site-local and 3fff::/20
documentation "global"):
- IPv4: every special-purpose block that is not globally reachable, the deprecated 6to4 relay
  anycast, multicast, and the whole of 192.0.0.0/24 (IETF protocol assignments);
- IPv6: only global unicast (2000::/3), minus the IETF protocol assignments 2001::/23 (Teredo
  2001::/32 embeds an IPv4 address; benchmarking, ORCHID, AMT), documentation (2001:db8::/32,
  3fff::/20) and 6to4 (2002::/16, whose next 32 bits are any IPv4 address, 127.0.0.1 included).
  Outside 2000::/3 everything is refused (loopback, unspecified, unique local fc00::/7, link-local
  fe80::/10, deprecated site-local fec0::/10, discard 100::/64, SRv6 5f00::/16, multicast ff00::/8,
  the deprecated IPv4-compatible ::/96, local-use NAT64 64:ff9b:1::/48), except the two prefixes
  that carry an IPv4 address: IPv4-mapped ::ffff:0:0/96 and NAT64 64:ff9b::/96 (what DNS64
  answers for an IPv4-only host), which are judged by the IPv4 address they carry.
"""
from __future__ import annotations

import ipaddress

IPV4_REFUSED = tuple((ipaddress.ip_network(net), why) for net, why in (
    ("0.0.0.0/8", "this network"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared address space (carrier-grade NAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation (TEST-NET-1)"),
    ("192.88.99.0/24", "deprecated 6to4 relay anycast"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation (TEST-NET-2)"),
    ("203.0.113.0/24", "documentation (TEST-NET-3)"),
    ("224.0.0.0/4", "multicast"),
    ("255.255.255.255/32", "limited broadcast"),  # before 240.0.0.0/4: the first match names the reason
    ("240.0.0.0/4", "reserved"),
))

GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")
IPV6_REFUSED = tuple((ipaddress.ip_network(net), why) for net, why in (
    ("2001::/32", "Teredo (embeds an IPv4 address)"),
    ("2001::/23", "IETF protocol assignments"),
    ("2001:db8::/32", "documentation"),
    ("2002::/16", "6to4 (embeds an IPv4 address)"),
    ("3fff::/20", "documentation"),
    # Outside 2000::/3, named for a clearer refusal (all of it is refused anyway).
    ("::1/128", "loopback"),
    ("::/128", "unspecified"),
    ("::/96", "deprecated IPv4-compatible"),
    ("64:ff9b:1::/48", "local-use IPv4/IPv6 translation"),
    ("100::/64", "discard-only"),
    ("5f00::/16", "SRv6 segment identifiers"),
    ("fc00::/7", "unique local"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "deprecated site-local"),
    ("ff00::/8", "multicast"),
))
MAPPED_V4 = ipaddress.ip_network("::ffff:0:0/96")
NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")


def _v4_refusal(ip: ipaddress.IPv4Address) -> str | None:
    for net, why in IPV4_REFUSED:
        if ip in net:
            return f"{why} ({net})"
    if not ip.is_global:  # a block the table above misses (a newer registry entry): refused too
        return "not globally reachable"
    return None


def refusal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why a fetch may not connect to `ip`, or None when it may (a public unicast address)."""
    if isinstance(ip, ipaddress.IPv4Address):
        return _v4_refusal(ip)
    if ip.scope_id:
        return "scoped (link-local) address"
    if ip in MAPPED_V4 or ip in NAT64_WELL_KNOWN:
        inner = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        why = _v4_refusal(inner)
        kind = "IPv4-mapped" if ip in MAPPED_V4 else "NAT64"
        return f"{kind} address of {inner}: {why}" if why else None
    for net, why in IPV6_REFUSED:
        if ip in net:
            return f"{why} ({net})"
    if ip not in GLOBAL_UNICAST_V6:
        return "outside global unicast (2000::/3)"
    if not ip.is_global:  # a newer registry entry Python knows and the table above misses
        return "not globally reachable"
    return None
