"""The one outbound policy: every connection Perfpilot opens to something an operator configured
(collectors, alert channels, scaling executors, the benchmark, "Test connection") is checked here.

Rules, in this order (docs/operations.md, "Security model"):

1. Link-local addresses (169.254.0.0/16, fe80::/10), cloud metadata addresses (169.254.169.254,
   fd00:ec2::254, 100.100.100.200), the unspecified address and metadata host names
   (metadata.google.internal, …) are always refused; no setting allows them.
2. An address in PERFPILOT_OUTBOUND_ALLOW is allowed.
3. An address in PERFPILOT_OUTBOUND_DENY is refused.
4. Everything else is allowed: private, loopback and Unix-socket targets are the point of a
   self-hosted control plane.

Both settings are comma-separated CIDRs or keywords: ``loopback``, ``private`` (RFC 1918, CGNAT,
IPv6 unique-local), ``unix`` (Unix sockets) and ``all`` (every address and Unix sockets); so
``DENY=all`` with ``ALLOW=10.1.0.0/16`` allows one network only.

A name is resolved and *every* address it resolves to must pass; the connection is then made to
an address that was checked (no second lookup a rebinding DNS server could answer differently):
`create_connection` for sockets, `http_open` for urllib, `pin_urllib3` for the Kubernetes and
Docker clients, `psycopg_params` (libpq's ``hostaddr``), `redis_checked` for redis-py and kombu.
Redirects are followed only where asked, and each hop goes through the same check.
"""

from __future__ import annotations

import contextlib
import http
import http.client
import ipaddress
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

import redis
from django.conf import settings

from core.errors import InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_ALWAYS_REFUSED: tuple[tuple[Network, str], ...] = tuple(
    (ipaddress.ip_network(cidr), why)
    for cidr, why in (
        ("169.254.169.254/32", "cloud metadata"),
        ("fd00:ec2::254/128", "cloud metadata"),
        ("100.100.100.200/32", "cloud metadata"),
        ("169.254.0.0/16", "link-local"),
        ("fe80::/10", "link-local"),
        ("0.0.0.0/8", "unspecified"),
        ("::/128", "unspecified"),
    )
)
# Names that reach a cloud's metadata service whatever they resolve to from here.
METADATA_NAMES = frozenset(
    {"metadata.google.internal", "metadata.goog", "metadata", "instance-data", "instance-data.ec2.internal"}
)
KEYWORDS: dict[str, tuple[str, ...]] = {
    "loopback": ("127.0.0.0/8", "::1/128"),
    "private": ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7"),
    "all": ("0.0.0.0/0", "::/0"),
}


class OutboundRefused(Exception):
    """The policy does not allow this connection. Deliberately not an OSError, so no library takes it for a
    network failure to retry or wrap; callers turn it into their own error (CollectorError, …)."""


class RefusedAddress(InvalidInput):
    """An address refused when it is saved: a 422 naming the field (`refused_input`)."""

    status_code = 422


def refused_input(exc: OutboundRefused, *, field: str) -> RefusedAddress:
    return RefusedAddress(str(exc), field=field)


@dataclass(frozen=True)
class Rules:
    networks: tuple[Network, ...] = ()
    unix: bool = False

    def matches(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self.networks)


def parse_rules(items: list[str] | tuple[str, ...], *, setting: str) -> Rules:
    """The CIDRs and keywords of one setting; ValueError naming the setting and the item otherwise."""
    networks: list[Network] = []
    unix = False
    for item in items:
        word = item.strip().lower()
        if not word:
            continue
        if word == "unix":
            unix = True
            continue
        if word == "all":
            unix = True
        try:
            networks.extend(ipaddress.ip_network(cidr) for cidr in KEYWORDS.get(word, (item.strip(),)))
        except ValueError as exc:
            raise ValueError(
                f"{setting}: {item!r} is not a CIDR (10.0.0.0/8, 2001:db8::/32) or one of "
                f"{', '.join([*KEYWORDS, 'unix'])} ({exc})"
            ) from exc
    return Rules(networks=tuple(networks), unix=unix)


