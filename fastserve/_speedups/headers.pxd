# Header parsing and serialising shared by StaticFiles (Python) and the protocol hot path (Cython).
# Header values are `bytes`, or None when the header is absent.

cpdef object parse_range(bytes value, long long size, int max_ranges=*)
cpdef list parse_etag_list(bytes value)
cpdef bint etag_matches(bytes value, bytes etag, bint weak)
cpdef long long parse_http_date(bytes value)
cpdef bytes format_http_date(double ts)
cpdef bytes current_http_date(double clock=*)
cpdef bytes make_etag(long long mtime_ns, long long size)
cpdef str content_type_for(str path)
cpdef dict parse_accept_encoding(bytes value)
# negotiate_coding's answers besides a coding's index (0 br, 1 zstd, 2 gzip)
cdef enum:
    CODING_IDENTITY = 3
    CODING_NONE = -1
cpdef int negotiate_coding(bytes value, int offered)
cpdef bytes reason_phrase(int status)
cpdef bytes vary_union(bytes first, bytes second)
cpdef bytes serialize_headers(int status, list headers)
cpdef bint is_field_value(object value)
cpdef tuple byteranges_layout(list ranges, bytes content_type, long long size, bytes boundary)
