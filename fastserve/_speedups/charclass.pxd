# Character classes of RFC 9110, shared by the header parsers (headers.pyx), the request-head
# scanner (requesthead.pyx) and the connection (protocol.pyx). Inline: each module that
# cimports them compiles them in, so one definition serves all without a call per byte.

# tchar = ALPHA / DIGIT / "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" /
#         "_" / "`" / "|" / "~", as one bit per byte value: bit c of TCHAR_0_63 for c < 64,
#         bit c - 64 of TCHAR_64_127 for 64 <= c < 128 (tests check all 256 values).
cdef extern from *:
    """
    #define FASTSERVE_TCHAR_0_63 0x03FF6CFA00000000ULL
    #define FASTSERVE_TCHAR_64_127 0x57FFFFFFC7FFFFFEULL
    """
    const unsigned long long TCHAR_0_63 "FASTSERVE_TCHAR_0_63"
    const unsigned long long TCHAR_64_127 "FASTSERVE_TCHAR_64_127"


cdef inline bint is_tchar(unsigned char c) noexcept nogil:
    if c < 64:
        return (TCHAR_0_63 >> c) & 1
    if c < 128:
        return (TCHAR_64_127 >> (c - 64)) & 1
    return False


cdef inline bint is_ows(unsigned char c) noexcept nogil:
    """Optional whitespace: SP or HTAB."""
    return c == 32 or c == 9


cdef inline int hex_value(unsigned char c) noexcept nogil:
    """The value of a hex digit (either case), -1 for any other byte."""
    if 48 <= c <= 57:
        return c - 48
    if 97 <= (c | 0x20) <= 102:
        return (c | 0x20) - 87
    return -1


cdef inline unsigned char lower_ascii(unsigned char c) noexcept nogil:
    if 65 <= c <= 90:
        return c + 32
    return c


cdef inline bint equals_lowercase(const unsigned char* s, Py_ssize_t n, const char* name) noexcept nogil:
    """Whether the ``n`` bytes at ``s`` are ``name`` (NUL-terminated, lowercase ASCII) in any case."""
    cdef Py_ssize_t k = 0
    while k < n:
        if name[k] == 0 or lower_ascii(s[k]) != <unsigned char>name[k]:
            return False
        k += 1
    return name[k] == 0
