"""Imported at start-up by the Python of the server `make fuzz` drives (this folder is put first on
its PYTHONPATH): every connection or name lookup that would leave this machine is refused, so no
generated input can make the server reach out, whatever the outbound policy allows."""

from __future__ import annotations

import ipaddress
import socket

_connect, _connect_ex, _getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo


def _loopback(host) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _guarded_connect(sock, address):
    if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
        raise ConnectionRefusedError(f"fuzzing: refused a connection to {address[0]}")
    return _connect(sock, address)


def _guarded_connect_ex(sock, address):
    if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
        return 111  # ECONNREFUSED
    return _connect_ex(sock, address)


def _guarded_getaddrinfo(host, *args, **kwargs):
    if host is not None and not _loopback(host):
        raise socket.gaierror(socket.EAI_NONAME, f"fuzzing: no lookup of {host}")
    return _getaddrinfo(host, *args, **kwargs)


socket.socket.connect = _guarded_connect
socket.socket.connect_ex = _guarded_connect_ex
socket.getaddrinfo = _guarded_getaddrinfo
