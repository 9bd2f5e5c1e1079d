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
