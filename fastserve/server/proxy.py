"""Proxy headers: trust X-Forwarded-For / X-Forwarded-Proto only from configured addresses."""
from __future__ import annotations

import ipaddress
from typing import Dict, List, Optional, Tuple, Union

from fastserve._speedups.forwarded import resolve_forwarded

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
Client = Optional[Tuple[str, int]]
Decision = Tuple[bool, Optional[str]]  # (trusted, the host as an address's canonical text or None)

ADDRESS_TEXT_MAX = 45  # the longest text of an IP address (INET6_ADDRSTRLEN less its NUL)
KNOWN_MAX = 4096  # decisions remembered per ProxyTrust


def address_text(host: str) -> Optional[str]:
    """``host`` as an IP address's canonical text (``2001:DB8::0001`` is ``2001:db8::1``), or
    None when it is no IPv4 or IPv6 address: a name, ``unknown``, markup, an IPv6 zone
    (``fe80::1%eth0``: a zone means nothing beyond the host that wrote it), or longer than any
    address is written."""
    if len(host) > ADDRESS_TEXT_MAX or "%" in host:
        return None
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


class ProxyTrust:
    """Which peers may tell us the real client and scheme, and what they say.

    ``allow`` is a comma-separated list of addresses and networks (``127.0.0.1, 10.0.0.0/8``),
    or ``*`` to trust every peer; ``*`` and ``unix:`` trust a peer on a unix socket (``--uds``),
    which has no address. In ``X-Forwarded-For`` the client is the right-most address
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
        self.known: Dict[str, Decision] = {}  # hosts decided so far (at most KNOWN_MAX)
        # A peer on a unix socket has no address: ``*`` or ``unix:`` trusts it.
        self.unix_peers = self.everyone or "unix:" in self.names

    def decide(self, host: str) -> Decision:
        """``(trusted, address)`` for a peer's or an X-Forwarded-For hop's host (port apart):
        ``address`` is its canonical text (``address_text``), None when it is no IP address;
        an address is trusted when ``*`` or a listed network holds it, anything else only when
        listed by name. Remembered in ``known`` (hosts no longer than an address, at most
        ``KNOWN_MAX``), which ``resolve_forwarded`` reads without calling this."""
        known = self.known.get(host)
        if known is not None:
            return known
        text = address_text(host)
        if text is None:
            known = (host in self.names, None)
        else:
            address = ipaddress.ip_address(text)
            known = (self.everyone or any(address in network for network in self.networks), text)
        if len(host) <= ADDRESS_TEXT_MAX and len(self.known) < KNOWN_MAX:
            self.known[host] = known
        return known

    def trusts(self, host: str) -> bool:
        """Whether a peer or hop named ``host`` may speak for the client (``decide``)."""
        return self.decide(host)[0]

    def resolve(self, client: Client, headers: List[Tuple[bytes, bytes]], scheme: str) -> Tuple[Client, str]:
        """The (client, scheme) to put in the scope for a request from ``client``
        (``fastserve._speedups.forwarded.resolve_forwarded``, which the ASGI bridge calls itself)."""
        return resolve_forwarded(self, client, headers, scheme)
