"""Proxy headers: trust X-Forwarded-For / X-Forwarded-Proto only from configured addresses."""
from __future__ import annotations

import ipaddress
from typing import Dict, List, Optional, Tuple, Union

from fastserve._speedups.forwarded import resolve_forwarded

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
Client = Optional[Tuple[str, int]]


class ProxyTrust:
    """Which peers may tell us the real client and scheme, and what they say.

    ``allow`` is a comma-separated list of addresses and networks (``127.0.0.1, 10.0.0.0/8``),
    or ``*`` to trust every peer; ``*`` and ``unix:`` trust a peer on a unix socket (``--uds``),
    which has no address. In ``X-Forwarded-For`` the client is the right-most address
    that is not itself a trusted proxy, so a client cannot forge its way past the last hop; a
    hop that is no IP address (``unknown``, a name, markup, a port that is no port) ends the
    walk and the client stays the peer, as nginx's realip declines such a list, so what the
    scope and the access log name as the client is always an address.
    """

    def __init__(self, allow: str) -> None:
        items = [item.strip() for item in allow.split(",") if item.strip()]
        self.everyone = "*" in items
        self.networks: List[Network] = []
        self.names: set = set()  # entries that are not addresses, e.g. "unix:" peers
        for item in items:
            if item == "*":
                continue
            try:
                self.networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                self.names.add(item)
        self.known: Dict[str, bool] = {}  # addresses decided so far (at most 4,096)
        # A peer on a unix socket has no address: ``*`` or ``unix:`` trusts it.
        self.unix_peers = self.everyone or "unix:" in self.names

    def trusts(self, host: str) -> bool:
        """Whether a peer or hop at ``host`` may speak for the client: ``*``, a listed name, or
        an address in a listed network (``resolve_forwarded`` asks only for addresses, in
        their canonical text, it has not read in ``known`` before, and never under ``*``)."""
        known = self.known.get(host)
        if known is None:
            known = self.everyone or host in self.names or self._in_networks(host)
            if len(self.known) < 4096:
                self.known[host] = known
        return known

    def _in_networks(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def resolve(self, client: Client, headers: List[Tuple[bytes, bytes]], scheme: str) -> Tuple[Client, str]:
        """The (client, scheme) to put in the scope for a request from ``client``
        (``fastserve._speedups.forwarded.resolve_forwarded``, which the ASGI bridge calls itself)."""
        return resolve_forwarded(self, client, headers, scheme)
