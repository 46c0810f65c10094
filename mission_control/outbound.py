"""The one outbound policy: every address the server dials on a user's behalf
(connection tests, webhook deliveries, the built-in worker's HTTP and browser engines)
goes through here.

- http and https only; credentials inside the URL are refused (`url_problem`).
- The host is resolved once; every address it resolves to is checked and the request
  goes to the first one (pinned: a second DNS answer cannot point it elsewhere). The
  original name travels in the Host header and as the TLS server name.
- Link-local and cloud metadata addresses (numeric, octal/hex/decimal and IPv6-embedded
  forms included) are refused whatever the settings say. Loopback, private, shared and
  unspecified addresses are refused unless `settings.OUTBOUND_ALLOW_PRIVATE` is true
  (the default only with DEBUG or under tests) or the address is in
  `settings.OUTBOUND_ALLOWED_NETWORKS` (CIDRs).
- `settings.OUTBOUND_ALLOWED_HOSTS` names exact `host` or `host:port` targets that may
  be private (the built-in worker's demo catalogue, an internal worker): reachable by
  being named, not by opening a range.
- `GuardedTransport` applies all this to every request an httpx client sends, each
  redirect hop included, so callers that follow redirects stay inside the policy.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Metadata services outside 169.254.0.0/16 (AWS IPv6, Alibaba, Oracle).
METADATA_ADDRESSES = {
    ipaddress.ip_address("fd00:ec2::254"),
    ipaddress.ip_address("100.100.100.200"),
    ipaddress.ip_address("192.0.0.192"),
}
METADATA_HOSTS = {"metadata", "metadata.google.internal", "metadata.goog"}
# IPv6 prefixes that embed an IPv4 address in their last 32 bits (NAT64).
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
SCHEMES = ("http", "https")


class Refused(httpx.TransportError):
    """The target is not allowed (scheme, address or name). An httpx error, so a
    client's usual `except httpx.HTTPError` treats it as a failed request."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class Unresolved(Refused):
    """The name does not resolve (here): nothing to dial, nothing was dialed."""


@dataclass(frozen=True)
class Policy:
    allow_private: bool
    networks: tuple[Network, ...] = ()
    hosts: frozenset[str] = frozenset()

    def named(self, host: str, port: int) -> bool:
        return host in self.hosts or f"{host}:{port}" in self.hosts


def current_policy(*, allow_private: bool | None = None) -> Policy:
    """The policy of the settings (read at each call: tests may override them)."""
    networks = tuple(
        ipaddress.ip_network(n.strip(), strict=False)
        for n in getattr(settings, "OUTBOUND_ALLOWED_NETWORKS", [])
        if n.strip()
    )
    hosts = frozenset(
        h.strip().lower() for h in getattr(settings, "OUTBOUND_ALLOWED_HOSTS", []) if h.strip()
    )
    if allow_private is None:
        allow_private = bool(getattr(settings, "OUTBOUND_ALLOW_PRIVATE", False))
    return Policy(allow_private, networks, hosts)


def _as_ipv4(ip: IPAddress) -> IPAddress:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if int(ip) >> 32 == 0 and int(ip) > 1:  # deprecated IPv4-compatible ::a.b.c.d
            return ipaddress.IPv4Address(int(ip))
        if ip.sixtofour is not None:
            return ip.sixtofour
        if any(ip in net for net in _NAT64):
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if ip.teredo is not None:
            return ip.teredo[1]
    return ip


def check_address(ip: IPAddress, policy: Policy, *, named: bool = False) -> None:
    """Raise Refused unless `ip` may be dialed under `policy`."""
    ip = _as_ipv4(ip)
    if ip in METADATA_ADDRESSES or ip.is_link_local:
        raise Refused("link-local or cloud metadata address")
    if ip.is_multicast or ip.is_unspecified or (ip.is_reserved and not ip.is_loopback):
        raise Refused("address cannot be dialed")
    if ip.is_global or policy.allow_private or named:
        return
    if not any(ip.version == net.version and ip in net for net in policy.networks):
        raise Refused("private or loopback address")


