"""A TCP proxy in front of a real server (PostgreSQL) that can stage an outage.

:meth:`TcpProxy.outage` cuts every open connection and refuses new ones for a while, the
way a database restart or a failover looks to its clients; then it forwards again. Bytes
pass through unchanged otherwise.

Usage::

    proxy = TcpProxy("127.0.0.1", pg_port)
    url = f"postgresql+psycopg2://user@127.0.0.1:{proxy.port}/db"
    proxy.outage(3.0)  # now: cut, and refuse for 3 s
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

BUFFER = 64 * 1024


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``target_host``:``target_port`` (module docstring)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._down_until = 0.0
        self.cuts = 0
        self.refused = 0
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def outage(self, seconds: float) -> None:
        """Cut every open connection now and refuse new ones for ``seconds``."""
        with self._lock:
            self._down_until = time.monotonic() + seconds
            victims, self._open = self._open, set()
            self.cuts += 1
        for sock in victims:
            _close(sock)

    def close(self) -> None:
        """Stop forwarding and close everything."""
        self._closed.set()
        _close(self._listener)
        self.outage(0)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                down = time.monotonic() < self._down_until
                if down:
                    self.refused += 1
            if down:
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(BUFFER):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(source)
                self._open.discard(sink)
            _close(source)
            _close(sink)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@pytest.fixture
def tcp_proxy() -> Iterator[type[TcpProxy]]:
    """Factory of :class:`TcpProxy`; all are closed at teardown."""
    made: list[TcpProxy] = []

    class _Tracked(TcpProxy):
        def __init__(self, target_host: str, target_port: int) -> None:
            super().__init__(target_host, target_port)
            made.append(self)

    yield _Tracked
    for proxy in made:
        proxy.close()
