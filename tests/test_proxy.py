"""fastserve.server.proxy.ProxyTrust: whose X-Forwarded-* headers count, and what they mean."""
import pytest

from fastserve.server.proxy import ProxyTrust

FORWARDED = [(b"x-forwarded-for", b"203.0.113.7, 10.0.0.2"), (b"x-forwarded-proto", b"https")]


def test_trusted_proxy_sets_client_and_scheme():
    trust = ProxyTrust("127.0.0.1, 10.0.0.0/8")
    assert trust.resolve(("127.0.0.1", 4000), FORWARDED, "http") == (("203.0.113.7", 0), "https")


def test_untrusted_peer_is_ignored():
    trust = ProxyTrust("127.0.0.1")
    assert trust.resolve(("198.51.100.1", 4000), FORWARDED, "http") == (("198.51.100.1", 4000), "http")


def test_client_is_the_rightmost_untrusted_hop():
    trust = ProxyTrust("127.0.0.1")  # 10.0.0.2 is not trusted: it is the client, whatever it claims
    assert trust.resolve(("127.0.0.1", 1), FORWARDED, "http")[0] == ("10.0.0.2", 0)


def test_everyone_trusted_with_star():
    trust = ProxyTrust("*")
    assert trust.resolve(("198.51.100.1", 1), FORWARDED, "http")[1] == "https"


@pytest.mark.parametrize("proto, base, expected", [("https", "ws", "wss"), ("http", "ws", "ws"), ("HTTPS", "http", "https"), ("gopher", "http", "http")])
def test_scheme_follows_the_kind_of_request(proto, base, expected):
    trust = ProxyTrust("127.0.0.1")
    assert trust.resolve(("127.0.0.1", 1), [(b"x-forwarded-proto", proto.encode())], base)[1] == expected


def test_ipv6_networks_and_no_client():
    trust = ProxyTrust("::1, fd00::/8")
    assert trust.trusts("::1") and trust.trusts("fd00::5") and not trust.trusts("2001:db8::1")
    assert trust.resolve(None, FORWARDED, "http") == (None, "http")


@pytest.mark.parametrize("allow, client", [
    ("*", "203.0.113.7"), ("unix:", "10.0.0.2"), ("127.0.0.1, unix:", "10.0.0.2"), ("unix:, 10.0.0.0/8", "203.0.113.7"),
])
def test_a_unix_socket_peer_is_trusted_with_star_or_unix(allow, client):
    """nginx in front over ``--uds`` (no peer address): ``--forwarded-allow-ips '*'``, as
    uvicorn's deployment guides write it, or ``unix:`` makes its X-Forwarded-* count (the
    client: the right-most hop not trusted itself)."""
    assert ProxyTrust(allow).resolve(None, FORWARDED, "http") == ((client, 0), "https")
    assert ProxyTrust(allow).resolve(None, [(b"x-forwarded-proto", b"wss")], "ws") == (None, "wss")


# -- resolve_forwarded, the C reading of the fields, against the rule written plainly ----------

import ipaddress  # noqa: E402
import socket  # noqa: E402

from hypothesis import given, strategies as st  # noqa: E402

from fastserve._speedups.forwarded import resolve_forwarded  # noqa: E402


def reference_resolve(trust, client, headers, scheme):
    """The rule of ``ProxyTrust.resolve`` in plain Python (OWS is SP and HTAB, RFC 9110 5.6.3)."""
    hops_value = proto = None
    for name, value in headers:
        if name.lower() == b"x-forwarded-for":
            hops_value = value if hops_value is None else hops_value + b", " + value
        elif name.lower() == b"x-forwarded-proto":
            proto = value
    if hops_value is None and proto is None:
        return client, scheme
    trusted = trust.everyone or "unix:" in trust.names if client is None else trust.trusts(client[0])
    if not trusted:
        return client, scheme
    if proto is not None:
        last = proto.decode("latin-1").split(",")[-1].strip(" \t").lower()
        if last in ("http", "https", "ws", "wss"):
            secure = last in ("https", "wss")
            web = scheme in ("http", "https")
            scheme = ("https" if secure else "http") if web else ("wss" if secure else "ws")
    if hops_value is not None:
        hops = [reference_hop(hop.strip(" \t")) for hop in hops_value.decode("latin-1").split(",") if hop.strip(" \t")]
        leftmost = None
        for host, port in reversed(hops):
            text = reference_address(host)
            if text is None:
                if host in trust.names:
                    continue
                return client, scheme  # no address: what lies left of it cannot be read
            address = ipaddress.ip_address(text)
            trusted = trust.everyone or any(address in network for network in trust.networks)
            if not trusted:
                return (text, port), scheme
            leftmost = (text, port)
        if leftmost is not None:
            client = leftmost
    return client, scheme


