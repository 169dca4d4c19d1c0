"""Offline proof: what runs inside ``no_network()`` may not open a network connection or look
up a host name; every attempt is recorded (even one the code under test catches) and fails
the test. Unix-domain sockets are not network; loopback is allowed only when asked for."""

from __future__ import annotations

import socket
from contextlib import contextmanager
from typing import Any, Iterator

import pytest

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@contextmanager
def no_network(allow_loopback: bool = False) -> Iterator[list[str]]:
    attempts: list[str] = []
    real_connect, real_connect_ex, real_lookup = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

    def check(host: Any) -> None:
        if allow_loopback and str(host) in _LOOPBACK:
            return
        attempts.append(str(host))
        raise OSError(f"network access in an offline test: {host}")

    def connect(self: socket.socket, address: Any) -> Any:
        if self.family != socket.AF_UNIX:
            check(address[0])
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> Any:
        if self.family != socket.AF_UNIX:
            check(address[0])
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        check(host)
        return real_lookup(host, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", connect)
        patch.setattr(socket.socket, "connect_ex", connect_ex)
        patch.setattr(socket, "getaddrinfo", getaddrinfo)
        yield attempts
    assert not attempts, f"network access attempted: {attempts}"
