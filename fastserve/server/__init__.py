"""The server: sockets, workers, signals, the ASGI bridge."""
