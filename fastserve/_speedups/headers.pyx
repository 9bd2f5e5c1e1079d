# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""HTTP header parsing and serialising for the static-file path.

Everything here is shared by the ASGI ``StaticFiles``/``FileResponse`` (called from Python) and
the protocol's fast path (cimported from Cython), so a rule about Range, validators, dates or
content negotiation lives in exactly one place.

Header values arrive as ``bytes`` (or None when the header is absent). Parsers never raise on
hostile input: they report "ignore this header" (None / -1 / False) instead, because a bad
conditional or Range header must degrade to a plain 200, never to an error page.
"""

import mimetypes

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from libc.limits cimport LLONG_MAX
from libc.math cimport floor
from libc.stdlib cimport qsort
from libc.string cimport memcmp, memcpy
from libc.time cimport gmtime_r, time, time_t, tm

from fastserve._speedups.charclass cimport equals_lowercase, is_ows, is_tchar, lower_ascii

# --------------------------------------------------------------------------------------------
# Character classes
# --------------------------------------------------------------------------------------------

cdef inline bint _is_digit(unsigned char c) noexcept nogil:
    return 48 <= c <= 57


cdef inline bint _is_etagc(unsigned char c) noexcept nogil:
    # etagc = %x21 / %x23-7E / obs-text: any visible char but the double quote, plus high-bit bytes
    return c == 0x21 or (0x23 <= c <= 0x7E) or c >= 0x80


cdef inline void _trim(const unsigned char* s, Py_ssize_t* start, Py_ssize_t* end) noexcept nogil:
    while start[0] < end[0] and is_ows(s[start[0]]):
        start[0] += 1
    while end[0] > start[0] and is_ows(s[end[0] - 1]):
        end[0] -= 1


# --------------------------------------------------------------------------------------------
# Range
# --------------------------------------------------------------------------------------------

# Numbers in a Range header saturate at LLONG_MAX instead of overflowing. No file is that big, so
# a saturated first-pos is unsatisfiable and a saturated last-pos / suffix-length means "to the end".
cdef long long _NO_NUMBER = -1
# Ranges are collected on the stack; only unusually long Range headers spill to the heap.
cdef enum:
    _STACK_RANGES = 16


ctypedef struct _ByteRange:
    long long first
    long long last
    Py_ssize_t order  # where the range (or the first of those merged into it) was listed


cdef inline Py_ssize_t _parse_number(
    const unsigned char* s, Py_ssize_t i, Py_ssize_t n, long long* out
) noexcept nogil:
    """Parse 1*DIGIT at i (saturating); out = _NO_NUMBER if there are no digits. Returns the new index."""
    cdef long long value = 0
    cdef int digit
    cdef Py_ssize_t start = i
    while i < n and _is_digit(s[i]):
        digit = s[i] - 48
        if value > (LLONG_MAX - digit) / 10:
            value = LLONG_MAX
        else:
            value = value * 10 + digit
        i += 1
    out[0] = value if i > start else _NO_NUMBER
    return i


cdef bint _digits_greater(
    const unsigned char* s, Py_ssize_t a, Py_ssize_t a_end, Py_ssize_t b, Py_ssize_t b_end
) noexcept nogil:
    """Exact "s[a:a_end] > s[b:b_end]" for decimal digit strings too long for a long long."""
    while a < a_end - 1 and s[a] == 48:
        a += 1
    while b < b_end - 1 and s[b] == 48:
        b += 1
    if a_end - a != b_end - b:
        return a_end - a > b_end - b
    return memcmp(s + a, s + b, a_end - a) > 0


cdef int _compare_ranges(const void* a, const void* b) noexcept nogil:
    cdef long long fa = (<const _ByteRange*>a).first
    cdef long long fb = (<const _ByteRange*>b).first
    return (fa > fb) - (fa < fb)


cdef int _compare_orders(const void* a, const void* b) noexcept nogil:
    cdef Py_ssize_t oa = (<const _ByteRange*>a).order
    cdef Py_ssize_t ob = (<const _ByteRange*>b).order
    return (oa > ob) - (oa < ob)


cpdef object parse_range(bytes value, long long size, int max_ranges=16):
    """Parse a ``Range`` header for a representation of ``size`` bytes.

    Returns None when the header must be ignored (absent, other unit, bad syntax, more than
    ``max_ranges`` ranges), ``[]`` when it is valid but nothing is satisfiable (answer 416), or
    a list of inclusive ``(first, last)`` tuples: overlapping or adjacent ranges merged into one
    (RFC 9110 section 15.3.7.2 lets a server coalesce them whatever their order), the rest in
    the order the header lists them (a merged range where the first of its ranges is listed),
    as that section asks of a multipart answer's parts.
    """
    if value is None:
        return None
    cdef const unsigned char* s = <const unsigned char*>PyBytes_AS_STRING(value)
    cdef Py_ssize_t i = 0
    cdef Py_ssize_t n = len(value)
    _trim(s, &i, &n)
    if n - i < 6:
        return None
    if not (lower_ascii(s[i]) == 98 and lower_ascii(s[i + 1]) == 121 and lower_ascii(s[i + 2]) == 116
            and lower_ascii(s[i + 3]) == 101 and lower_ascii(s[i + 4]) == 115 and s[i + 5] == 61):  # bytes=
        return None
    i += 6
    if size < 0:
        size = 0

    cdef _ByteRange stack_ranges[_STACK_RANGES]
    cdef _ByteRange* ranges = stack_ranges
    cdef _ByteRange* grown
    cdef Py_ssize_t capacity = _STACK_RANGES
    cdef Py_ssize_t kept = 0
    cdef Py_ssize_t listed = 0
    cdef long long first, last
    cdef Py_ssize_t k, first_start, first_end, merged
    cdef bint ok = True
    cdef bint listed_in_order
    cdef list result

    try:
        while True:
            while i < n and (is_ows(s[i]) or s[i] == 44):  # empty list elements are allowed
                i += 1
            if i >= n:
                break
            if s[i] == 45:  # "-" suffix-length
                i = _parse_number(s, i + 1, n, &last)
                if last == _NO_NUMBER:
                    ok = False
                    break
                first = _NO_NUMBER
            else:
                first_start = i
                i = _parse_number(s, i, n, &first)
                if first == _NO_NUMBER or i >= n or s[i] != 45:
                    ok = False
                    break
                first_end = i
                i = _parse_number(s, i + 1, n, &last)
                if last != _NO_NUMBER and (
                    first > last
                    or (first == LLONG_MAX and last == LLONG_MAX
                        and _digits_greater(s, first_start, first_end, first_end + 1, i))
                ):
                    ok = False
                    break
            listed += 1
            if listed > max_ranges:
                ok = False
                break
            # the element must end here: OWS then "," or the end of the value
            while i < n and is_ows(s[i]):
                i += 1
            if i < n and s[i] != 44:
                ok = False
                break

            # resolve against the representation size; unsatisfiable ranges are dropped
            if first == _NO_NUMBER:
                if last == 0 or size == 0:
                    continue
                first = size - last if last < size else 0
                last = size - 1
            else:
                if first >= size:
                    continue
                if last == _NO_NUMBER or last >= size:
                    last = size - 1
            if kept == capacity:
                capacity *= 2
                if ranges == stack_ranges:
                    grown = <_ByteRange*>PyMem_Malloc(capacity * sizeof(_ByteRange))
                    if grown != NULL:
                        memcpy(grown, stack_ranges, kept * sizeof(_ByteRange))
                else:
                    grown = <_ByteRange*>PyMem_Realloc(ranges, capacity * sizeof(_ByteRange))
                if grown == NULL:
                    raise MemoryError()
                ranges = grown
            ranges[kept].first = first
            ranges[kept].last = last
            ranges[kept].order = kept
            kept += 1

        if not ok or listed == 0:
            return None
        if kept == 1:
            return [(ranges[0].first, ranges[0].last)]
        if kept == 0:
            return []
        # Merge in ascending order, each merged range keeping the earliest place of its ranges
        # (in ranges[merged]); then put them back in the order the header listed them.
        qsort(ranges, kept, sizeof(_ByteRange), _compare_ranges)
        merged = 0
        listed_in_order = True
        for k in range(1, kept):
            if ranges[k].first <= ranges[merged].last + 1:
                if ranges[k].last > ranges[merged].last:
                    ranges[merged].last = ranges[k].last
                if ranges[k].order < ranges[merged].order:
                    ranges[merged].order = ranges[k].order
            else:
                merged += 1
                ranges[merged] = ranges[k]
        for k in range(1, merged + 1):
            if ranges[k].order < ranges[k - 1].order:
                listed_in_order = False
                break
        if not listed_in_order:
            qsort(ranges, merged + 1, sizeof(_ByteRange), _compare_orders)
        result = []
        for k in range(merged + 1):
            result.append((ranges[k].first, ranges[k].last))
        return result
    finally:
        if ranges != stack_ranges:
            PyMem_Free(ranges)


# --------------------------------------------------------------------------------------------
# Entity-tags
# --------------------------------------------------------------------------------------------

cdef inline bint _is_star(const unsigned char* s, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t start = 0
    cdef Py_ssize_t end = n
    _trim(s, &start, &end)
    return end - start == 1 and s[start] == 42


cdef Py_ssize_t _next_etag(
    const unsigned char* s, Py_ssize_t n, Py_ssize_t i, Py_ssize_t* tag_start, Py_ssize_t* tag_end
) noexcept nogil:
    """Find the next well-formed entity-tag of a list at or after i.

    Sets [tag_start, tag_end) to the tag as written (tag_start = -1 once the list is exhausted)
    and returns where to continue. A malformed member is skipped up to the next comma.
    """
    cdef Py_ssize_t start, j
    while True:
        while i < n and (is_ows(s[i]) or s[i] == 44):
            i += 1
        if i >= n:
            tag_start[0] = -1
            return n
        start = i
        if s[i] == 87 and i + 1 < n and s[i + 1] == 47:  # W/
            i += 2
        if i < n and s[i] == 34:
            i += 1
            while i < n and _is_etagc(s[i]):
                i += 1
            if i < n and s[i] == 34:
                i += 1
                j = i
                while j < n and is_ows(s[j]):
                    j += 1
                if j >= n or s[j] == 44:
                    tag_start[0] = start
                    tag_end[0] = i
                    return j
        while i < n and s[i] != 44:
            i += 1


cpdef list parse_etag_list(bytes value):
    """Split an If-Match / If-None-Match value into entity-tags, each exactly as written.

    ``*`` alone gives ``[b"*"]``; malformed members are skipped; None or empty gives ``[]``.
    """
    cdef list tags = []
    if value is None:
        return tags
    cdef const unsigned char* s = <const unsigned char*>PyBytes_AS_STRING(value)
    cdef Py_ssize_t n = len(value)
    if _is_star(s, n):
        tags.append(b"*")
        return tags
    cdef Py_ssize_t i = 0
    cdef Py_ssize_t start = 0, end = 0
    while True:
        i = _next_etag(s, n, i, &start, &end)
        if start < 0:
            return tags
        tags.append(value[start:end])


cpdef bint etag_matches(bytes value, bytes etag, bint weak):
    """Whether an If-Match / If-None-Match / If-Range value matches our current ``etag``.

    ``weak`` selects weak comparison (``W/`` ignored on both sides, for If-None-Match); otherwise
    strong comparison, where a weak tag on either side never matches. ``*`` matches whenever we
    have a current representation (``etag`` not None).
    """
    if value is None or etag is None:
        return False
    cdef const unsigned char* s = <const unsigned char*>PyBytes_AS_STRING(value)
    cdef Py_ssize_t n = len(value)
    if n == 0:
        return False
    if _is_star(s, n):
        return True
    cdef const unsigned char* ours = <const unsigned char*>PyBytes_AS_STRING(etag)
    cdef Py_ssize_t ours_len = len(etag)
    cdef bint ours_weak = ours_len >= 2 and ours[0] == 87 and ours[1] == 47
    if ours_weak and not weak:
        return False
    # What a client revalidating sends back most often: our tag exactly, as the only member.
    if n == ours_len and ours[n - 1] == 34 and memcmp(s, ours, n) == 0:
        return True
    if ours_weak:
        ours += 2
        ours_len -= 2
    cdef Py_ssize_t i = 0
    cdef Py_ssize_t start = 0, end = 0
    while True:
        i = _next_etag(s, n, i, &start, &end)
        if start < 0:
            return False
        if s[start] == 87:  # W/"..."
            if not weak:
                continue
            start += 2
        if end - start == ours_len and memcmp(s + start, ours, ours_len) == 0:
            return True


cpdef bytes make_etag(long long mtime_ns, long long size):
    """Strong validator for a file: ``b'"<hex mtime_ns>-<hex size>"'`` in lowercase hex."""
    cdef char buf[48]
    cdef Py_ssize_t pos = 0
    buf[pos] = 34
    pos += 1
    pos = _write_hex(buf, pos, mtime_ns)
    buf[pos] = 45
    pos += 1
    pos = _write_hex(buf, pos, size)
    buf[pos] = 34
    pos += 1
    return PyBytes_FromStringAndSize(buf, pos)


cdef inline Py_ssize_t _write_hex(char* buf, Py_ssize_t pos, long long number) noexcept nogil:
    cdef unsigned long long magnitude
    cdef char digits[16]
    cdef int count = 0
    if number < 0:
        buf[pos] = 45
        pos += 1
        magnitude = <unsigned long long>0 - <unsigned long long>number
    else:
        magnitude = <unsigned long long>number
    while True:
        digits[count] = b"0123456789abcdef"[magnitude & 15]
        count += 1
        magnitude >>= 4
        if magnitude == 0:
            break
    while count:
        count -= 1
        buf[pos] = digits[count]
        pos += 1
    return pos


# --------------------------------------------------------------------------------------------
# HTTP-date
# --------------------------------------------------------------------------------------------

cdef const char* _DAY_NAMES = b"SunMonTueWedThuFriSat"
cdef const char* _MONTH_NAMES = b"JanFebMarAprMayJunJulAugSepOctNovDec"
cdef const char* _LONG_DAY_NAMES[7]
_LONG_DAY_NAMES[0] = b"Sunday"
_LONG_DAY_NAMES[1] = b"Monday"
_LONG_DAY_NAMES[2] = b"Tuesday"
_LONG_DAY_NAMES[3] = b"Wednesday"
_LONG_DAY_NAMES[4] = b"Thursday"
_LONG_DAY_NAMES[5] = b"Friday"
_LONG_DAY_NAMES[6] = b"Saturday"
cdef int _DAYS_IN_MONTH[12]
_DAYS_IN_MONTH[:] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]


cdef inline long long _floor_div(long long a, long long b) noexcept nogil:
    cdef long long q = a / b
    if (a % b != 0) and ((a < 0) != (b < 0)):
        q -= 1
    return q


cdef long long _days_from_civil(long long year, int month, int day) noexcept nogil:
    """Days since 1970-01-01 of a proleptic Gregorian date (month 1-12).

    Counts in 400-year eras starting on March 1st, so the leap day is the last day of a year.
    """
    cdef long long y = year - (1 if month <= 2 else 0)
    cdef long long era = _floor_div(y, 400)
    cdef long long year_of_era = y - era * 400                                  # [0, 399]
    cdef long long day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) / 5 + day - 1
    cdef long long day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year
    return era * 146097 + day_of_era - 719468


cdef inline bint _is_leap(long long year) noexcept nogil:
    return (year % 4 == 0 and year % 100 != 0) or year % 400 == 0


cdef inline int _two_digits(const unsigned char* s) noexcept nogil:
    if _is_digit(s[0]) and _is_digit(s[1]):
        return (s[0] - 48) * 10 + (s[1] - 48)
    return -1


cdef inline int _month_index(const unsigned char* s) noexcept nogil:
    """1-12 for a case-sensitive three-letter month name, else -1."""
    cdef int m
    for m in range(12):
        if memcmp(s, _MONTH_NAMES + 3 * m, 3) == 0:
            return m + 1
    return -1


cdef inline bint _is_day_name(const unsigned char* s) noexcept nogil:
    cdef int d
    for d in range(7):
        if memcmp(s, _DAY_NAMES + 3 * d, 3) == 0:
            return True
    return False


cdef inline bint _parse_clock(const unsigned char* s, int* hour, int* minute, int* second) noexcept nogil:
    """Parse "HH:MM:SS" (8 bytes)."""
    if s[2] != 58 or s[5] != 58:
        return False
    hour[0] = _two_digits(s)
    minute[0] = _two_digits(s + 3)
    second[0] = _two_digits(s + 6)
    return hour[0] >= 0 and minute[0] >= 0 and second[0] >= 0


cdef inline long long _moment_of_year(int month, int day, int hour, int minute, int second) noexcept nogil:
    """A number that orders moments within one year (leap seconds included)."""
    return (((month * 32LL + day) * 24 + hour) * 60 + minute) * 61 + second


cdef long long _rfc850_century(int two_digits, int month, int day, int hour, int minute, int second) noexcept nogil:
    """The four-digit year of an rfc850-date's two-digit one (RFC 9110 section 5.6.7): in this
    century, unless that puts the date more than 50 years after now, then in the previous one
    (the most recent past year ending in those digits)."""
    cdef time_t now = time(NULL)
    cdef tm parts
    if gmtime_r(&now, &parts) == NULL:
        return 1900 + two_digits
    cdef long long this_year = parts.tm_year + 1900
    cdef long long year = this_year - this_year % 100 + two_digits
    if year > this_year + 50:
        return year - 100
    if year == this_year + 50:
        # fifty years on is today's date and time in that year: a later one is more than 50 years on
        if _moment_of_year(month, day, hour, minute, second) > _moment_of_year(
            parts.tm_mon + 1, parts.tm_mday, parts.tm_hour, parts.tm_min, parts.tm_sec
        ):
            return year - 100
    return year


cdef long long _timestamp(long long year, int month, int day, int hour, int minute, int second) noexcept nogil:
    if month < 1 or month > 12 or day < 1:
        return -1
    if day > _DAYS_IN_MONTH[month - 1] + (1 if month == 2 and _is_leap(year) else 0):
        return -1
    if hour > 23 or minute > 59 or second > 60:
        return -1
    return _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second


cpdef long long parse_http_date(bytes value):
    """Seconds since the epoch (UTC) for an HTTP-date, or -1 when it is not one.

    Accepts IMF-fixdate, RFC 850 and asctime forms (names are case-sensitive, as the grammar
    says). The weekday name must be a real one but is not checked against the date. An RFC 850
    two-digit year is this century's unless the date would then be more than 50 years after
    now, to the second (RFC 9110 section 5.6.7: then the previous century's). Dates
    before 1970 come back negative, so 1969-12-31 23:59:59 is indistinguishable from "invalid".
    """
    if value is None:
        return -1
    cdef const unsigned char* s = <const unsigned char*>PyBytes_AS_STRING(value)
    cdef Py_ssize_t start = 0
    cdef Py_ssize_t end = len(value)
    _trim(s, &start, &end)
    s += start
    cdef Py_ssize_t n = end - start
    cdef int day, month, hour = 0, minute = 0, second = 0, d, name_len
    cdef long long year

    if n == 29 and s[3] == 44:
        # IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT"
        if not _is_day_name(s) or s[4] != 32 or s[7] != 32 or s[11] != 32 or s[16] != 32 or s[25] != 32:
            return -1
        if memcmp(s + 26, b"GMT", 3) != 0:
            return -1
        day = _two_digits(s + 5)
        month = _month_index(s + 8)
        if _two_digits(s + 12) < 0 or _two_digits(s + 14) < 0:
            return -1
        year = _two_digits(s + 12) * 100 + _two_digits(s + 14)
        if not _parse_clock(s + 17, &hour, &minute, &second):
            return -1
        return _timestamp(year, month, day, hour, minute, second)

    if n == 24 and s[3] == 32:
        # asctime: "Sun Nov  6 08:49:37 1994"
        if not _is_day_name(s) or s[7] != 32 or s[10] != 32 or s[19] != 32:
            return -1
        month = _month_index(s + 4)
        if s[8] == 32 and _is_digit(s[9]):
            day = s[9] - 48
        else:
            day = _two_digits(s + 8)
        if _two_digits(s + 20) < 0 or _two_digits(s + 22) < 0:
            return -1
        year = _two_digits(s + 20) * 100 + _two_digits(s + 22)
        if not _parse_clock(s + 11, &hour, &minute, &second):
            return -1
        return _timestamp(year, month, day, hour, minute, second)

    # RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT"
    for d in range(7):
        name_len = len(_LONG_DAY_NAMES[d])
        if n == name_len + 24 and memcmp(s, _LONG_DAY_NAMES[d], name_len) == 0:
            break
    else:
        return -1
    s += name_len
    if s[0] != 44 or s[1] != 32 or s[4] != 45 or s[8] != 45 or s[11] != 32 or s[20] != 32:
        return -1
    if memcmp(s + 21, b"GMT", 3) != 0:
        return -1
    day = _two_digits(s + 2)
    month = _month_index(s + 5)
    year = _two_digits(s + 9)
    if year < 0 or not _parse_clock(s + 12, &hour, &minute, &second):
        return -1
    return _timestamp(_rfc850_century(<int>year, month, day, hour, minute, second), month, day, hour, minute, second)


# Timestamps that fit the four-digit year of an IMF-fixdate: 0000-01-01 .. 9999-12-31 23:59:59.
cdef double _FIRST_FORMATTABLE = -62167219200.0
cdef double _LAST_FORMATTABLE = 253402300799.0


cdef inline void _put2(char* p, int value) noexcept nogil:
    p[0] = 48 + value / 10
    p[1] = 48 + value % 10


cdef bytes _format_seconds(time_t seconds):
    cdef tm parts
    cdef char buf[29]
    cdef int year
    if gmtime_r(&seconds, &parts) == NULL:
        raise ValueError("timestamp out of range for an HTTP-date")
    year = parts.tm_year + 1900
    memcpy(buf, _DAY_NAMES + 3 * parts.tm_wday, 3)
    buf[3] = 44
    buf[4] = 32
    _put2(buf + 5, parts.tm_mday)
    buf[7] = 32
    memcpy(buf + 8, _MONTH_NAMES + 3 * parts.tm_mon, 3)
    buf[11] = 32
    _put2(buf + 12, year / 100)
    _put2(buf + 14, year % 100)
    buf[16] = 32
    _put2(buf + 17, parts.tm_hour)
    buf[19] = 58
    _put2(buf + 20, parts.tm_min)
    buf[22] = 58
    _put2(buf + 23, parts.tm_sec)
    memcpy(buf + 25, b" GMT", 4)
    return PyBytes_FromStringAndSize(buf, 29)


cpdef bytes format_http_date(double ts):
    """IMF-fixdate for a Unix timestamp, fractional seconds dropped: b'Sun, 06 Nov 1994 08:49:37 GMT'."""
    if not (_FIRST_FORMATTABLE <= ts < _LAST_FORMATTABLE + 1.0):  # also rejects NaN
        raise ValueError("timestamp out of range for an HTTP-date")
    return _format_seconds(<time_t>floor(ts))


cdef time_t _date_second = -1
cdef bytes _date_value = None


cpdef bytes current_http_date(double clock=-1.0):
    """IMF-fixdate for now; rebuilt at most once per second (the same object within one).

    ``clock`` is the Unix time to take as now (tests move it); the default reads the system clock.
    """
    global _date_second, _date_value
    cdef time_t now = time(NULL) if clock < 0 else <time_t>floor(clock)
    if now != _date_second:
        _date_value = _format_seconds(now)
        _date_second = now
    return _date_value


# --------------------------------------------------------------------------------------------
# Content-Type
# --------------------------------------------------------------------------------------------

# The media types of the files a web origin serves, by suffix (lowercase), fixed here so that
# an answer does not depend on the host: Python's ``mimetypes`` reads the host's tables
# (/etc/mime.types, the Windows registry), which a slim container lacks (``.woff2``, ``.webp``
# then go as application/octet-stream) and which say ``text/vnd.trolltech.linguist`` for ``.ts``
# or ``text/plain`` for ``.js``. IANA's names (RFC 9239 for JavaScript, RFC 7303 for XML,
# RFC 8081 for fonts). A name that says it is compressed (``.gz``, ``.zst``) is the
# compressed file itself, whatever it holds: ``app.js.gz`` asked for by its own name is sent
# as it is, without a Content-Encoding, so it is labelled gzip, not JavaScript (a sibling sent
# for ``app.js`` keeps ``app.js``'s type). Suffixes not listed here follow ``mimetypes``
# (``mimetypes.add_type`` included); change this table, then call ``clear_content_type_cache``.
WEB_MEDIA_TYPES = {
    ".html": "text/html", ".htm": "text/html", ".css": "text/css",
    ".js": "text/javascript", ".mjs": "text/javascript", ".cjs": "text/javascript",
    ".json": "application/json", ".map": "application/json", ".jsonld": "application/ld+json",
    ".webmanifest": "application/manifest+json", ".xml": "application/xml",
    ".txt": "text/plain", ".csv": "text/csv", ".md": "text/markdown", ".vtt": "text/vtt",
    ".wasm": "application/wasm", ".pdf": "application/pdf", ".zip": "application/zip",
    ".svg": "image/svg+xml", ".png": "image/png", ".apng": "image/apng", ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg", ".gif": "image/gif", ".webp": "image/webp", ".avif": "image/avif",
    ".ico": "image/vnd.microsoft.icon", ".bmp": "image/bmp",
    ".woff": "font/woff", ".woff2": "font/woff2", ".ttf": "font/ttf", ".otf": "font/otf",
    ".eot": "application/vnd.ms-fontobject",
    ".mp4": "video/mp4", ".webm": "video/webm", ".mp3": "audio/mpeg", ".ogg": "audio/ogg",
    ".wav": "audio/wav", ".flac": "audio/flac", ".m4a": "audio/mp4",
    ".m3u8": "application/vnd.apple.mpegurl", ".ts": "video/mp2t", ".mpd": "application/dash+xml",
    ".gz": "application/gzip", ".tgz": "application/gzip", ".zst": "application/zstd",
    ".br": "application/octet-stream",
    # What else nginx's own table names and a site serves (feeds, documents, media, 3D models),
    # so a slim container answers them as nginx does, not as application/octet-stream (a
    # browser then downloads a feed or a video instead of showing it, nosniff forbidding a guess)
    ".shtml": "text/html", ".xhtml": "application/xhtml+xml", ".rss": "application/rss+xml",
    ".atom": "application/atom+xml", ".ics": "text/calendar", ".tsv": "text/tab-separated-values",
    ".geojson": "application/geo+json", ".yaml": "application/yaml", ".yml": "application/yaml",
    ".kml": "application/vnd.google-earth.kml+xml", ".kmz": "application/vnd.google-earth.kmz",
    ".tif": "image/tiff", ".tiff": "image/tiff", ".jxl": "image/jxl", ".heic": "image/heic",
    ".heif": "image/heif", ".glb": "model/gltf-binary", ".gltf": "model/gltf+json",
    ".oga": "audio/ogg", ".ogv": "video/ogg", ".weba": "audio/webm", ".aac": "audio/aac",
    ".mid": "audio/midi", ".midi": "audio/midi", ".m4v": "video/x-m4v", ".mov": "video/quicktime",
    ".mkv": "video/x-matroska", ".3gp": "video/3gpp", ".3gpp": "video/3gpp",
    ".rtf": "application/rtf", ".epub": "application/epub+zip", ".doc": "application/msword",
    ".xls": "application/vnd.ms-excel", ".ppt": "application/vnd.ms-powerpoint",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ".odt": "application/vnd.oasis.opendocument.text", ".ods": "application/vnd.oasis.opendocument.spreadsheet",
    ".odp": "application/vnd.oasis.opendocument.presentation",
    ".odg": "application/vnd.oasis.opendocument.graphics",
    ".7z": "application/x-7z-compressed", ".rar": "application/vnd.rar",
    ".jar": "application/java-archive",
    # The rest of nginx's mime.types (1.22), so no suffix it names is left to the host's tables
    # (a slim container has none: .exe, .flv, .wmv then went as application/octet-stream, and a
    # host's .msm was model/vnd.gdl); nginx's type, but for a type IANA registers for the suffix
    # (.asf, .swf, .mml, .prc, .deb, .pem, as .js, .xml, .bmp, .ico, .m4a, .rar above), and .svgz:
    # a gzip stream, labelled so, where nginx says image/svg+xml of bytes that are not SVG (sent
    # without Content-Encoding, as a file is sent as it is: RFC 9110 section 8.3).
    ".ai": "application/postscript", ".asf": "application/vnd.ms-asf", ".asx": "video/x-ms-asf",
    ".avi": "video/x-msvideo", ".bin": "application/octet-stream", ".cco": "application/x-cocoa",
    ".crt": "application/x-x509-ca-cert", ".deb": "application/vnd.debian.binary-package",
    ".der": "application/x-x509-ca-cert", ".dll": "application/octet-stream", ".dmg": "application/octet-stream",
    ".ear": "application/java-archive", ".eps": "application/postscript", ".exe": "application/octet-stream",
    ".flv": "video/x-flv", ".hqx": "application/mac-binhex40", ".htc": "text/x-component",
    ".img": "application/octet-stream", ".iso": "application/octet-stream",
    ".jad": "text/vnd.sun.j2me.app-descriptor", ".jardiff": "application/x-java-archive-diff",
    ".jng": "image/x-jng", ".jnlp": "application/x-java-jnlp-file", ".kar": "audio/midi",
    ".mml": "application/mathml+xml", ".mng": "video/x-mng", ".mpeg": "video/mpeg", ".mpg": "video/mpeg",
    ".msi": "application/octet-stream", ".msm": "application/octet-stream", ".msp": "application/octet-stream",
    ".pdb": "application/x-pilot", ".pem": "application/pem-certificate-chain", ".pl": "application/x-perl",
    ".pm": "application/x-perl", ".prc": "model/prc", ".ps": "application/postscript", ".ra": "audio/x-realaudio",
    ".rpm": "application/x-redhat-package-manager", ".run": "application/x-makeself", ".sea": "application/x-sea",
    ".sit": "application/x-stuffit", ".svgz": "application/gzip", ".swf": "application/vnd.adobe.flash.movie",
    ".tcl": "application/x-tcl", ".tk": "application/x-tcl", ".war": "application/java-archive",
    ".wbmp": "image/vnd.wap.wbmp", ".wml": "text/vnd.wap.wml", ".wmlc": "application/vnd.wap.wmlc",
    ".wmv": "video/x-ms-wmv", ".xpi": "application/x-xpinstall", ".xspf": "application/xspf+xml",
}

cdef dict _content_types = {}
# Keys come from file names; clearing on overflow keeps a hostile tree from growing the cache.
cdef Py_ssize_t _CONTENT_TYPE_CACHE_LIMIT = 1024


cdef Py_ssize_t _suffix_start(str path, Py_ssize_t start, Py_ssize_t end):
    """Index of the last suffix's dot in path[start:end], or -1 (leading dots do not start one)."""
    cdef Py_ssize_t dot = path.rfind(".", start, end)
    cdef Py_ssize_t i = start
    if dot < 0:
        return -1
    while i < dot and path[i] == ".":
        i += 1
    return dot if i < dot else -1


cpdef str content_type_for(str path):
    """Content-Type value for a file path, by its last suffix: ``WEB_MEDIA_TYPES``, else
    ``mimetypes``' type for it, else ``application/octet-stream``.

    ``text/*`` types get ``; charset=utf-8`` (others, ``application/json`` included, none: as
    Starlette's ``FileResponse`` and nginx send them; RFC 8259 section 11 defines no charset for
    JSON). Results are cached per suffix.
    """
    cdef Py_ssize_t base = path.rfind("/") + 1
    cdef Py_ssize_t dot = _suffix_start(path, base, len(path))
    cdef str key = path[dot:] if dot >= 0 else ""
    cdef str content_type = _content_types.get(key)
    if content_type is not None:
        return content_type
    content_type = WEB_MEDIA_TYPES.get(key.lower())
    if content_type is None:
        # asked of a synthetic name so that nothing but the suffix (say, a "data:" prefix) counts
        guessed, coding = mimetypes.guess_type("f" + key)
        if coding is not None:  # a compressed file (``.svgz``, ``.bz2``): not the type it holds
            guessed = "application/gzip" if coding == "gzip" else None
        content_type = guessed or "application/octet-stream"
    if content_type.startswith("text/"):
        content_type += "; charset=utf-8"
    if len(_content_types) >= _CONTENT_TYPE_CACHE_LIMIT:
        _content_types.clear()
    _content_types[key] = content_type
    return content_type


def clear_content_type_cache() -> None:
    """Forget cached Content-Types (call after changing the ``mimetypes`` tables)."""
    _content_types.clear()


# --------------------------------------------------------------------------------------------
# Accept-Encoding
# --------------------------------------------------------------------------------------------

cdef inline Py_ssize_t _parse_qvalue(const unsigned char* s, Py_ssize_t i, Py_ssize_t n, int* q) noexcept nogil:
    """qvalue = ("0" ["." 0*3DIGIT]) / ("1" ["." 0*3"0"]) in thousandths; q = -1 if invalid."""
    cdef int scale = 100
    q[0] = -1
    if i >= n or (s[i] != 48 and s[i] != 49):
        return i
    cdef bint one = s[i] == 49
    cdef int value = 1000 if one else 0
    i += 1
    if i < n and s[i] == 46:
        i += 1
        while i < n and _is_digit(s[i]):
            if scale == 0 or (one and s[i] != 48):
                return i
            value += (s[i] - 48) * scale
            scale /= 10
            i += 1
    q[0] = value
    return i


cdef Py_ssize_t _next_coding(
    const unsigned char* s, Py_ssize_t n, Py_ssize_t i,
    Py_ssize_t* name_start, Py_ssize_t* name_end, int* q,
) noexcept nogil:
    """Find the next well-formed ``coding [; q=qvalue]`` member of an Accept-Encoding value.

    Sets [name_start, name_end) and q in thousandths (name_start = -1 once exhausted) and returns
    where to continue. Malformed members (bad token, bad qvalue, other parameters) are skipped.
    """
    cdef Py_ssize_t start
    while True:
        while i < n and (is_ows(s[i]) or s[i] == 44):
            i += 1
        if i >= n:
            name_start[0] = -1
            return n
        start = i
        while i < n and is_tchar(s[i]):
            i += 1
        name_end[0] = i
        q[0] = 1000
        if i > start:
            while i < n and is_ows(s[i]):
                i += 1
            if i < n and s[i] == 59:  # ";"
                i += 1
                while i < n and is_ows(s[i]):
                    i += 1
                if i + 1 < n and lower_ascii(s[i]) == 113 and s[i + 1] == 61:  # q=
                    i = _parse_qvalue(s, i + 2, n, q)
                    while i < n and is_ows(s[i]):
                        i += 1
                else:
                    q[0] = -1
            if q[0] >= 0 and (i >= n or s[i] == 44):
                name_start[0] = start
                return i
        while i < n and s[i] != 44:
            i += 1


cpdef dict parse_accept_encoding(bytes value):
    """``b"gzip;q=0.8, br, *;q=0"`` -> ``{"gzip": 0.8, "br": 1.0, "*": 0.0}``.

    Names are lowercased; a repeated name keeps its last weight; malformed members are skipped.
    """
    cdef dict weights = {}
    if value is None:
        return weights
    cdef const unsigned char* s = <const unsigned char*>PyBytes_AS_STRING(value)
    cdef Py_ssize_t n = len(value)
    cdef Py_ssize_t i = 0
    cdef Py_ssize_t start = 0, end = 0
    cdef int q = 0
    while True:
        i = _next_coding(s, n, i, &start, &end, &q)
        if start < 0:
            return weights
        weights[value[start:end].decode("ascii").lower()] = q / 1000.0


# The content codings fastserve offers, by the index negotiate_coding answers with, in the
# server's order of preference; and its other answers, for Python callers.
CODINGS = ("br", "zstd", "gzip")
IDENTITY = CODING_IDENTITY
NONE_ACCEPTABLE = CODING_NONE


cpdef int negotiate_coding(bytes value, int offered):
    """The content coding to answer with under this Accept-Encoding (RFC 9110 section 12.5.3).

    ``offered``: a mask of the encoded representations available (``CODING_BR``,
    ``CODING_ZSTD``, ``CODING_GZIP`` bits, ``1 << index``). Returns the index of the chosen one
    (0 br, 1 zstd, 2 gzip), ``CODING_IDENTITY`` for the unencoded representation, or
    ``CODING_NONE`` when nothing is acceptable (identity refused by ``identity;q=0``, or by
    ``*;q=0`` without ``identity`` listed, and no offered coding allowed). A coding is
    acceptable when listed with a non-zero weight, or (unlisted) when ``*`` has one; the
    highest weight wins, equal weights go to the server's order (br, zstd, gzip); ``x-gzip``
    is ``gzip``. Identity competes only when weighted explicitly (itself or ``*``); unlisted it
    is the acceptable last resort. An absent header (None) gets identity.
    """
    if value is None:
        return CODING_IDENTITY
    cdef const unsigned char* s = <const unsigned char*>PyBytes_AS_STRING(value)
    cdef Py_ssize_t n = len(value)
    cdef Py_ssize_t i = 0, start = 0, end = 0
    cdef int q = 0, k
    cdef int weights[3]
    cdef int identity_q = -1, star_q = -1, best = -1, best_q = 0
    weights[0] = weights[1] = weights[2] = -1
    while True:
        i = _next_coding(s, n, i, &start, &end, &q)
        if start < 0:
            break
        if equals_lowercase(s + start, end - start, b"br"):
            weights[0] = q
        elif equals_lowercase(s + start, end - start, b"zstd"):
            weights[1] = q
        elif (equals_lowercase(s + start, end - start, b"gzip")
              or equals_lowercase(s + start, end - start, b"x-gzip")):
            weights[2] = q
        elif equals_lowercase(s + start, end - start, b"identity"):
            identity_q = q
        elif end - start == 1 and s[start] == 42:
            star_q = q
    for k in range(3):
        if not (offered >> k) & 1:
            continue
        q = weights[k] if weights[k] >= 0 else star_q
        if q > best_q:
            best = k
            best_q = q
    if identity_q < 0:
        identity_q = star_q
    if best >= 0:
        return CODING_IDENTITY if identity_q > best_q else best
    return CODING_NONE if identity_q == 0 else CODING_IDENTITY


# --------------------------------------------------------------------------------------------
# Status line and header block
# --------------------------------------------------------------------------------------------

_REASONS = {
    100: b"Continue", 101: b"Switching Protocols", 102: b"Processing", 103: b"Early Hints",
    200: b"OK", 201: b"Created", 202: b"Accepted", 203: b"Non-Authoritative Information",
    204: b"No Content", 205: b"Reset Content", 206: b"Partial Content", 207: b"Multi-Status",
    208: b"Already Reported", 226: b"IM Used",
    300: b"Multiple Choices", 301: b"Moved Permanently", 302: b"Found", 303: b"See Other",
    304: b"Not Modified", 305: b"Use Proxy", 307: b"Temporary Redirect", 308: b"Permanent Redirect",
    400: b"Bad Request", 401: b"Unauthorized", 402: b"Payment Required", 403: b"Forbidden",
    404: b"Not Found", 405: b"Method Not Allowed", 406: b"Not Acceptable",
    407: b"Proxy Authentication Required", 408: b"Request Timeout", 409: b"Conflict", 410: b"Gone",
    411: b"Length Required", 412: b"Precondition Failed", 413: b"Content Too Large",
    414: b"URI Too Long", 415: b"Unsupported Media Type", 416: b"Range Not Satisfiable",
    417: b"Expectation Failed", 418: b"I'm a teapot", 421: b"Misdirected Request",
    422: b"Unprocessable Content", 423: b"Locked", 424: b"Failed Dependency", 425: b"Too Early",
    426: b"Upgrade Required", 428: b"Precondition Required", 429: b"Too Many Requests",
    431: b"Request Header Fields Too Large", 451: b"Unavailable For Legal Reasons",
    500: b"Internal Server Error", 501: b"Not Implemented", 502: b"Bad Gateway",
    503: b"Service Unavailable", 504: b"Gateway Timeout", 505: b"HTTP Version Not Supported",
    506: b"Variant Also Negotiates", 507: b"Insufficient Storage", 508: b"Loop Detected",
    510: b"Not Extended", 511: b"Network Authentication Required",
}
# indexed by status code, so the lookup on every response is a C array access
cdef list _REASON_BY_STATUS = [_REASONS.get(code, b"") for code in range(600)]


cpdef bytes vary_union(bytes first, bytes second):
    """One ``Vary`` value naming every member of ``first`` and of ``second`` once (RFC 9110
    section 12.5.5: a list of field names, which are case-insensitive, or ``*``).

    ``first``'s members come first, as written; ``second``'s follow where ``first`` lacks them
    (compared without case), so ``first`` comes back unchanged when it names them all. ``*``
    in either (the answer varies on more than fields) is ``*`` alone. Empty list members
    (RFC 9110 section 5.6.1.2) are dropped.
    """
    cdef list members = []
    cdef set seen = set()
    cdef bint added = False
    for index, value in enumerate((first, second)):
        for member in value.split(b","):
            member = member.strip(b" \t")
            if not member:
                continue
            if member == b"*":
                return b"*"
            lowered = member.lower()
            if lowered not in seen:
                seen.add(lowered)
                members.append(member)
                added = added or index == 1
    if not added and members:
        return first
    return b", ".join(members)


cpdef bytes reason_phrase(int status):
    """Reason phrase for a status code (RFC 9110 wording); b"" when unknown."""
    if 0 <= status < 600:
        return <bytes>_REASON_BY_STATUS[status]
    return b""


cdef inline Py_ssize_t _checked_field_size(object name, object value) except -1:
    """len(name) + len(value) after the response-splitting checks."""
    if type(name) is not bytes or type(value) is not bytes:
        raise TypeError("header names and values must be bytes")
    cdef const unsigned char* s = <const unsigned char*>PyBytes_AS_STRING(name)
    cdef Py_ssize_t n = len(<bytes>name)
    cdef Py_ssize_t i
    if n == 0:
        raise ValueError("empty header name")
    for i in range(n):
        if not is_tchar(s[i]):
            raise ValueError(f"invalid header name {name!r}")
    if not is_field_value(value):
        raise ValueError(f"invalid header value for {name!r}")
    return n + len(<bytes>value)


cpdef bint is_field_value(object value):
    """Whether ``value`` may be written as a field value: bytes holding no CR, LF or NUL (RFC
    9110 section 5.5), which would end its line and start another (a response split)."""
    if type(value) is not bytes:
        return False
    cdef const unsigned char* s = <const unsigned char*>PyBytes_AS_STRING(value)
    cdef Py_ssize_t i
    for i in range(len(<bytes>value)):
        if s[i] == 13 or s[i] == 10 or s[i] == 0:
            return False
    return True


cpdef bytes serialize_headers(int status, list headers):
    """Status line + header block: ``b"HTTP/1.1 200 OK\\r\\nname: value\\r\\n...\\r\\n\\r\\n"``.

    ``headers`` holds (name, value) pairs of bytes. Names must be tokens and values must not
    contain CR, LF or NUL (ValueError otherwise), so no response can be split.
    """
    if status < 100 or status > 999:
        raise ValueError(f"invalid status code {status}")
    cdef bytes reason = reason_phrase(status)
    cdef Py_ssize_t reason_len = len(reason)
    cdef Py_ssize_t total = 9 + 3 + 1 + reason_len + 2 + 2
    cdef object item, name, value
    for item in headers:
        if type(item) is not tuple and type(item) is not list:
            raise TypeError("headers must be (name, value) pairs")
        name, value = item
        total += _checked_field_size(name, value) + 4

    cdef bytes out = PyBytes_FromStringAndSize(NULL, total)
    cdef char* p = PyBytes_AS_STRING(out)
    cdef Py_ssize_t pos = 0, n
    memcpy(p, b"HTTP/1.1 ", 9)
    p[9] = 48 + status / 100
    p[10] = 48 + (status / 10) % 10
    p[11] = 48 + status % 10
    p[12] = 32
    memcpy(p + 13, PyBytes_AS_STRING(reason), reason_len)
    pos = 13 + reason_len
    p[pos] = 13
    p[pos + 1] = 10
    pos += 2
    for item in headers:
        name, value = item
        n = len(<bytes>name) + len(<bytes>value) + 4
        if pos + n + 2 > total:  # the list changed under us
            raise RuntimeError("headers changed while serialising")
        memcpy(p + pos, PyBytes_AS_STRING(name), len(<bytes>name))
        pos += len(<bytes>name)
        p[pos] = 58
        p[pos + 1] = 32
        pos += 2
        memcpy(p + pos, PyBytes_AS_STRING(value), len(<bytes>value))
        pos += len(<bytes>value)
        p[pos] = 13
        p[pos + 1] = 10
        pos += 2
    if pos + 2 != total:
        raise RuntimeError("headers changed while serialising")
    p[pos] = 13
    p[pos + 1] = 10
    return out


cpdef tuple byteranges_layout(list ranges, bytes content_type, long long size, bytes boundary):
    """Framing of a multipart/byteranges body: ``(part_heads, tail, content_length)``.

    The body is ``part_heads[0] + file[r0] + part_heads[1] + file[r1] + ... + tail``; it ends
    with the close delimiter and no epilogue (RFC 2046 section 5.1.1), byte for byte what
    Starlette's ``FileResponse`` sends for the same boundary.
    """
    cdef list heads = []
    cdef long long content_length = 0
    cdef long long first, last
    cdef Py_ssize_t index = 0
    cdef bytes head
    for first, last in ranges:
        if first < 0 or last < first or last >= size:
            raise ValueError(f"range {first}-{last} does not fit a representation of {size} bytes")
        head = b"%s--%s\r\nContent-Type: %s\r\nContent-Range: bytes %d-%d/%d\r\n\r\n" % (
            b"\r\n" if index else b"", boundary, content_type, first, last, size,
        )
        heads.append(head)
        content_length += len(head) + (last - first + 1)
        index += 1
    cdef bytes tail = b"\r\n--" + boundary + b"--"
    content_length += len(tail)
    return heads, tail, content_length
