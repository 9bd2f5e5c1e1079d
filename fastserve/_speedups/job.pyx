"""The interface every queued response shares: a file transfer and an ASGI exchange alike.

A connection answers requests in order; a response that is not ready as bytes becomes a
``Job`` in its queue. When the job's turn comes the connection calls ``start``; when the
transport drained after a pause it calls ``resume_writing``; when the client went away it
calls ``connection_lost``. The job tells the connection it wrote its last byte through the
connection's ``job_finished``.
"""


cdef class Job:
    """Base of the connection's queued responses (``FileSender``, ``HttpCycle``)."""

    cpdef start(self):
        """Begin writing: the responses before this one are all written."""
        raise NotImplementedError

    cpdef resume_writing(self):
        """The transport can take bytes again (after ``pause_writing``)."""

    cpdef connection_lost(self):
        """The client went away: stop, and release what is held."""

    cpdef peer_finished_sending(self):
        """The client sent its FIN (it may still be reading): nothing to do for most jobs."""

    cpdef bint stop_keeping_alive(self):
        """The server is stopping: make this response its connection's last if its head is
        still to be written; returns whether it will carry ``Connection: close``. A head
        already written (a file transfer's, for one) cannot say so."""
        return False
