"""Where provider calls may go (DESIGN invariant 12: provider URLs go to providers).

A connection's base URL, its OAuth2 token URL and a generic mapping's endpoints are tenant
input, and the processor and outbound call them with the connection's credentials. Left
alone, a tenant could point them at 127.0.0.1, at the cloud's metadata service or at a
host on the internal network, and read the answer back in a dead letter. So by default a
provider call reaches public addresses only; an operator running providers on a private
network (the simulators, tests, an on-premises CRM) allows more with one setting.

One pure classifier, applied at three points of each request by the session
:func:`provider_session` builds:

- :func:`check_url` before the request: scheme, credentials in the URL, a host that is an
  address or a well-known internal name. The admin API applies the same check to URLs it
  accepts, so most mistakes are a 422 instead of a dead letter.
- :class:`GuardedResolver` on every address a host name resolves to, for a clear error.
- :func:`guarded_socket` on the exact address each socket is about to connect to. This is
  the check that matters: it runs after DNS, so a name that answered a public address to
  an earlier lookup and a private one now (DNS rebinding) still cannot connect.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from functools import lru_cache, partial
from types import SimpleNamespace
from typing import Literal

import aiohttp
from aiohappyeyeballs import AddrInfoType
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from schemas.errors import RefuseInput

AddressClass = Literal[
    "loopback",
    "private",
    "link_local",
    "metadata",
    "unspecified",
    "multicast",
    "reserved",
    "cgnat",
]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# The variable that lifts the restriction (the services' settings field
# ``allow_private_provider_urls``): named in every refusal, so a dead letter says the fix.
ALLOW_SETTING = "CRMSYNC_ALLOW_PRIVATE_PROVIDER_URLS"

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# First match wins: the metadata endpoints sit inside wider ranges below them.
_IPV4_CLASSES: tuple[tuple[ipaddress.IPv4Network, AddressClass], ...] = (
    (_V4("169.254.169.254/32"), "metadata"),  # AWS, GCP, Azure, Oracle, OpenStack
    (_V4("169.254.170.2/32"), "metadata"),  # AWS ECS task credentials
    (_V4("100.100.100.200/32"), "metadata"),  # Alibaba Cloud
    (_V4("168.63.129.16/32"), "metadata"),  # Azure wire server, reachable from every VM
    (_V4("0.0.0.0/8"), "unspecified"),  # RFC 1122 "this network"
    (_V4("10.0.0.0/8"), "private"),  # RFC 1918
    (_V4("172.16.0.0/12"), "private"),
    (_V4("192.168.0.0/16"), "private"),
    (_V4("100.64.0.0/10"), "cgnat"),  # RFC 6598 shared address space
    (_V4("127.0.0.0/8"), "loopback"),
    (_V4("169.254.0.0/16"), "link_local"),  # RFC 3927
    (_V4("192.0.0.0/24"), "reserved"),  # RFC 6890 IETF protocol assignments
    (_V4("192.0.2.0/24"), "reserved"),  # RFC 5737 documentation (three blocks)
    (_V4("198.51.100.0/24"), "reserved"),
    (_V4("203.0.113.0/24"), "reserved"),
    (_V4("192.88.99.0/24"), "reserved"),  # RFC 7526 retired 6to4 relays
    (_V4("198.18.0.0/15"), "reserved"),  # RFC 2544 benchmarking
    (_V4("224.0.0.0/4"), "multicast"),
    (_V4("240.0.0.0/4"), "reserved"),  # RFC 1112, 255.255.255.255 included
)
_IPV6_CLASSES: tuple[tuple[ipaddress.IPv6Network, AddressClass], ...] = (
    (_V6("fd00:ec2::254/128"), "metadata"),  # AWS over IPv6
    (_V6("::/128"), "unspecified"),
    (_V6("::1/128"), "loopback"),
    (_V6("64:ff9b:1::/48"), "private"),  # RFC 8215 local-use NAT64
    (_V6("100::/64"), "reserved"),  # RFC 6666 discard
    (_V6("2001::/23"), "reserved"),  # RFC 2928 IETF assignments: Teredo hides the address
    (_V6("2001:db8::/32"), "reserved"),  # RFC 3849 documentation
    (_V6("fc00::/7"), "private"),  # RFC 4193 unique local
    (_V6("fe80::/10"), "link_local"),
    (_V6("ff00::/8"), "multicast"),
)
# Everything else outside global unicast (RFC 4291) is unassigned or deprecated (site-local
# fec0::/10, IPv4-compatible ::/96): no provider is there.
_GLOBAL_UNICAST = _V6("2000::/3")
# NAT64 (RFC 6052) and 6to4 (RFC 3056) reach the IPv4 address they embed.
_NAT64 = _V6("64:ff9b::/96")

# Names that are not in public DNS but answer inside clouds and hosts. Their addresses are
# refused anyway; refusing the names too gives a clear 422 at the admin API.
_METADATA_NAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",  # GCP
        "metadata.goog",  # GCP
        "instance-data",  # AWS
        "instance-data.ec2.internal",  # AWS
        "metadata.azure.internal",
    }
)


# Refused whatever the operator allows: these URLs are malformed, not merely private.
_ALWAYS = frozenset({"userinfo", "host"})


class EgressRefusedError(RefuseInput, OSError):
    """A provider URL or address outside what this deployment calls.

    An OSError, so that aiohttp treats a refusal at connect time like a failed connect and
    keeps it as the cause. ``reason`` is a bounded label: an AddressClass, or ``scheme``,
    ``userinfo`` or ``host`` for a URL that cannot be a provider's. The message never
    repeats credentials from the URL.
    """

    def __init__(self, reason: str, detail: str) -> None:
        # The setting lifts the address and scheme rules only: naming it elsewhere misleads.
        hint = (
            ""
            if reason in _ALWAYS
            else f"; provider calls reach public https URLs only ({ALLOW_SETTING})"
        )
        super().__init__(detail + hint)
        self.reason = reason
        self.detail = detail


def classify(address: str | IPAddress) -> AddressClass | None:
    """Why a provider never lives at ``address``; None for a public address.

    An IPv6 address that carries an IPv4 one (mapped, NAT64, 6to4) is judged by the IPv4
    address it reaches. ValueError when ``address`` is not an IP address.
    """
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)
        if embedded is not None:
            return classify(embedded)
        ip = ipaddress.IPv6Address(ip.compressed.split("%")[0])  # the scope is not an address
        found = _first(ip, _IPV6_CLASSES)
        if found is None and ip not in _GLOBAL_UNICAST:
            return "reserved"
        return found
    return _first(ip, _IPV4_CLASSES)


def _first(
    ip: IPAddress,
    table: Iterable[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, AddressClass]],
) -> AddressClass | None:
    for network, label in table:
        if ip in network:
            return label
    return None


def classify_host(host: str) -> AddressClass | None:
    """``classify`` for a URL's host: an IP address, or a name known to be internal."""
    name = host.strip("[]").rstrip(".").lower()
    try:
        return classify(name)
    except ValueError:
        pass
    if name == "localhost" or name.endswith(".localhost"):  # RFC 6761: always loopback
        return "loopback"
    if name in _METADATA_NAMES:
        return "metadata"
    return None


