"""The Starlette app the ASGI bridge tests serve, as source: ``STATIC`` (a directory holding
``a.txt`` and ``big.bin``) is defined before it, in a module file for a real server
(``test_server_asgi.py``) or a namespace for an in-process one (``test_asgi_requests.py``)."""

APP = '''
import asyncio
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Mount, Route
from fastserve.responses import FileResponse
from fastserve.staticfiles import StaticFiles

async def whoami(request):
    return PlainTextResponse(f"{request.client.host} {request.url.scheme}")

async def echo(request):
    body = await request.body()
    return PlainTextResponse(f"{request.method} {request.url.path} {len(body)} {request.query_params.get('q')}")

async def stream(request):
    async def chunks():
        for i in range(3):
            yield f"part{i};"
    return StreamingResponse(chunks())

async def upload(request):
    chunks = total = 0
    async for chunk in request.stream():
        if chunk:
            chunks += 1
            total += len(chunk)
            if request.query_params.get("slow"):
                await asyncio.sleep(0.001)
    return PlainTextResponse(f"{chunks} {total}")

async def boom(request):
    raise ValueError("boom")

async def download(request):
    return FileResponse(STATIC + "/big.bin")

async def zerocopy(scope, receive, send):
    # three slices of one file, sent chunked (no content-length), the middle one from the file position
    assert "http.response.zerocopysend" in scope["extensions"]
    await send({"type": "http.response.start", "status": 200, "headers": []})
    with open(STATIC + "/big.bin", "rb") as f:
        await send({"type": "http.response.zerocopysend", "file": f, "offset": 0, "count": 10, "more_body": True})
        f.seek(100)
        await send({"type": "http.response.zerocopysend", "file": f, "count": 20, "more_body": True})
        assert f.tell() == 120
        await send({"type": "http.response.zerocopysend", "file": f, "offset": 1000, "more_body": False})

async def hang(scope, receive, send):
    await asyncio.Event().wait()  # never answers

async def half(scope, receive, send):
    declared = [] if b"unsized" in scope["query_string"] else [(b"content-length", b"100")]
    await send({"type": "http.response.start", "status": 200, "headers": declared})
    await send({"type": "http.response.body", "body": b"x" * 10, "more_body": True})
    if b"returns" not in scope["query_string"]:
        raise RuntimeError("gave up halfway")

async def scope_view(scope, receive, send):
    import json
    message = await receive()
    body = json.dumps({
        "method": scope["method"], "path": scope["path"], "raw_path": scope["raw_path"].decode("latin-1"),
        "query_string": scope["query_string"].decode("latin-1"), "http_version": scope["http_version"],
        "headers": [[name.decode("latin-1"), value.decode("latin-1")] for name, value in scope["headers"]],
        "body": message["body"].decode("latin-1"), "more_body": message["more_body"],
    }).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})

async def raw(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"no length", "more_body": False})

app = Starlette(routes=[
    Route("/echo", echo, methods=["GET", "POST"]),
    Route("/stream", stream),
    Route("/boom", boom),
    Route("/whoami", whoami),
    Route("/upload", upload, methods=["POST"]),
    Mount("/raw", raw),
    Mount("/scope", scope_view),
    Mount("/hang", hang),
    Mount("/half", half),
    Route("/download", download),
    Mount("/zerocopy", zerocopy),
    Mount("/static", StaticFiles(directory=STATIC)),
])
'''
