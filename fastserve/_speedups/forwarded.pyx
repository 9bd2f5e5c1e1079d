"""X-Forwarded-For and X-Forwarded-Proto: the client and scheme a trusted proxy reports.

``resolve_forwarded`` runs for every request of an ASGI app served with proxy headers on (the
default trusts 127.0.0.1: a proxy on the same host), so it reads the header list in C and
calls into Python only for an address the ``ProxyTrust`` (``fastserve.server.proxy``) has not
decided yet: its decisions are read from its ``known`` dict.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject
from cpython.unicode cimport PyUnicode_DecodeLatin1

from fastserve._speedups.charclass cimport equals_lowercase, is_ows


cdef extern from "arpa/inet.h" nogil:
    int inet_pton(int af, const char* src, void* dst)
    const char* inet_ntop(int af, const void* src, char* dst, unsigned int size)

cdef extern from "sys/socket.h" nogil:
    int AF_INET
    int AF_INET6

cdef enum:
    ADDRESS_TEXT_MAX = 45  # the longest text of an IP address (INET6_ADDRSTRLEN less its NUL)


cdef inline bint _trusts(object trust, dict known, object host):
    """``trust.trusts(host)``, without the call when ``host`` was decided before."""
    cdef PyObject* decided = PyDict_GetItem(known, host)
    if decided != NULL:
        return <object>decided is True
    return trust.trusts(host)


cdef str _address_text(str host):
    """``host`` as an IP address in its canonical text (inet_ntop's: ``2001:DB8::0001`` is
    ``2001:db8::1``), or None when it is no IPv4 or IPv6 address: a name, ``unknown``, markup,
    an IPv6 zone (``fe80::1%eth0``), an IPv4 part with a leading zero. Read in C: a list of
    hops costs no Python parsing, however long."""
    cdef Py_ssize_t n = len(host), i = 0
    cdef char text[ADDRESS_TEXT_MAX + 1]
    cdef char canonical[ADDRESS_TEXT_MAX + 1]
    cdef unsigned char address[16]
    cdef int family
    cdef Py_UCS4 c
    if n == 0 or n > ADDRESS_TEXT_MAX:
        return None
    for c in host:
        if c == 0 or c > 127:
            return None
        text[i] = <char>c
        i += 1
    text[n] = 0
    if inet_pton(AF_INET, text, address) == 1:
        family = AF_INET
    elif inet_pton(AF_INET6, text, address) == 1:
        family = AF_INET6
    else:
        return None
    if inet_ntop(family, address, canonical, sizeof(canonical)) == NULL:
        return None
    return (<bytes>canonical).decode("ascii")


cdef inline bint _is_forwarded(bytes name, const char* suffix, Py_ssize_t suffix_length):
    """Whether a (lowercase) header name is ``x-forwarded-<suffix>``."""
    return (
        PyBytes_GET_SIZE(name) == 12 + suffix_length
        and equals_lowercase(<const unsigned char*>PyBytes_AS_STRING(name), 12, "x-forwarded-")
        and equals_lowercase(<const unsigned char*>PyBytes_AS_STRING(name) + 12, suffix_length, suffix)
    )


cdef inline Py_ssize_t _member_before(const unsigned char* s, Py_ssize_t end,
                                      Py_ssize_t* start, Py_ssize_t* stop) noexcept nogil:
    """The list member that ends at ``end`` in ``s`` (RFC 9110 section 5.6.1: comma-separated),
    trimmed of OWS, as ``[start, stop)``; returns where the member before it ends (-1: none)."""
    cdef Py_ssize_t first = end
    while first > 0 and s[first - 1] != b",":
        first -= 1
    cdef Py_ssize_t before = first - 1  # the comma's place: the previous member ends there
    while first < end and is_ows(s[first]):
        first += 1
    while end > first and is_ows(s[end - 1]):
        end -= 1
    start[0] = first
    stop[0] = end
    return before


cdef inline str _scheme_from(bytes proto, str scheme):
    """``scheme`` (http/https or ws/wss) made secure or not as the last member of ``proto`` says."""
    cdef const unsigned char* s = <const unsigned char*>PyBytes_AS_STRING(proto)
    cdef Py_ssize_t start, end
    _member_before(s, PyBytes_GET_SIZE(proto), &start, &end)
    cdef bint secure
    if equals_lowercase(s + start, end - start, "https") or equals_lowercase(s + start, end - start, "wss"):
        secure = True
    elif equals_lowercase(s + start, end - start, "http") or equals_lowercase(s + start, end - start, "ws"):
        secure = False
    else:
        return scheme
    if scheme == "http" or scheme == "https":
        return "https" if secure else "http"
    return "wss" if secure else "ws"


cdef tuple _hop_address(str hop):
    """An X-Forwarded-For hop as ``(host, port)``: some proxies add the client's port
    (``203.0.113.5:41234``, ``[2001:db8::1]:41234``); a hop without one (a bare IPv6 address
    too) has port 0, and one whose port is not a port is kept whole (so it is no address)."""
    cdef Py_ssize_t colon = hop.rfind(":")
    cdef str host, port
    if colon < 0:
        return (hop, 0)
    if hop[0] == "[":
        close = hop.find("]")
        if close < 0:
            return (hop, 0)
        host = hop[1:close]
        if not host:
            return (hop, 0)
        port = hop[close + 2:] if hop[close + 1:close + 2] == ":" else ""
        if close + 1 == len(hop) or (port.isdigit() and port.isascii() and int(port) <= 65535):
            return (host, int(port) if port else 0)
        return (hop, 0)
    if hop.find(":") != colon:  # a bare IPv6 address
        return (hop, 0)
    port = hop[colon + 1:]
    if port.isdigit() and port.isascii() and int(port) <= 65535:
        return (hop[:colon], int(port))
    return (hop, 0)


cdef object _client_from(object trust, dict known, bytes hops_value):
    """The right-most hop of an X-Forwarded-For list that ``trust`` does not trust, as a
    ``(address, port)`` client (``_hop_address``; the address in its canonical text); the
    left-most hop when it trusts them all. None (the client stays the peer) when there is no
    hop, or when the walk meets one that is no IP address before an untrusted one: a name the
    operator listed is passed over, anything else (``unknown``, markup, a bad port) ends it,
    since what lies left of it cannot be read. Under ``*`` no hop is handed to Python."""
    cdef const unsigned char* s = <const unsigned char*>PyBytes_AS_STRING(hops_value)
    cdef Py_ssize_t end = PyBytes_GET_SIZE(hops_value)
    cdef Py_ssize_t start, stop
    cdef tuple hop
    cdef str text
    cdef bint everyone = trust.everyone
    cdef object names = trust.names
    cdef tuple leftmost = None
    while end >= 0:
        end = _member_before(s, end, &start, &stop)
        if start == stop:
            continue
        hop = _hop_address(PyUnicode_DecodeLatin1(<const char*>s + start, stop - start, NULL))
        text = _address_text(hop[0])
        if text is None:
            if hop[0] in names:
                continue
            return None
        if not everyone and not _trusts(trust, known, text):
            return (text, hop[1])
        leftmost = (text, hop[1])
    return leftmost


cpdef tuple resolve_forwarded(object trust, object client, list headers, str scheme):
    """``(client, scheme)`` for a scope: what a trusted peer's X-Forwarded-* fields say.

    ``trust`` is a ``ProxyTrust``; ``client`` the peer's ``(host, port)`` or None; ``headers``
    the request's ``(lowercase name, value)`` pairs; ``scheme`` http/https or ws/wss. A peer
    ``trust`` does not trust changes nothing. From a trusted one, X-Forwarded-Proto's last
    member (http, https, ws or wss, any case) sets whether the scheme is secure, and the client
    becomes the right-most X-Forwarded-For hop that is not itself trusted (with the port the
    hop names, else 0), so a client cannot forge its way past the last proxy; a hop that is no
    IP address stops the walk and leaves the peer as the client (``_client_from``). A field
    given on several lines is one list, the lines joined in order (RFC 9110 section 5.3), as
    the static path reads it for the access log.
    """
    cdef bytes name
    cdef bytes hops_value = None
    cdef bytes proto = None
    for pair in headers:
        name = pair[0]
        if PyBytes_GET_SIZE(name) < 15 or (<const char*>PyBytes_AS_STRING(name))[0] != b"x":
            continue
        if _is_forwarded(name, "for", 3):
            hops_value = pair[1] if hops_value is None else hops_value + b", " + pair[1]
        elif _is_forwarded(name, "proto", 5):
            proto = pair[1]
    return resolve_fields(trust, client, hops_value, proto, scheme)


cdef tuple resolve_fields(object trust, object client, bytes hops_value, bytes proto, str scheme):
    """``resolve_forwarded`` given the two fields' values (None: absent)."""
    if hops_value is None and proto is None:
        return client, scheme
    cdef dict known = trust.known
    if client is None:  # a unix socket's peer (nginx in front over --uds) has no address
        if not trust.unix_peers:
            return client, scheme
    elif not trust.everyone and not _trusts(trust, known, client[0]):
        return client, scheme
    if proto is not None:
        scheme = _scheme_from(proto, scheme)
    if hops_value is not None:
        forwarded_client = _client_from(trust, known, hops_value)
        if forwarded_client is not None:
            client = forwarded_client
    return client, scheme