def check_url(url: str, *, allow_private: bool) -> None:
    """Raise EgressRefusedError unless ``url`` may be a provider's.

    Always refused: credentials in the URL (they belong in the connection's credentials,
    and ``https://provider.example@10.0.0.1/`` is a classic disguise) and a host that is a
    number rather than a name or a canonical address (``2130706433`` resolves to 127.0.0.1).
    Unless ``allow_private``: any scheme but https, and a host that ``classify_host``
    refuses. A public-looking name is checked again on its addresses when it connects.
    """
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        raise EgressRefusedError("host", "not a URL") from None
    _check_parsed(parsed, allow_private=allow_private)


def _check_parsed(parsed: URL, *, allow_private: bool) -> None:
    """``check_url`` of a URL parsed already (aiohttp's own, for a request it starts)."""
    if parsed.raw_user is not None or parsed.raw_password is not None:
        raise EgressRefusedError("userinfo", "credentials in a provider URL are refused")
    schemes = ("https", "http") if allow_private else ("https",)
    if parsed.scheme not in schemes:
        raise EgressRefusedError("scheme", f"scheme {parsed.scheme or '(none)'!r} is refused")
    host = parsed.raw_host
    if not host:
        raise EgressRefusedError("host", "the URL has no host")
    numeric, label = _host_facts(host)
    if numeric:
        raise EgressRefusedError("host", f"{host} is neither a host name nor an IP address")
    if label is not None and not allow_private:
        raise EgressRefusedError(label, f"{host} is a {label.replace('_', '-')} address")


