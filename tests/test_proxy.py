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

from hypothesis import given, strategies as st  # noqa: E402

from fastserve._speedups.forwarded import resolve_forwarded  # noqa: E402


def reference_resolve(trust, client, headers, scheme):
    """The rule of ``ProxyTrust.resolve`` in plain Python (OWS is SP and HTAB, RFC 9110 5.6.3)."""
    hops_value = proto = None
    for name, value in headers:
        if name.lower() == b"x-forwarded-for":
            hops_value = value
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
        for hop in reversed(hops):
            if not trust.trusts(hop[0]):
                return hop, scheme
        if hops:
            client = hops[0]
    return client, scheme


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
                        "10.0.0.2:65536", "10.0.0.2:", "10.0.0.2:x", "[::1]x", "[::1:5", "10.0.0.2:\xb2"])
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
    (b"203.0.113.7:99999", ("203.0.113.7:99999", 0)),  # not a port: the hop is kept as it came
])
def test_a_hop_may_name_the_clients_port(hops, client) -> None:
    """As under uvicorn, ``request.client.host`` is the address alone, so allow-lists and rate
    limits keyed on it work behind proxies that send ``host:port`` hops."""
    assert ProxyTrust("127.0.0.1").resolve(("127.0.0.1", 1), [(b"x-forwarded-for", hops)], "http")[0] == client


def test_a_field_given_twice_counts_by_its_last_line() -> None:
    trust = ProxyTrust("127.0.0.1")
    headers = [(b"x-forwarded-for", b"203.0.113.1"), (b"x-forwarded-proto", b"https"),
               (b"x-forwarded-for", b"203.0.113.2"), (b"x-forwarded-proto", b"http")]
    assert resolve_forwarded(trust, ("127.0.0.1", 1), headers, "https") == (("203.0.113.2", 0), "http")


def test_hops_are_trimmed_and_empty_members_skipped() -> None:
    trust = ProxyTrust("127.0.0.1")
    headers = [(b"x-forwarded-for", b" ,\t203.0.113.9 , ,127.0.0.1\t, ")]
    assert resolve_forwarded(trust, ("127.0.0.1", 1), headers, "http") == (("203.0.113.9", 0), "http")


def test_decisions_are_remembered_per_address() -> None:
    trust = ProxyTrust("127.0.0.1")
    resolve_forwarded(trust, ("127.0.0.1", 1), [(b"x-forwarded-for", b"203.0.113.9")], "http")
    assert trust.known == {"127.0.0.1": True, "203.0.113.9": False}
