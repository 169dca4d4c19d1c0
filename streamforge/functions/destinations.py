"""Where a webhook may send: public addresses only, unless the operator says otherwise.

A webhook URL is a server-side request the dispatcher makes with its own identity and network
position, so a URL pointing inside (the metadata server at 169.254.169.254, a VPC address,
the instance's own loopback) could read or poke what only Google Cloud's side can reach.

- never: link-local (169.254.0.0/16 with the metadata server, fe80::/10), unspecified
  (all zeros, IPv4 or IPv6), multicast, reserved and broadcast addresses, the metadata server's names;
- only with ``"allow_private": true`` on the webhook: private, shared (100.64.0.0/10),
  unique-local and loopback addresses — a receiver reached through a VPC connector;
- loopback also when the URL names it literally (``127.0.0.1``, ``localhost``, ``::1``): a
  receiver on the same machine, for local runs and tests.

The URL's host is checked when the webhooks are read (a literal address in any spelling
``inet_aton`` accepts: ``2852039166``, ``0xa9fea9fe``, ``0251.254.169.254``), and every address
its name resolves to is checked again at each delivery, which then connects to the address it
checked: a name that resolves elsewhere later (DNS rebinding) is refused then.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Callable

__all__ = ["LOOPBACK_HOSTS", "DestinationRefused", "check_address", "check_host", "resolve_checked"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[..., list]

#: URL hosts that name this machine: allowed (loopback only), and the only ones ``http://`` may use.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
#: The metadata server's names (it is also 169.254.169.254, refused as link-local).
_METADATA_NAMES = frozenset({"metadata.google.internal", "metadata", "metadata.goog"})


class DestinationRefused(ValueError):
    """A webhook's host is, or resolves to, an address it may not use; the message says which and why."""


def check_address(address: IPAddress, *, allow_private: bool, loopback_named: bool = False) -> None:
    """Raises DestinationRefused when ``address`` is not allowed (see the module docstring)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:169.254.169.254 is 169.254.169.254
    never = (
        "unspecified"
        if address.is_unspecified
        else "link-local, the metadata server's range"
        if address.is_link_local
        else "multicast"
        if address.is_multicast
        else "reserved"
        if address.is_reserved
        else None
    )  # the reserved 240/4 block holds the broadcast address
    if never:
        raise DestinationRefused(f"{address} is {never}: never a webhook")
    if address.is_loopback and (loopback_named or allow_private):
        return
    if not address.is_global and not allow_private:
        kind = "loopback" if address.is_loopback else "private"
        raise DestinationRefused(
            f'{address} is a {kind} address: set "allow_private": true on the webhook '
            "if the receiver really is inside your network"
        )


def literal_address(host: str) -> IPAddress | None:
    """The address ``host`` spells, in any form the resolver would accept, or None for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefxABCDEFX." for c in host) and host[0].isdigit():
        try:  # the forms only inet_aton reads: 2852039166, 0xa9fea9fe, 0251.0376.0251.0376, 169.254.43518
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def check_host(host: str, *, allow_private: bool) -> None:
    """The check made when the webhooks are read: the metadata server's names, and literal addresses."""
    name = host.lower().rstrip(".")
    if name in _METADATA_NAMES:
        raise DestinationRefused(f"{host} is the metadata server: never a webhook")
    address = literal_address(name)
    if address is not None:
        check_address(address, allow_private=allow_private, loopback_named=name in LOOPBACK_HOSTS)


def resolve_checked(host: str, port: int, *, allow_private: bool, resolve: Resolver | None = None) -> list[str]:
    """The addresses ``host`` resolves to now, every one checked (socket.gaierror when it does not resolve)."""
    check_host(host, allow_private=allow_private)
    found = [info[4][0] for info in (resolve or socket.getaddrinfo)(host, port, type=socket.SOCK_STREAM)]
    addresses = list(dict.fromkeys(found))  # in the resolver's order, once each
    loopback_named = host.lower() in LOOPBACK_HOSTS
    for address in addresses:
        try:
            check_address(
                ipaddress.ip_address(address.split("%", 1)[0]),
                allow_private=allow_private,
                loopback_named=loopback_named,
            )
        except DestinationRefused as exc:
            raise DestinationRefused(f"{host} resolves to {exc}") from None
    if not addresses:
        raise DestinationRefused(f"{host} resolves to no address")
    return addresses
