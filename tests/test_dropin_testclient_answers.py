"""fastserve's ``TestClient`` sees what Starlette's sees, step for step, on a FastAPI app.

One app written from FastAPI's tutorials and advanced guides (lifespan state, cookies, redirects,
streaming, background tasks, exception handlers, middleware, a mounted sub-app, uploads large
enough to spill to disk, WebSockets with dependencies, closes and denials) is driven through the
same steps by Starlette's ``TestClient`` and by fastserve's. Everything a test could look at must
be the same: status, fields in order, body, URL and redirect history, the cookie jar, the values
a WebSocket session returns and the exceptions it raises (type, code, reason, ``args``).
"""

from __future__ import annotations

import contextlib
import re
from typing import Annotated, Any, Callable, Union

import pytest

pytest.importorskip("fastapi")

from fastapi import BackgroundTasks, Cookie, Depends, FastAPI, File, Query, Request, UploadFile, WebSocket  # noqa: E402
from fastapi import WebSocketDisconnect, WebSocketException, status  # noqa: E402
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, StreamingResponse  # noqa: E402
from starlette.testclient import TestClient as StarletteTestClient  # noqa: E402

from fastserve.testclient import TestClient as FastserveTestClient  # noqa: E402


def make_app() -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield {"db": "connected"}

    app = FastAPI(lifespan=lifespan)
    app.state.sent = []
    app.state.closed = []

    @app.middleware("http")
    async def add_header(request: Request, call_next: Callable) -> Any:
        response = await call_next(request)
        response.headers["X-Process"] = "1"
        return response

    class UnicornError(Exception):
        pass

    @app.exception_handler(UnicornError)
    async def unicorn(request: Request, exc: UnicornError) -> JSONResponse:
        return JSONResponse(status_code=418, content={"message": "Oops!"})

    @app.get("/state")
    async def state(request: Request) -> dict:
        return {"db": request.state.db}

    @app.get("/unicorn")
    async def raise_unicorn() -> None:
        raise UnicornError()

    @app.get("/boom")
    async def boom() -> None:
        raise ValueError("boom")

    @app.get("/cookie-set")
    async def cookie_set() -> JSONResponse:
        response = JSONResponse({"ok": True})
        response.set_cookie("session", "abc", httponly=True)
        return response

    @app.get("/cookie-read")
    async def cookie_read(request: Request, session: Annotated[Union[str, None], Cookie()] = None) -> dict:
        return {"session": session, "cookies": request.cookies}

    @app.get("/cookie-delete")
    async def cookie_delete() -> PlainTextResponse:
        response = PlainTextResponse("bye")
        response.delete_cookie("session")
        return response

    @app.get("/redirect")
    async def redirect() -> RedirectResponse:
        return RedirectResponse("/state")

    @app.post("/see-other")
    async def see_other() -> RedirectResponse:
        return RedirectResponse("/method", status_code=303)

    @app.api_route("/method", methods=["GET", "POST"])
    async def method(request: Request) -> dict:
        return {"method": request.method, "body": (await request.body()).decode()}

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def lines():
            for i in range(3):
                yield f"line {i}\n"

        return StreamingResponse(lines(), media_type="text/plain")

    @app.post("/send/{email}")
    async def send(email: str, background_tasks: BackgroundTasks) -> dict:
        background_tasks.add_task(app.state.sent.append, email)  # runs after the response is sent
        return {"queued": email}

    @app.get("/sent")
    async def sent() -> list:
        return app.state.sent

    @app.post("/upload")
    async def upload(files: Annotated[list[UploadFile], File()]) -> list:
        return [[f.filename, f.content_type, f.size, len(await f.read())] for f in files]

    @app.get("/url")
    async def url(request: Request) -> dict:
        return {"url": str(request.url), "root_path": request.scope["root_path"], "client": list(request.client or ())}

    sub = FastAPI()

    @sub.get("/sub")
    async def sub_route(request: Request) -> dict:
        return {"url": str(request.url), "for": str(request.url_for("sub_route"))}

    app.mount("/subapi", sub)

    @app.websocket("/ws")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                await websocket.send_text(f"Message text was: {await websocket.receive_text()}")
        except WebSocketDisconnect as exc:
            app.state.closed.append([exc.code, exc.reason, list(exc.args)])

    @app.get("/closed")
    async def closed() -> list:
        return app.state.closed

    async def cookie_or_token(
        websocket: WebSocket,
        session: Annotated[Union[str, None], Cookie()] = None,
        token: Annotated[Union[str, None], Query()] = None,
    ) -> str:
        if session is None and token is None:
            raise WebSocketException(code=status.WS_1008_POLICY_VIOLATION)
        return session or token  # type: ignore[return-value]

    @app.websocket("/items/{item_id}/ws")
    async def with_token(websocket: WebSocket, item_id: str, value: Annotated[str, Depends(cookie_or_token)]) -> None:
        await websocket.accept()
        await websocket.send_json({"item_id": item_id, "value": value, "db": websocket.state.db})
        await websocket.close(code=4001, reason="done")

    @app.websocket("/deny")
    async def deny(websocket: WebSocket) -> None:
        await websocket.send_denial_response(PlainTextResponse("denied", status_code=401))

    return app


