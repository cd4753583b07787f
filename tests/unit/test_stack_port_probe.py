"""The demo's port probe (local/processes.py port_free) answers as the servers bind: a port whose last
connections wait in TIME_WAIT (a demo stopped a moment ago) is free, a listening port is not."""
import socket

import pytest

from local.processes import LOOPBACK, port_free

pytestmark = pytest.mark.unit


def _listener() -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as http.server, gunicorn and the simulator do
    s.bind((LOOPBACK, 0))
    s.listen()
    return s


def _time_wait_port() -> int:
    """A port with a connection in TIME_WAIT on it: the server side closes first, as an HTTP server does."""
    server = _listener()
    port = server.getsockname()[1]
    client = socket.create_connection((LOOPBACK, port))
    conn, _ = server.accept()
    conn.close()  # the server's end closes first: its side, on `port`, goes to TIME_WAIT
    client.recv(1)
    client.close()
    server.close()
    return port


def test_a_port_in_time_wait_is_free_and_a_server_can_bind_it_at_once():
    port = _time_wait_port()
    with socket.socket() as plain:  # the old probe: no SO_REUSEADDR, refused for about 60 s
        with pytest.raises(OSError):
            plain.bind((LOOPBACK, port))
    assert port_free(port)
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind((LOOPBACK, port))
        again.listen()


def test_a_listening_port_is_not_free():
    with _listener() as server:
        assert not port_free(server.getsockname()[1])
    with socket.socket() as wildcard:  # a listener on every address holds the loopback port too
        wildcard.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        wildcard.bind(("0.0.0.0", 0))
        wildcard.listen()
        assert not port_free(wildcard.getsockname()[1])
