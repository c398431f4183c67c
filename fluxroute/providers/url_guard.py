"""Where fluxroute may fetch images from: URL forms, and addresses checked where each connection is opened."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import anyio
import httpcore
import httpx

from fluxroute.errors import UnsafeURL
from fluxroute.settings import Settings

__all__ = [
    "AddressPolicy",
    "GuardedNetwork",
    "check_url",
    "guarded_client",
    "is_public",
    "url_problem",
    "without_credentials",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
DEFAULT_PORTS = {"http": 80, "https": 443}
RESOLVE_TIMEOUT_S = 10.0
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def url_problem(url: str) -> str | None:
    """Why `url` is not a plain http(s) URL with a host and no credentials; None when it is one. Backslashes,
    whitespace and control characters are refused too: parsers disagree on where such a URL's host is."""
    if any(c.isspace() or c == "\\" or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        return "contains whitespace, a control character or a backslash"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in 0-65535
    except ValueError:
        return "is not a well-formed URL"
    if parts.scheme not in DEFAULT_PORTS:
        return "only http(s) URLs are fetched"
    if "@" in parts.netloc:
        return "carries credentials (user:password@host); put none in image URLs"
    if not parts.hostname:
        return "has no host"
    return None


def without_credentials(url: str) -> str:
    """`url` with the credentials it may carry (user:password@) masked, for messages."""
    if not url.startswith(("http://", "https://")):
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()


def is_public(address: IPAddress) -> bool:
    """Whether `address` is globally reachable unicast; IPv6 forms that carry an IPv4 address (mapped, 6to4,
    NAT64) are judged by that address too."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None and not is_public(embedded):
            return False
    return address.is_global and not address.is_multicast


def _host_port(entry: str, default_ports: Iterable[int]) -> set[tuple[str, int]]:
    parts = urlsplit("//" + entry)
    if not parts.hostname:
        return set()
    return {(parts.hostname, parts.port)} if parts.port else {(parts.hostname, port) for port in default_ports}


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses may be fetched: public ones; every one with `allow_private`; and any address of the
    exact (host, port) pairs in `trusted` (the providers' own hosts, which a test or a gateway may put on a
    private network). A trusted host vouches only for itself, never for where it redirects."""

    allow_private: bool = False
    trusted: frozenset[tuple[str, int]] = frozenset()

    @classmethod
    def for_inputs(cls, settings: Settings) -> AddressPolicy:
        """The caller's image URLs: public addresses only, unless `allow_private_urls`."""
        return cls(allow_private=settings.allow_private_urls)

    @classmethod
    def for_results(cls, settings: Settings) -> AddressPolicy:
        """Provider result URLs: also the hosts of `trusted_hosts`, `krea_base_url` and `fal_base_url`."""
        trusted: set[tuple[str, int]] = set()
        for entry in settings.trusted_hosts:
            trusted |= _host_port(entry, DEFAULT_PORTS.values())
        for base in (settings.krea_base_url, settings.fal_base_url):
            parts = urlsplit(base)
            if parts.hostname:
                trusted.add((parts.hostname, parts.port or DEFAULT_PORTS.get(parts.scheme, 443)))
        return cls(allow_private=settings.allow_private_urls, trusted=frozenset(trusted))

    def trusts(self, host: str, port: int) -> bool:
        return self.allow_private or (host.lower(), port) in self.trusted

    async def addresses(self, host: str, port: int) -> list[IPAddress]:
        """Every address `host` resolves to (numeric forms such as 2130706433 or 0x7f000001 included, as the
        system resolver reads them), each one allowed. Resolved off the event loop.

        Raises:
            UnsafeURL: an address is not public and the policy does not allow it.
            OSError: the host does not resolve (socket.gaierror), or not in time (TimeoutError).
        """
        try:
            infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except UnicodeError as exc:  # a name IDNA cannot encode
            raise socket.gaierror(socket.EAI_NONAME, f"not a host name ({exc})") from None
        found = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
        if not self.trusts(host, port):
            for address in found:
                if not is_public(address):
                    what = str(address) if host == str(address) else f"{host} resolves to {address},"
                    raise UnsafeURL(
                        f"{what} a non-public address (set allow_private_urls = true to allow such addresses)"
                    )
        return found


async def check_url(url: str, policy: AddressPolicy) -> None:
    """Refuse `url` unless it is a plain http(s) URL whose host resolves only to addresses `policy` allows.

    Raises:
        UnsafeURL: why, in words that follow the URL (e.g. "resolves to 10.0.0.1, a non-public address").
    """
    problem = url_problem(url)
    if problem is not None:
        raise UnsafeURL(problem)
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        with anyio.fail_after(RESOLVE_TIMEOUT_S):
            await policy.addresses(host, parts.port or DEFAULT_PORTS[parts.scheme])
    except TimeoutError:
        raise UnsafeURL(f"its host {host} did not resolve within {RESOLVE_TIMEOUT_S:g} s") from None
    except OSError:
        raise UnsafeURL(f"its host {host} does not resolve") from None


class GuardedNetwork(httpcore.AsyncNetworkBackend):
    """httpcore's network with the address check where the socket is opened: the host of each new connection
    is resolved here, every address it resolves to is checked, and the socket is opened to one of those very
    addresses. So the check and the connection cannot disagree (a DNS answer that changes in between changes
    nothing), every redirect hop to a new origin is checked the same way, and TLS is untouched: the
    certificate is verified for the host name, which SNI and the Host header still carry."""

    def __init__(self, policy: AddressPolicy) -> None:
        self.policy = policy
        self._network = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            with anyio.fail_after(timeout):
                addresses = await self.policy.addresses(host, port)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} took over {timeout} s") from exc
        except OSError as exc:
            raise httpcore.ConnectError(f"{host} does not resolve ({exc})") from exc
        failure: Exception = httpcore.ConnectError(f"{host} resolves to no address")
        for address in addresses:
            try:
                return await self._network.connect_tcp(str(address), port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise UnsafeURL(f"{path}: image URLs are fetched over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._network.sleep(seconds)


def guarded_client(policy: AddressPolicy, *, timeout: httpx.Timeout) -> httpx.AsyncClient:
    """An httpx client that connects only where `policy` allows (see GuardedNetwork). It follows no redirects
    by itself (callers check each hop's URL form) and ignores proxy environment variables: a proxy would
    connect on our behalf, out of the guard's sight.

    httpx takes no network backend of its own, so its transport's connection pool is replaced by an equal
    one built on GuardedNetwork; if httpx ever moves that pool, this fails loudly instead of fetching
    unguarded.
    """
    transport = httpx.AsyncHTTPTransport()
    if not isinstance(getattr(transport, "_pool", None), httpcore.AsyncConnectionPool):
        raise RuntimeError("this httpx version keeps no connection pool where the address guard expects it")
    transport._pool = httpcore.AsyncConnectionPool(  # httpx's default limits
        ssl_context=httpx.create_ssl_context(),
        max_connections=100,
        max_keepalive_connections=20,
        keepalive_expiry=5.0,
        network_backend=GuardedNetwork(policy),
    )
    return httpx.AsyncClient(transport=transport, timeout=timeout, trust_env=False)
