"""Loaded at start by any Python process whose PYTHONPATH holds this folder (tests pass it to
the processes they start): with STREAMFORGE_NETWORK_LOG set, every connection or name lookup
that is not to loopback fails and is appended to that file, so a test sees what the process
tried even when the code under test caught the error. Unix-domain sockets are not network."""

import os
import socket

_LOG = os.environ.get("STREAMFORGE_NETWORK_LOG")
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}

if _LOG:
    _connect, _connect_ex, _lookup = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

    def _check(host):
        if str(host) in _LOOPBACK:
            return
        with open(_LOG, "a", encoding="utf-8") as log:
            log.write(f"{host}\n")
        raise OSError(f"network access in an offline test: {host}")

    def _guarded_connect(self, address):
        if self.family != socket.AF_UNIX:
            _check(address[0])
        return _connect(self, address)

    def _guarded_connect_ex(self, address):
        if self.family != socket.AF_UNIX:
            _check(address[0])
        return _connect_ex(self, address)

    def _guarded_lookup(host, *args, **kwargs):
        _check(host)
        return _lookup(host, *args, **kwargs)

    socket.socket.connect = _guarded_connect
    socket.socket.connect_ex = _guarded_connect_ex
    socket.getaddrinfo = _guarded_lookup
