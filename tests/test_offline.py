import importlib.util
import socket
import urllib.request
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def guard():
    path = Path(__file__).parent / "offline" / "sitecustomize.py"
    spec = importlib.util.spec_from_file_location("offline_guard", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_outbound_connections_are_refused(guard):
    with pytest.raises(ConnectionRefusedError, match="network access is blocked"):
        socket.create_connection(("192.0.2.1", 80), timeout=1)
    with pytest.raises(OSError, match="network access is blocked"):
        urllib.request.urlopen("http://example.com", timeout=1)


def test_loopback_is_allowed(guard):
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
    server.close()