@lru_cache(maxsize=8)
def _rules(deny: tuple[str, ...], allow: tuple[str, ...]) -> tuple[Rules, Rules]:
    return (
        parse_rules(deny, setting="PERFPILOT_OUTBOUND_DENY"),
        parse_rules(allow, setting="PERFPILOT_OUTBOUND_ALLOW"),
    )


def policy() -> tuple[Rules, Rules]:
    """(deny, allow) from the settings as they are now (tests and operators may change them)."""
    return _rules(tuple(settings.OUTBOUND_DENY), tuple(settings.OUTBOUND_ALLOW))


def _address(value: str | IPAddress) -> IPAddress:
    ip = ipaddress.ip_address(value.split("%", 1)[0] if isinstance(value, str) else value)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # ::ffff:169.254.169.254 is 169.254.169.254
    return ip


def check_ip(value: str | IPAddress, *, what: str = "The address") -> str:
    """The address as text if the policy allows connecting to it; OutboundRefused otherwise."""
    ip = _address(value)
    for network, why in _ALWAYS_REFUSED:
        if ip.version == network.version and ip in network:
            raise OutboundRefused(f"{what} is {ip}, a {why} address; Perfpilot never connects there.")
    deny, allow = policy()
    if allow.matches(ip):
        return str(ip)
    if deny.matches(ip):
        raise OutboundRefused(f"{what} is {ip}, which PERFPILOT_OUTBOUND_DENY refuses.")
    return str(ip)


def check_unix(path: str, *, what: str = "The address") -> None:
    deny, allow = policy()
    if deny.unix and not allow.unix:
        raise OutboundRefused(f"{what} is a Unix socket ({path}), which PERFPILOT_OUTBOUND_DENY refuses.")


def _literal(host: str) -> IPAddress | None:
    try:
        return _address(host.strip("[]"))
    except ValueError:
        return None


def check_name(host: str, *, what: str = "The address") -> None:
    if host.lower().rstrip(".") in METADATA_NAMES:
        raise OutboundRefused(f"{what} names {host}, a cloud metadata service; Perfpilot never connects there.")


def resolve(host: str, port: int | None, *, what: str = "The address") -> list[str]:
    """Every address `host` resolves to, each checked; OutboundRefused if any one is refused.

    socket.gaierror (an OSError) when the name does not resolve: callers report it as unreachable.
    """
    check_name(host, what=what)
    literal = _literal(host)
    if literal is not None:
        return [check_ip(literal, what=what)]
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise OSError(f"{host} resolves to no address")
    return [check_ip(address, what=f"{what} ({host})") for address in addresses]


def create_connection(
    address: tuple[str, int],
    timeout: float | object | None = socket._GLOBAL_DEFAULT_TIMEOUT,  # type: ignore[attr-defined]
    source_address: tuple[str, int] | None = None,
    *,
    socket_options=None,
    what: str = "The address",
) -> socket.socket:
    """socket.create_connection to a checked address of `address`'s host (tried in resolution order)."""
    host, port = address
    error: OSError | None = None
    for ip in resolve(host, port, what=what):
        try:
            sock = socket.create_connection((ip, port), timeout, source_address)  # type: ignore[arg-type]
        except OSError as exc:
            error = exc
            continue
        for option in socket_options or ():
            sock.setsockopt(*option)
        return sock
    raise error or OSError(f"cannot connect to {host}")


def check_host_at_save(host: str | None, *, what: str) -> None:
    """Save-time check of a host name or address: refused literals and names that resolve to a refused
    address now are refused; a name that does not resolve yet is accepted (checked again at connect time)."""
    if not host:
        return
    if host.startswith("/"):
        check_unix(host, what=what)
        return
    with contextlib.suppress(OSError):
        resolve(host, None, what=what)


