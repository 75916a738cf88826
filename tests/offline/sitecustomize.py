"""Refuse every outbound network connection except to this machine.

`make test` puts this folder on PYTHONPATH, so pytest and every notebook
kernel it starts import it at start-up: a lab that tried to download
anything fails loudly instead of depending on the network.
"""
import ipaddress
import socket

_connect, _connect_ex, _getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo


class NetworkBlocked(ConnectionRefusedError):
    pass


def _local(address):
    if not isinstance(address, tuple):  # AF_UNIX paths and the like
        return True
    host = address[0]
    if host in ("localhost", "", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _check(address):
    if not _local(address):
        raise NetworkBlocked(f"network access is blocked while testing: tried to reach {address!r}")


def connect(self, address):
    _check(address)
    return _connect(self, address)


def connect_ex(self, address):
    _check(address)
    return _connect_ex(self, address)


def getaddrinfo(host, *args, **kwargs):
    if host is not None and not _local((host if isinstance(host, str) else host.decode(),)):
        raise NetworkBlocked(f"network access is blocked while testing: tried to resolve {host!r}")
    return _getaddrinfo(host, *args, **kwargs)


socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
