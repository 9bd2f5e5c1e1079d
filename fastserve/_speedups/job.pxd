# What the connection asks of a response that cannot be written at once (a file transfer,
# an ASGI app): the connection queues jobs in request order and runs one at a time.

cdef class Job:
    cpdef start(self)
    cpdef resume_writing(self)
    cpdef connection_lost(self)
    cpdef peer_finished_sending(self)
    cpdef bint stop_keeping_alive(self)