def check_url_at_save(url: str, *, what: str) -> None:
    """Save-time check of an http(s)://, redis://, rediss://, tcp://, unix:// or postgresql:// URL."""
    split = urlsplit(url)
    if split.scheme in ("unix", "http+unix", "redis+socket") or (split.scheme == "redis" and not split.hostname):
        check_unix(split.path or url, what=what)
        return
    try:
        host = split.hostname
    except ValueError:
        return  # not parsable: the caller's own checks refuse it
    check_host_at_save(host, what=what)


# --- HTTP through urllib ------------------------------------------------------------------------


def _checked_socket(address, timeout=socket._GLOBAL_DEFAULT_TIMEOUT, source_address=None):  # type: ignore[attr-defined]
    return create_connection(address, timeout, source_address, what="The URL's host")


class _CheckedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = _checked_socket


class _CheckedHTTPSConnection(http.client.HTTPSConnection):
    """TLS still checks the certificate against the URL's name: only the TCP connect is pinned."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = _checked_socket


class _HTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req):
        return self.do_open(_CheckedHTTPConnection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req):
        return self.do_open(_CheckedHTTPSConnection, req, context=self._context)


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follows http(s) redirects only; each hop connects through the checked handlers above."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urlsplit(newurl).scheme not in ("http", "https"):
            raise OutboundRefused(f"The URL redirects to a {urlsplit(newurl).scheme or 'relative'} URL; not followed.")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A 3xx is the answer (an HTTPError the caller reports), never a second request."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def _opener(*, follow_redirects: bool) -> urllib.request.OpenerDirector:
    # Built by hand rather than build_opener(): no proxies from the environment (they would be
    # the address connected to, unchecked), no file:// or ftp:// handlers.
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.UnknownHandler(),
        _HTTPHandler(),
        _HTTPSHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        _CheckedRedirects() if follow_redirects else _NoRedirects(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


def http_open(request: urllib.request.Request | str, *, timeout: float, follow_redirects: bool = False):
    """urllib.request.urlopen through the policy. Raises OutboundRefused, urllib.error.HTTPError (any status
    that is not 2xx, including a 3xx when redirects are not followed), urllib.error.URLError, OSError."""
    return _opener(follow_redirects=follow_redirects).open(request, timeout=timeout)


def http_error_head(exc: urllib.error.HTTPError, *, limit: int) -> str:
    """The first `limit` characters of an error answer's body (empty when it cannot be read), and the
    answer closed: enough to say why a server refused, never a whole body held in memory."""
    try:
        return exc.read(limit).decode(errors="replace") if exc.fp else ""
    except (OSError, http.client.HTTPException):
        return ""
    finally:
        exc.close()


def retry_after_seconds(header: str | None) -> float | None:
    """A Retry-After header's delay in seconds, or None when absent or an HTTP date (rare from the
    endpoints we call; the caller's back-off applies instead)."""
    if not header:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        return None


def http_status_text(status: int) -> str:
    """A short, sanitised reason for an HTTP answer: the code and its standard phrase, never what the server
    sent (its reason phrase and body are the server's text and may carry anything)."""
    try:
        return f"{status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


# --- urllib3 (the Kubernetes client, requests in the Docker SDK) ---------------------------------


