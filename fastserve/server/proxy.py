"""Proxy headers: trust X-Forwarded-For / X-Forwarded-Proto only from configured addresses."""
from __future__ import annotations

import ipaddress
from typing import Dict, List, Optional, Tuple, Union

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
Client = Optional[Tuple[str, int]]


class ProxyTrust:
    """Which peers may tell us the real client and scheme, and what they say.

    ``allow`` is a comma-separated list of addresses and networks (``127.0.0.1, 10.0.0.0/8``),
    or ``*`` to trust every peer. In ``X-Forwarded-For`` the client is the right-most address
    that is not itself a trusted proxy, so a client cannot forge its way past the last hop.
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
        self._known: Dict[str, bool] = {}

    def trusts(self, host: str) -> bool:
        known = self._known.get(host)
        if known is None:
            known = self.everyone or host in self.names or self._in_networks(host)
            if len(self._known) < 4096:
                self._known[host] = known
        return known

    def _in_networks(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def resolve(self, client: Client, headers: List[Tuple[bytes, bytes]], scheme: str) -> Tuple[Client, str]:
        """The (client, scheme) to put in the scope for a request from ``client``."""
        if client is None or not self.trusts(client[0]):
            return client, scheme
        for name, value in headers:
            if name == b"x-forwarded-proto":
                proto = value.decode("latin-1").split(",")[-1].strip().lower()
                if proto in ("http", "https", "ws", "wss"):
                    secure = proto in ("https", "wss")
                    scheme = ("https" if secure else "http") if scheme in ("http", "https") else ("wss" if secure else "ws")
            elif name == b"x-forwarded-for":
                hops = [hop.strip() for hop in value.decode("latin-1").split(",") if hop.strip()]
                for hop in reversed(hops):
                    if not self.trusts(hop):
                        client = (hop, 0)
                        break
                else:
                    if hops:
                        client = (hops[0], 0)
        return client, scheme