def resolve(host: str, port: int, policy: Policy | None = None) -> IPAddress:
    """Resolve `host` once and check every address; return the one to connect to.

    getaddrinfo also parses numeric forms (2852039166, 0xa9.0xfe.0xa9.0xfe,
    169.254.43518, 0177.0.0.1), so they are checked as the addresses they are."""
    policy = policy or current_policy()
    name = host.strip("[]").rstrip(".").lower()
    if not name:
        raise Refused("no host")
    if name in METADATA_HOSTS:
        raise Refused("cloud metadata host")
    try:
        infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError):
        raise Unresolved("cannot resolve host") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addresses:
        raise Unresolved("cannot resolve host")
    named = policy.named(name, port)
    for ip in addresses:
        check_address(ip, policy, named=named)
    return addresses[0]


def default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def url_problem(url: str) -> str | None:
    """Why `url` can never be dialed (scheme, host, credentials), without resolving it;
    None when its form is acceptable. For validators: say what is wrong early."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return "URL inválida."
    if parts.scheme.lower() not in SCHEMES:
        return "Somente URLs http ou https."
    if not parts.hostname:
        return "A URL não tem host."
    if parts.username or parts.password:
        return "Não coloque credenciais na URL; use o campo de segredo."
    return None


def check_url(url: str, policy: Policy | None = None) -> IPAddress:
    """Raise Refused unless `url` may be dialed now; return the pinned address."""
    problem = url_problem(url)
    if problem:
        raise Refused(problem)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return resolve(parts.hostname or "", parts.port or default_port(scheme), policy)


def netloc(ip: IPAddress, port: int | None) -> str:
    host = f"[{ip}]" if ip.version == 6 else str(ip)
    return f"{host}:{port}" if port else host


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The process's one TLS context (the system's and httpx's trust settings), shared
    by every client the server builds: building one loads the CA bundle, about 20 ms of
    CPU, which each new client (a batch of webhook deliveries, an engine's pooled
    client) paid on its first use before this."""
    return httpx.create_ssl_context()


class GuardedTransport(httpx.BaseTransport):
    """An httpx transport that checks and pins every request (each redirect hop is a
    request of its own). `inner` is the real transport (tests pass a mock).

    `via_proxy`: the inner transport goes through a proxy, which resolves names itself;
    a name that does not resolve here is passed on unpinned (the proxy's own network
    answers for it); every name that does resolve is checked and pinned as usual."""

    def __init__(
        self,
        inner: httpx.BaseTransport | None = None,
        *,
        policy: Policy | None = None,
        via_proxy: bool = False,
        **transport_kwargs: Any,
    ) -> None:
        self._inner = inner or httpx.HTTPTransport(**{"verify": tls_context(), **transport_kwargs})
        self._policy = policy
        self._via_proxy = via_proxy

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme.lower()
        if scheme not in SCHEMES:
            raise Refused(f"scheme {scheme or '(none)'!r} is not http or https")
        if url.username or url.password:
            raise Refused("credentials inside the URL")
        try:
            ip = resolve(url.host, url.port or default_port(scheme), self._policy)
        except Unresolved:
            if self._via_proxy:
                return self._inner.handle_request(request)
            raise
        # A copy goes to the checked address; the caller's request (and so the
        # response's URL) keeps the name, which the Host header carries.
        extensions = dict(request.extensions)
        if scheme == "https":
            extensions["sni_hostname"] = url.host
        pinned = httpx.Request(
            request.method,
            url.copy_with(host=str(ip)),
            headers=request.headers,
            stream=request.stream,
            extensions=extensions,
        )
        return self._inner.handle_request(pinned)

    def close(self) -> None:
        self._inner.close()


def guarded_client(
    *, follow_redirects: bool = False, policy: Policy | None = None, **kwargs: Any
) -> httpx.Client:
    """An httpx.Client whose every request (and redirect) obeys the policy. No proxy
    from the environment: the policy must see the real target."""
    transport = kwargs.pop("transport", None)
    return httpx.Client(
        transport=GuardedTransport(transport, policy=policy),
        follow_redirects=follow_redirects,
        trust_env=False,
        **kwargs,
    )