def pin_urllib3(pool_manager) -> None:
    """Make every connection of this urllib3 PoolManager go through create_connection."""
    from urllib3 import connectionpool
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

    def new_conn(self) -> socket.socket:
        try:
            return create_connection(
                (self._dns_host, self.port),
                self.timeout,
                self.source_address,
                socket_options=self.socket_options,
                what="The API server's address",
            )
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        except TimeoutError as exc:
            raise ConnectTimeoutError(self, f"Connection to {self.host} timed out.") from exc
        except OSError as exc:
            raise NewConnectionError(self, f"Failed to establish a new connection: {exc}") from exc

    http_conn = type("CheckedHTTPConnection", (HTTPConnection,), {"_new_conn": new_conn})
    https_conn = type("CheckedHTTPSConnection", (HTTPSConnection,), {"_new_conn": new_conn})
    pool_manager.pool_classes_by_scheme = {
        "http": type("CheckedHTTPConnectionPool", (connectionpool.HTTPConnectionPool,), {"ConnectionCls": http_conn}),
        "https": type(
            "CheckedHTTPSConnectionPool", (connectionpool.HTTPSConnectionPool,), {"ConnectionCls": https_conn}
        ),
    }
    pool_manager.clear()


# --- PostgreSQL (libpq) ---------------------------------------------------------------------------


def psycopg_params(params: dict, *, what: str = "The database host") -> dict:
    """Connection parameters whose every host is checked and pinned with libpq's `hostaddr`.

    A host starting with "/" (or none at all: libpq's default) is a Unix socket directory. An explicit
    hostaddr in the URL is what libpq connects to, so that is what is checked.
    """
    import os

    params = dict(params)
    hosts = (params.get("host") or os.environ.get("PGHOST") or "").split(",")
    given = [a for a in (params.get("hostaddr") or "").split(",") if a]
    ports = (str(params.get("port") or "")).split(",")
    addresses = []
    for index, host in enumerate(hosts):
        if index < len(given):
            addresses.append(check_ip(given[index], what=what))
        elif not host or host.startswith("/") or host.startswith("@"):
            check_unix(host or "the default socket", what=what)
            addresses.append("")
        else:
            port_text = ports[index] if index < len(ports) else ports[0]
            port = int(port_text) if port_text.isdigit() else 5432
            addresses.append(resolve(host, port, what=what)[0])
    if any(addresses):
        if not all(addresses):
            raise OutboundRefused(f"{what}: mixing Unix sockets and TCP hosts in one URL is not supported.")
        params["hostaddr"] = ",".join(addresses)
    return params


# --- Redis (redis-py and kombu) -------------------------------------------------------------------


class RedisRefused(OutboundRefused, redis.ConnectionError):
    """A refusal inside redis-py or kombu: also a redis ConnectionError, so their callers' handling of a server
    that cannot be reached applies (redis_error_message names the refusal)."""


def _redis_refusal(check, *args, **kwargs):
    try:
        return check(*args, **kwargs)
    except RedisRefused:
        raise
    except OutboundRefused as exc:
        raise RedisRefused(str(exc)) from exc


class CheckedConnection(redis.Connection):
    """redis-py's TCP connection, connecting to a checked address of its host."""

    def _connect(self):
        ip = _redis_refusal(resolve, self.host, self.port, what="The Redis host")[0]
        host, self.host = self.host, ip
        try:
            return super()._connect()
        finally:
            self.host = host  # TLS (below) checks the certificate against the name


class CheckedSSLConnection(redis.SSLConnection, CheckedConnection):
    """SSLConnection._connect → CheckedConnection._connect → Connection._connect, then TLS on the name."""


class CheckedUnixConnection(redis.UnixDomainSocketConnection):
    def _connect(self):
        _redis_refusal(check_unix, self.path, what="The Redis address")
        return super()._connect()


def redis_connection_class(cls: type) -> type:
    """The checked counterpart of a redis-py connection class."""
    if issubclass(cls, (CheckedConnection, CheckedUnixConnection)):
        return cls
    if issubclass(cls, redis.SSLConnection):
        return CheckedSSLConnection
    if issubclass(cls, redis.UnixDomainSocketConnection):
        return CheckedUnixConnection
    return CheckedConnection


def redis_checked(client: redis.Redis) -> redis.Redis:
    """The client, its pool now opening only checked connections."""
    pool = client.connection_pool
    pool.connection_class = redis_connection_class(pool.connection_class)
    return client