def reference_address(host):
    """``host`` as an address's canonical text (the C library's, as the socket's peer is
    written), or None."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            return socket.inet_ntop(family, socket.inet_pton(family, host))
        except (OSError, UnicodeEncodeError, ValueError):
            pass
    return None


def reference_hop(hop):
    """``(host, port)`` of one X-Forwarded-For hop: ``host:port`` and ``[v6]:port`` name a port."""
    def is_port(text):
        return text.isascii() and text.isdigit() and int(text) <= 65535

    if hop.startswith("["):
        host, bracket, rest = hop[1:].partition("]")
        if bracket and host and rest == "":
            return host, 0
        if bracket and host and rest.startswith(":") and is_port(rest[1:]):
            return host, int(rest[1:])
        return hop, 0
    if hop.count(":") == 1:
        host, _, port = hop.partition(":")
        if is_port(port):
            return host, int(port)
    return hop, 0


HOPS = st.sampled_from(["203.0.113.7", "10.0.0.2", "127.0.0.1", "::1", "2001:db8::5", "", " ", "\t", "unix:x", "é",
                        "203.0.113.7:4711", "127.0.0.1:80", "[2001:db8::5]:443", "[::1]", "[::1]:8", "[]", "[]:1",
                        "10.0.0.2:65536", "10.0.0.2:", "10.0.0.2:x", "[::1]x", "[::1:5", "10.0.0.2:\xb2",
                        "unknown", "<script>", "2001:DB8::0005", "fe80::1%eth0", "[fe80::1%25x]:1", "unix:"])
FIELD_VALUES = st.lists(st.tuples(st.sampled_from(["", " ", "\t"]), HOPS, st.sampled_from(["", " "])).map("".join),
                        max_size=5).map(lambda hops: ",".join(hops).encode("latin-1"))
PROTOS = st.lists(st.sampled_from(["http", "HTTPS", "ws", "wss", " https ", "\thttp", "gopher", "", "Https"]),
                  max_size=3).map(lambda members: ",".join(members).encode())
OTHER_FIELDS = st.sampled_from([(b"host", b"h"), (b"x-forwarded-host", b"h"), (b"x-forwarded-fo", b"1.2.3.4"),
                                (b"via", b"1.1 cdn"), (b"x-forwarded-protocol", b"https")])
HEADER_LISTS = st.lists(st.one_of(OTHER_FIELDS, FIELD_VALUES.map(lambda v: (b"x-forwarded-for", v)),
                                  PROTOS.map(lambda v: (b"x-forwarded-proto", v))), max_size=6)


@given(HEADER_LISTS, st.sampled_from([("127.0.0.1", 4000), ("198.51.100.1", 1), ("10.0.0.9", 2), None]),
       st.sampled_from(["http", "https", "ws", "wss"]),
       st.sampled_from(["127.0.0.1", "127.0.0.1, 10.0.0.0/8", "*", "unix:", "unix:, 10.0.0.0/8"]))
def test_resolve_forwarded_follows_the_rule(headers, client, scheme, allow) -> None:
    trust = ProxyTrust(allow)
    assert resolve_forwarded(trust, client, headers, scheme) == reference_resolve(trust, client, headers, scheme)


@pytest.mark.parametrize("hops, client", [
    (b"203.0.113.7:41234", ("203.0.113.7", 41234)),  # Azure's and IIS ARR's proxies add the port
    (b"[2001:db8::1]:443", ("2001:db8::1", 443)),
    (b"[2001:db8::1]", ("2001:db8::1", 0)),
    (b"2001:db8::1", ("2001:db8::1", 0)),
    (b"203.0.113.7:41234, 127.0.0.1:5000", ("203.0.113.7", 41234)),  # a trusted hop with a port is still trusted
    (b"203.0.113.7:99999", ("127.0.0.1", 1)),  # not a port: no address, so the peer stays the client
])
def test_a_hop_may_name_the_clients_port(hops, client) -> None:
    """As under uvicorn, ``request.client.host`` is the address alone, so allow-lists and rate
    limits keyed on it work behind proxies that send ``host:port`` hops."""
    assert ProxyTrust("127.0.0.1").resolve(("127.0.0.1", 1), [(b"x-forwarded-for", hops)], "http")[0] == client


def test_a_field_given_on_several_lines_is_one_list() -> None:
    """RFC 9110 section 5.3: the lines are one list, in order; X-Forwarded-Proto's last member is
    the last line's, and X-Forwarded-For is walked from the right across the lines (a last line
    of trusted hops alone does not make a trusted hop the client)."""
    trust = ProxyTrust("127.0.0.1")
    headers = [(b"x-forwarded-for", b"203.0.113.1"), (b"x-forwarded-proto", b"https"),
               (b"x-forwarded-for", b"203.0.113.2"), (b"x-forwarded-proto", b"http")]
    assert resolve_forwarded(trust, ("127.0.0.1", 1), headers, "https") == (("203.0.113.2", 0), "http")
    headers = [(b"x-forwarded-for", b"203.0.113.1"), (b"x-forwarded-for", b"127.0.0.1")]
    assert resolve_forwarded(trust, ("127.0.0.1", 1), headers, "http") == (("203.0.113.1", 0), "http")


def test_hops_are_trimmed_and_empty_members_skipped() -> None:
    trust = ProxyTrust("127.0.0.1")
    headers = [(b"x-forwarded-for", b" ,\t203.0.113.9 , ,127.0.0.1\t, ")]
    assert resolve_forwarded(trust, ("127.0.0.1", 1), headers, "http") == (("203.0.113.9", 0), "http")


def test_decisions_are_remembered_per_address() -> None:
    trust = ProxyTrust("127.0.0.1")
    resolve_forwarded(trust, ("127.0.0.1", 1), [(b"x-forwarded-for", b"203.0.113.9")], "http")
    assert trust.known == {"127.0.0.1": True, "203.0.113.9": False}


@pytest.mark.parametrize("hops", [
    b"<script>alert(1)</script>", b"unknown", b"_hidden", b"example.com", b"1.2.3.4.5", b"300.1.1.1",
    b"203.0.113.7:99999", b"203.0.113.7:x", b"[::1]:80x", b"fe80::1%eth0", b"[fe80::1%25eth0]:80",
    b"\xff\xfe", b"1" * 10240, b"a\x00b", b"203.0.113.7 203.0.113.8", b'"203.0.113.7"',
    b"<script>, 127.0.0.1",  # a trusted hop, then no address: the walk stops there
])
@pytest.mark.parametrize("allow", ["127.0.0.1", "*"])
def test_a_hop_that_is_no_address_leaves_the_peer_as_the_client(hops, allow) -> None:
    """What the scope's client (and so the access log) names is an address: a hop that is not
    one never reaches it, whether the proxy is trusted by address or by ``*``."""
    trust = ProxyTrust(allow)
    headers = [(b"x-forwarded-for", hops), (b"x-forwarded-proto", b"https")]
    assert resolve_forwarded(trust, ("127.0.0.1", 4000), headers, "http") == (("127.0.0.1", 4000), "https")


@pytest.mark.parametrize("hops, client", [
    (b"unknown, 203.0.113.7", ("203.0.113.7", 0)),  # the untrusted hop is found before the bad one
    (b"<script>, 203.0.113.7:8080, 127.0.0.1", ("203.0.113.7", 8080)),
    (b"2001:DB8:0::0001", ("2001:db8::1", 0)),  # canonical text, as the socket's peer is written
    (b"[2001:0DB8::1]:443", ("2001:db8::1", 443)),
])
def test_the_client_is_an_address_in_its_canonical_text(hops, client) -> None:
    trust = ProxyTrust("127.0.0.1")
    assert resolve_forwarded(trust, ("127.0.0.1", 1), [(b"x-forwarded-for", hops)], "http")[0] == client


def test_a_listed_name_is_passed_over_and_never_the_client() -> None:
    trust = ProxyTrust("127.0.0.1, unix:")
    assert trust.resolve(("127.0.0.1", 1), [(b"x-forwarded-for", b"203.0.113.7, unix:")], "http")[0] == ("203.0.113.7", 0)
    assert trust.resolve(("127.0.0.1", 1), [(b"x-forwarded-for", b"unix:, 127.0.0.1")], "http")[0] == ("127.0.0.1", 0)
    assert trust.resolve(("127.0.0.1", 1), [(b"x-forwarded-for", b"unix:")], "http")[0] == ("127.0.0.1", 1)


def test_only_addresses_reach_python_and_none_under_star() -> None:
    """Each hop is read as an address in C; ``ProxyTrust.trusts`` (Python, ``ipaddress``) is
    asked only about an address, in its canonical text, not decided before, and never under
    ``*``: a list of 1,500 new addresses cost ~26 ms of the event loop per request when each
    was parsed in Python, and hops that are no address (10 KB each) are never remembered."""
    asked = []
    for allow in ("127.0.0.1, 10.0.0.0/8", "*"):
        trust = ProxyTrust(allow)
        trusts = trust.trusts
        trust.trusts = lambda host: asked.append(host) or trusts(host)  # type: ignore[method-assign]
        hops = b", ".join(b"10.%d.%d.%d" % (n // 65536, n // 256 % 256, n % 256) for n in range(1500))
        client = resolve_forwarded(trust, ("127.0.0.1", 1), [(b"x-forwarded-for", hops)], "http")[0]
        assert client == ("10.0.0.0", 0)
        if allow == "*":
            assert asked == []
        else:
            assert len(asked) == 1 + 1500 and all(len(host) <= 15 for host in asked)  # the peer, each hop once
            asked.clear()
            resolve_forwarded(trust, ("127.0.0.1", 1), [(b"x-forwarded-for", hops)], "http")
            assert asked == []  # all decided before
            for n in range(20):
                resolve_forwarded(trust, ("127.0.0.1", 1), [(b"x-forwarded-for", b"%d" % n + b"x" * 10240)], "http")
            assert asked == [] and max(len(host) for host in trust.known) <= 15
