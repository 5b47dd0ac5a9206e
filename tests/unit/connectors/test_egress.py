"""Which addresses provider calls may reach (DESIGN invariant 12), as pure functions."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from connectors.egress import EgressRefusedError, check_url, classify, guarded_socket


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.254", "private"),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "private"),  # ULA
        ("fc00::1", "private"),
        ("169.254.1.1", "link_local"),
        ("fe80::1", "link_local"),
        ("fe80::1%1", "link_local"),  # with a scope id, as getaddrinfo may give it
        ("169.254.169.254", "metadata"),  # AWS, GCP, Azure, Oracle, OpenStack
        ("169.254.170.2", "metadata"),  # AWS ECS task metadata
        ("fd00:ec2::254", "metadata"),  # AWS over IPv6
        ("100.100.100.200", "metadata"),  # Alibaba Cloud
        ("168.63.129.16", "metadata"),  # Azure wire server: public space, host-only
        ("0.0.0.0", "unspecified"),  # noqa: S104 - an address to judge, not to bind
        ("0.1.2.3", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.2.7", "reserved"),  # documentation
        ("198.18.0.1", "reserved"),  # benchmarking
        ("2001:db8::1", "reserved"),  # documentation
        ("100::1", "reserved"),  # discard
        ("2001::1", "reserved"),  # Teredo: the real address is hidden inside
        ("4000::1", "reserved"),  # outside global unicast 2000::/3
        ("100.64.0.1", "cgnat"),
        ("100.127.255.254", "cgnat"),
        # IPv4 inside IPv6: the embedded address is the one reached.
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "metadata"),
        ("::ffff:10.0.0.1", "private"),
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
        ("2002:7f00:1::1", "loopback"),  # 6to4 of 127.0.0.1
        ("::127.0.0.1", "reserved"),  # IPv4-compatible, deprecated
    ],
)
def test_classifies_addresses_providers_never_live_at(address: str, expected: str) -> None:
    assert classify(address) == expected


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "93.184.215.14",
        "52.94.236.248",  # an AWS API endpoint
        "100.63.255.255",  # just below CGNAT
        "100.128.0.0",  # just above
        "172.15.255.255",
        "172.32.0.0",
        "2606:4700:4700::1111",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",  # NAT64 of 8.8.8.8
        "2002:808:808::1",  # 6to4 of 8.8.8.8
    ],
)
def test_public_addresses_pass(address: str) -> None:
    assert classify(address) is None


@given(st.ip_addresses())
def test_every_address_python_calls_non_global_is_refused(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    """The standard library's own registry tables are a floor: we refuse at least those.

    Except IPv6 that carries an IPv4 address (mapped, NAT64, 6to4): Python's answer for those
    changed between versions, ours is the embedded address's (tested above).
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        assume(embedded is None and address not in ipaddress.IPv6Network("64:ff9b::/96"))
    if not address.is_global:
        assert classify(address) is not None


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://api.example.com/v1", "scheme"),
        ("ftp://api.example.com/", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("https://user:pass@api.example.com/", "userinfo"),
        ("https://api.example.com@127.0.0.1/", "userinfo"),
        ("https:///no-host", "host"),
        ("https://127.0.0.1/", "loopback"),
        ("https://[::1]:8443/", "loopback"),
        ("https://169.254.169.254/latest/meta-data/", "metadata"),
        ("https://[::ffff:a9fe:a9fe]/", "metadata"),
        ("https://10.0.0.8/", "private"),
        ("https://localhost/", "loopback"),
        ("https://api.localhost./", "loopback"),
        ("https://metadata.google.internal/computeMetadata/v1/", "metadata"),
        ("https://METADATA.GOOGLE.INTERNAL./", "metadata"),
        ("https://metadata/", "metadata"),
        ("https://2130706433/", "host"),  # 127.0.0.1 as one number: not a host name
        ("https://0x7f.1/", "host"),
    ],
)
def test_refuses_urls_that_cannot_be_a_providers(url: str, reason: str) -> None:
    with pytest.raises(EgressRefusedError) as caught:
        check_url(url, allow_private=False)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    "url",
    [
        "https://api.xero.com/api.xro/2.0",
        "https://api.hubapi.com",
        "https://sandbox-quickbooks.api.intuit.com/v3/company/1",
        "https://[2606:4700:4700::1111]/x",
        "https://8.8.8.8:8443/x",
    ],
)
def test_provider_urls_pass(url: str) -> None:
    check_url(url, allow_private=False)


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:9301", "http://localhost:8080/api", "https://10.0.0.8/", "http://[::1]/"],
)
def test_the_operator_setting_allows_private_addresses_and_plain_http(url: str) -> None:
    check_url(url, allow_private=True)


def test_credentials_in_the_url_are_refused_even_when_private_addresses_are_allowed() -> None:
    with pytest.raises(EgressRefusedError) as caught:
        check_url("http://user:secret@127.0.0.1:9301/", allow_private=True)
    assert caught.value.reason == "userinfo"
    assert "secret" not in str(caught.value)
    assert "CRMSYNC_ALLOW_PRIVATE_PROVIDER_URLS" not in str(caught.value)  # it would not help


@pytest.mark.parametrize(
    ("family", "sockaddr"),
    [
        (socket.AF_INET, ("127.0.0.1", 443)),
        (socket.AF_INET, ("169.254.169.254", 80)),
        (socket.AF_INET6, ("::ffff:10.0.0.1", 443, 0, 0)),
        (socket.AF_INET6, ("fe80::1", 443, 0, 2)),
    ],
)
def test_no_socket_is_made_for_a_refused_address(
    family: socket.AddressFamily, sockaddr: tuple[object, ...]
) -> None:
    """The last gate: the exact address a socket is about to connect to, after any DNS."""
    with pytest.raises(EgressRefusedError):
        guarded_socket((family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))  # type: ignore[arg-type]


def test_a_socket_is_made_for_a_public_address() -> None:
    info = (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("8.8.8.8", 443))
    with guarded_socket(info) as sock:  # type: ignore[arg-type]
        assert sock.family == socket.AF_INET