# Every provider call checks its URL's host (_check_request), and classifying one costs
# about 15 µs here (parsing it as an address, then up to 19 network tests): 4 % of
# outbound's CPU per push at 200/s (bench/README.md, "Ninth round"). A host's facts never
# change, and a deployment calls a few hosts: a bounded cache holds them.
_HOSTS_CACHED = 1024


@lru_cache(maxsize=_HOSTS_CACHED)
def _host_facts(host: str) -> tuple[bool, AddressClass | None]:
    """Whether ``host`` is a number that is no address (``_numeric_name``), and its class
    (``classify_host``)."""
    return _numeric_name(host), classify_host(host)


def _numeric_name(host: str) -> bool:
    """Not an IP address, yet a top-level label of digits or hex: inet_aton's shorthand
    (``127.1``, ``0x7f.1``), never a real domain's TLD."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        last = host.rstrip(".").rsplit(".", 1)[-1].lower()
        return last.isdigit() or last.startswith("0x")
    return False


def _refusal(label: AddressClass) -> EgressRefusedError:
    # No address in the message: the tenant reads it in dead letters, and where a name
    # resolves inside our network is not theirs to learn.
    return EgressRefusedError(label, f"the provider's address is {label.replace('_', '-')}")


class GuardedResolver(AbstractResolver):
    """A resolver that refuses a name when any of its addresses is not public.

    ``inner`` does the lookup: unless given, getaddrinfo in a thread (aiohttp's own
    default without aiodns), which holds nothing to close; that matters, since aiohttp
    closes only a resolver it made itself. Refusing on any address, not only the first,
    keeps the error the same whichever address would have been tried first.
    """

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner if inner is not None else ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        named = classify_host(host)
        if named is not None:
            raise _refusal(named)
        results = await self._inner.resolve(host, port, family)
        for result in results:
            label = _classify_or_reserved(result["host"])
            if label is not None:
                raise _refusal(label)
        return results

    async def close(self) -> None:
        await self._inner.close()


def _classify_or_reserved(address: str) -> AddressClass | None:
    try:
        return classify(address)
    except ValueError:  # not an address at all: nothing we can vouch for
        return "reserved"


def guarded_socket(addr_info: AddrInfoType) -> socket.socket:
    """aiohttp's socket factory: a socket for ``addr_info`` unless its address is refused.

    Called with the address the socket will connect to, after DNS and for literal IP hosts
    alike (aiohttp does not resolve those).
    """
    family, type_, proto, _, sockaddr = addr_info
    label = _classify_or_reserved(str(sockaddr[0]))
    if label is not None:
        raise _refusal(label)
    return socket.socket(family=family, type=type_, proto=proto)


async def _check_request(
    allow_private: bool,
    session: aiohttp.ClientSession,
    context: SimpleNamespace,
    params: aiohttp.TraceRequestStartParams,
) -> None:
    _check_parsed(params.url, allow_private=allow_private)


def provider_session(
    *, allow_private: bool, resolver: AbstractResolver | None = None
) -> aiohttp.ClientSession:
    """The session every provider call goes through (API clients, token refreshes).

    ``allow_private`` is the operator's ``CRMSYNC_ALLOW_PRIVATE_PROVIDER_URLS``: False in
    production, True where providers are simulators on 127.0.0.1. ``resolver`` replaces
    the DNS lookup (tests). Proxies from the environment are ignored: a proxy would connect
    on our behalf to an address this session never sees.
    """
    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(partial(_check_request, allow_private))
    if allow_private:
        connector = aiohttp.TCPConnector(resolver=resolver)
    else:
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(resolver), socket_factory=guarded_socket
        )
    return aiohttp.ClientSession(connector=connector, trace_configs=[trace], trust_env=False)
