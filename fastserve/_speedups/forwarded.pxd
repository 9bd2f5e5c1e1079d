cpdef tuple resolve_forwarded(object trust, object client, list headers, str scheme)
cdef tuple resolve_fields(object trust, object client, bytes hops_value, bytes proto, str scheme)
