# HTTP/1.1 response heads as bytes: status lines, the Server/Date block, the Connection field.

cdef bytes status_line(int status)
cpdef bytes render_fields(list fields)
cdef tuple connection_pair(bint keep_alive, bint http10)
cdef bytes connection_field(bint keep_alive, bint http10)
cdef bytes head_start(int status, bytes fields, bytes date)
cdef bytes response_head(int status, bytes fields, bint keep_alive, bint http10)
cdef bytes whole_response(int status, bytes fields, bint keep_alive, bint http10, bytes body)
cdef bytes plain_answer(int status, bytes extra, bint keep_alive, bint http10, bint head)


cdef inline bytes continue_response():
    """The interim ``100 (Continue)`` response (RFC 9110 section 15.2.1) that asks a client
    holding back its body (``Expect: 100-continue``) to send it."""
    return b"HTTP/1.1 100 Continue\r\n\r\n"
