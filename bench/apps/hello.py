"""The smallest ASGI app worth measuring: "Hello, world!" for every HTTP request, no framework.

Every server in the ASGI group runs this same module, so the numbers compare the servers'
own per-request cost (parsing, building the scope, calling the app, writing the answer).
"""


async def app(scope, receive, send):
    if scope["type"] != "http":
        if scope["type"] == "lifespan":
            await run_lifespan(receive, send)
        return  # anything else (a websocket) is refused by the server
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")]})
    await send({"type": "http.response.body", "body": b"Hello, world!"})


async def run_lifespan(receive, send):
    """Acknowledge startup and shutdown, so servers that run the lifespan protocol go on."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
