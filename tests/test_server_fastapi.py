"""A real FastAPI app on ``python -m fastserve`` over loopback, and the same app through TestClient."""
import signal
import socket
import subprocess
import sys
import textwrap
import time

import httpx2
import pytest
from websockets.sync.client import connect

APP = '''
from fastapi import FastAPI, File, Form, UploadFile, WebSocket
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

app = FastAPI()


class Item(BaseModel):
    name: str
    price: float


@app.post("/items")
async def create(item: Item):
    return {"name": item.name, "total": item.price * 2}


@app.post("/upload")
async def upload(note: str = Form(...), file: UploadFile = File(...)):
    data = await file.read()
    return {"note": note, "filename": file.filename, "size": len(data), "first": data[:4].decode()}


@app.get("/stream")
async def stream():
    async def lines():
        for i in range(5):
            yield f"line {i}\\n"
    return StreamingResponse(lines(), media_type="text/plain")


@app.websocket("/ws")
async def echo(websocket: WebSocket):
    await websocket.accept()
    async for message in websocket.iter_text():
        await websocket.send_text(message.upper())
'''


@pytest.fixture(scope="module")
def fastapi_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("fastapi")
    (base / "fastapi_app.py").write_text(textwrap.dedent(APP))
    return base


@pytest.fixture(scope="module")
def server(fastapi_dir):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastserve", "fastapi_app:app", "--port", str(port)],
        cwd=fastapi_dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()
            time.sleep(0.05)
    yield f"127.0.0.1:{port}"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0


def check_app(client):
    assert client.post("/items", json={"name": "pen", "price": 1.5}).json() == {"name": "pen", "total": 3.0}
    assert client.post("/items", json={"name": "pen"}).status_code == 422
    content = b"%PDF" + b"x" * 2_000_000
    response = client.post("/upload", data={"note": "big"}, files={"file": ("doc.pdf", content, "application/pdf")})
    assert response.json() == {"note": "big", "filename": "doc.pdf", "size": len(content), "first": "%PDF"}
    with client.stream("GET", "/stream") as streamed:
        assert "".join(streamed.iter_text()) == "".join(f"line {i}\n" for i in range(5))


def test_fastapi_over_loopback(server):
    with httpx2.Client(base_url=f"http://{server}", timeout=10) as client:
        check_app(client)


def test_fastapi_websocket_over_loopback(server):
    with connect(f"ws://{server}/ws", open_timeout=5, close_timeout=5) as ws:
        for word in ["fast", "serve"]:
            ws.send(word)
            assert ws.recv(timeout=5) == word.upper()


def test_same_app_through_testclient(fastapi_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(fastapi_dir))
    from fastapi_app import app

    from fastserve.testclient import TestClient

    with TestClient(app) as client:
        check_app(client)
        with client.websocket_connect("/ws") as ws:
            ws.send_text("hi")
            assert ws.receive_text() == "HI"
