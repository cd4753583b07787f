"""The stellar.toml address policy against the IANA special-purpose registries (IPv4 and IPv6)."""
import pytest

from common.enrichment.toml import PUBLIC_ONLY, AddressPolicy, StellarTomlFetcher, TomlFetchError

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("ip, why", [
    # IPv6 prefixes that carry an IPv4 address
    ("2002:7f00:1::1", "6to4"),  # 6to4 of 127.0.0.1
    ("2002:808:808::1", "6to4"),  # 6to4 of a public address: still a relay hop we cannot judge
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo"),  # Teredo, client 127.0.0.1 (obfuscated)
    ("64:ff9b::7f00:1", "NAT64 address of 127.0.0.1"),
    ("64:ff9b::a00:1", "NAT64 address of 10.0.0.1"),
    ("64:ff9b::a9fe:a9fe", "NAT64 address of 169.254.169.254"),
    ("64:ff9b:1::808:808", "local-use"),
    ("::ffff:127.0.0.1", "IPv4-mapped address of 127.0.0.1"),
    ("::ffff:100.64.0.1", "shared address space"),
    ("::127.0.0.1", "IPv4-compatible"),
    # other IPv6 special-purpose and non-unicast space
    ("fec0::1", "site-local"),
    ("fc00::1", "unique local"),
    ("fd12:3456::1", "unique local"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "scoped"),
    ("ff02::1", "multicast"),
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("100::1", "discard-only"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("5f00::1", "SRv6"),
    ("2001:2::1", "IETF protocol assignments"),  # benchmarking
    ("2001:10::1", "IETF protocol assignments"),  # deprecated ORCHID
    ("4000::1", "outside global unicast"),
    # IPv4 special-purpose
    ("0.1.2.3", "this network"),
    ("100.64.0.1", "shared address space"),
    ("100.127.255.254", "shared address space"),
    ("192.0.0.9", "IETF protocol assignments"),
    ("192.0.2.1", "documentation"),
    ("192.88.99.1", "6to4 relay"),
    ("198.18.0.1", "benchmarking"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("239.255.255.250", "multicast"),
    ("255.255.255.255", "broadcast"),
    ("172.31.255.255", "private"),
])
def test_special_purpose_addresses_are_refused_with_the_reason(ip, why):
    with pytest.raises(TomlFetchError) as info:
        PUBLIC_ONLY.check(ip)
    assert info.value.code == "forbidden_address" and why in str(info.value), str(info.value)


@pytest.mark.parametrize("ip", [
    "1.1.1.1", "8.8.8.8", "100.63.255.255", "100.128.0.1", "172.32.0.1", "192.0.1.1", "198.20.0.1",
    "2606:4700:4700::1111", "2a00:1450:4001:82a::200e",
    "64:ff9b::808:808",  # DNS64's answer for an IPv4-only public host
    "::ffff:8.8.8.8",
    "2001:200::1",  # just past 2001::/23: an ordinary allocation
])
def test_public_unicast_addresses_pass(ip):
    PUBLIC_ONLY.check(ip)


def test_an_answer_that_is_no_address_is_refused_before_connecting():
    with pytest.raises(TomlFetchError) as info:
        StellarTomlFetcher(resolver=lambda h, p: ["not-an-ip"]).fetch("junk-dns.example")
    assert info.value.code == "forbidden_address"


def test_a_6to4_answer_for_loopback_is_never_connected():
    with pytest.raises(TomlFetchError) as info:
        StellarTomlFetcher(resolver=lambda h, p: ["2002:7f00:1::1"]).fetch("sixtofour.example")
    assert info.value.code == "forbidden_address" and "6to4" in str(info.value)


def test_the_local_allowance_still_comes_first():
    AddressPolicy(extra_allowed=("2002::/16",)).check("2002:7f00:1::1")