def _response(response: Any) -> dict:
    fields = [(name, re.sub(r"expires=[^;]*", "expires=…", value)) for name, value in response.headers.multi_items()]
    return {
        "status": response.status_code,
        "fields": fields,
        "body": response.content,
        "url": str(response.url),
        "history": [(earlier.status_code, str(earlier.url)) for earlier in response.history],
    }


def _raised(error: BaseException) -> dict:
    return {
        "type": type(error).__name__,
        "args": error.args,
        "code": getattr(error, "code", None),
        "reason": getattr(error, "reason", None),
        "status": getattr(error, "status_code", None),
    }


def _steps(client: Any) -> dict:
    seen: dict = {}

    def step(name: str, action: Callable[[], Any]) -> None:
        try:
            seen[name] = action()
        except Exception as error:  # what a test would see raised is part of the comparison
            seen[name] = _raised(error)

    def websocket(path: str, *sends: str, receives: int = 1, **kwargs: Any) -> Callable[[], list]:
        def session() -> list:
            got = []
            with client.websocket_connect(path, **kwargs) as ws:
                got.append(ws.accepted_subprotocol)
                for text in sends:
                    ws.send_text(text)
                for _ in range(receives):
                    got.append(ws.receive())
            return got

        return session

    spilled = b"x" * (2 * 1024 * 1024)  # past the spooled file's 1 MiB: on disk
    step("state", lambda: _response(client.get("/state")))
    step("unicorn", lambda: _response(client.get("/unicorn")))
    step("boom", lambda: _response(client.get("/boom")))
    step("not found", lambda: _response(client.get("/nowhere")))
    step("cookie set", lambda: _response(client.get("/cookie-set")))
    step("jar", lambda: sorted((c.name, c.value, c.path) for c in client.cookies.jar))
    step("cookie read", lambda: _response(client.get("/cookie-read")))
    step("cookie delete", lambda: _response(client.get("/cookie-delete")))
    step("jar after", lambda: sorted((c.name, c.value) for c in client.cookies.jar))
    step("redirect", lambda: _response(client.get("/redirect")))
    step("redirect kept", lambda: _response(client.get("/redirect", follow_redirects=False)))
    step("see other", lambda: _response(client.post("/see-other", content=b"data")))
    step("background", lambda: _response(client.post("/send/a@example.org")))
    step("sent", lambda: _response(client.get("/sent")))
    step("stream", lambda: _response(client.get("/stream")))
    step("upload", lambda: _response(client.post("/upload", files=[("files", ("a.txt", b"1")), ("files", ("b", spilled))])))
    step("url", lambda: _response(client.get("/url?x=1")))
    step("sub-app", lambda: _response(client.get("/subapi/sub")))
    step("echo", websocket("/ws", "hi", "again", receives=2))
    step("closed", lambda: _response(client.get("/closed")))
    step("token", websocket("/items/foo/ws?token=t", receives=2))
    step("no token", websocket("/items/foo/ws"))
    step("denied", websocket("/deny"))
    step("nowhere", websocket("/nowhere"))
    return seen


@pytest.mark.parametrize("raise_server_exceptions", [True, False])
def test_fastserves_client_sees_what_starlettes_sees(raise_server_exceptions: bool) -> None:
    expected, actual = ({}, {})
    for client_class, seen in ((StarletteTestClient, expected), (FastserveTestClient, actual)):
        with client_class(make_app(), raise_server_exceptions=raise_server_exceptions) as client:
            seen.update(_steps(client))
        root = client_class(make_app(), root_path="/api", base_url="https://example.org")
        with root:
            seen["root path"] = _response(root.get("/url"))
            seen["root path sub-app"] = _response(root.get("/subapi/sub"))
    assert actual.keys() == expected.keys()
    for name in expected:
        assert actual[name] == expected[name], name
