# Conditional request (RFC 9110 section 13) and Range decisions for a static representation.

cpdef int evaluate_preconditions(bytes method, bytes if_match, bytes if_unmodified_since,
                                 bytes if_none_match, bytes if_modified_since, bytes etag,
                                 long long last_modified, bint modified_since_exact=*)
cpdef bint if_range_allows(bytes if_range, bytes etag, long long last_modified)
cpdef tuple evaluate_range(bytes method, bytes range_value, bytes if_range, bytes etag,
                           long long last_modified, long long size, int max_ranges=*)
