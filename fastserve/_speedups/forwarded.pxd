cpdef tuple resolve_forwarded(object trust, object client, list headers, str scheme)
