"""Any bytes a client sends get a 4xx with a stable code, never a 5xx; oversized uploads get a 413."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import AsyncTestClient

from eval.server import free_port
from search_api.app import MAX_BODY_BYTES, create_app
from search_api.body_gate import MAX_DEPTH, Refused, check_body
from search_api.schemas import DocumentsRequest, SearchRequest
from search_api.settings import ApiSettings
from tests.conftest import HashingEncoder
from tests.search_api.conftest import ADMIN_KEY, serving

KEY = {"X-API-Key": ADMIN_KEY}
JSON = {"content-type": "application/json"}
VALID_SEARCH = json.dumps({"query": "断剑客", "top_k": 3, "filters": {"kind": "character"}}).encode()
VALID_DOCS = json.dumps(
    {"documents": [{"id": "d1", "title": "沈青崖", "text": "剑客。", "metadata": {"realm": "筑基"}}]},
    ensure_ascii=False,
).encode()


def _refusal(body: bytes, schema: type | None = SearchRequest) -> tuple[int, str, str | None]:
    with pytest.raises(Refused) as refused:
        check_body(body, schema)
    return refused.value.status, refused.value.code, refused.value.field


@pytest.mark.unit
@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        (b'{"query": "\xff\xfe"}', "invalid_encoding", None),  # not UTF-8
        (b'{"query": "\xe6\xb2"}', "invalid_encoding", None),  # a character cut in half
        (b'\xef\xbb\xbf{"query": "x"}', "invalid_encoding", None),  # a byte-order mark
        (b"", "malformed_json", None),
        (b'{"query": "x"', "malformed_json", None),
        (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "nesting_too_deep", None),
        (b'{"query": "a\\u0000b"}', "invalid_character", "query"),
        (b'{"query": "x", "top_k": "10"}', "invalid_type", "top_k"),  # no string-to-int coercion
        (b'{"query": "x", "cache": "true"}', "invalid_type", "cache"),
        (b'{"query": "x", "top_k": 1e400}', "number_out_of_range", None),
        (b'{"query": "x", "top_k": 99999999999999999999}', "number_out_of_range", "top_k"),
        (b'{"query": "x", "colour": 1}', "unknown_field", "colour"),
        (b'{"top_k": 3}', "missing_field", "query"),
    ],
)
def test_bad_bodies_get_their_code(body: bytes, code: str, field: str | None) -> None:
    assert _refusal(body) == (400, code, field)


@pytest.mark.unit
def test_valid_bodies_pass_and_an_untyped_route_may_be_posted_to_empty() -> None:
    check_body(VALID_SEARCH, SearchRequest)
    check_body(VALID_DOCS, DocumentsRequest)
    check_body(b"", None)
    assert _refusal(b'{"documents": [{"id": "d1", "text": "x\\u0000"}]}', DocumentsRequest)[1:] == (
        "invalid_character",
        "documents[0].text",
    )


@pytest.fixture(scope="module")
async def app_client(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[AsyncTestClient[Litestar]]:
    from retrieval.settings import load_settings
    from tests.search_api.conftest import api

    data = tmp_path_factory.mktemp("gate") / "data"
    settings = api(load_settings(environ={"SEARCH_DATA_DIR": str(data)}), admin_key=ADMIN_KEY)
    async with serving(settings) as client:
        yield client


@pytest.mark.integration
async def test_the_served_app_answers_bad_bytes_with_4xx(app_client: AsyncTestClient[Litestar]) -> None:
    cases = {
        b'{"query": "\xff\xfe"}': "invalid_encoding",
        b'{"query": "x", "top_k": "10"}': "invalid_type",
        b'{"query": "a\\u0000"}': "invalid_character",
    }
    for body, code in cases.items():
        reply = await app_client.post(
            "/v1/search", content=body, headers={"content-type": "application/json"}
        )
        assert reply.status_code == 400 and reply.json()["code"] == code, (body, reply.text)
        assert reply.json()["request_id"]
    ok = await app_client.post(
        "/v1/search", content=VALID_SEARCH, headers={"content-type": "application/json"}
    )
    assert ok.status_code == 200 and ok.json()["top_k"] == 3
    # Documents carrying a NUL never reach the store; nothing half-written remains.
    bad = json.dumps({"documents": [{"id": "nul-1", "text": "a\u0000b"}]}).encode()
    refused = await app_client.post("/v1/documents", content=bad, headers=KEY)
    assert refused.status_code == 400 and refused.json()["code"] == "invalid_character"
    assert (await app_client.delete("/v1/documents/nul-1", headers=KEY)).status_code == 404


def _mutations() -> st.SearchStrategy[bytes]:
    """Valid bodies with bytes flipped, cut, inserted or repeated, and plain random bytes."""

    def mutate(base: bytes, position: int, data: bytes, how: str) -> bytes:
        at = position % (len(base) + 1)
        if how == "insert":
            return base[:at] + data + base[at:]
        if how == "replace":
            return base[:at] + data + base[at + len(data) :]
        if how == "cut":
            return base[:at]
        return base[:at] * 3

    return st.one_of(
        st.binary(max_size=300),
        st.builds(
            mutate,
            st.sampled_from([VALID_SEARCH, VALID_DOCS]),
            st.integers(min_value=0, max_value=400),
            st.binary(min_size=1, max_size=8),
            st.sampled_from(["insert", "replace", "cut", "repeat"]),
        ),
    )


@pytest.mark.integration
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_mutations(), path=st.sampled_from(["/v1/search", "/v1/documents", "/v1/admin/reindex"]))
async def test_no_byte_sequence_gets_a_server_error(
    app_client: AsyncTestClient[Litestar], body: bytes, path: str
) -> None:
    reply = await app_client.post(path, content=body, headers={**KEY, "content-type": "application/json"})
    assert reply.status_code < 500, (path, body, reply.text)
    if reply.status_code >= 400:
        assert set(reply.json()) >= {"code", "message"}, reply.text


@pytest.fixture(scope="module")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app under uvicorn on a loopback port: only a real server shows what a client reads."""
    from retrieval.settings import load_settings
    from tests.search_api.conftest import api

    data = tmp_path_factory.mktemp("gate-http") / "data"
    settings: ApiSettings = api(load_settings(environ={"SEARCH_DATA_DIR": str(data)}))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, encoder=HashingEncoder()), host="127.0.0.1", port=port)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600  # generous: only a broken start-up takes long here
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/v1/ready", timeout=2).status_code == 200:
                    break
            time.sleep(0.1)
        yield url
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.mark.integration
def test_a_6_mb_body_gets_a_413_the_client_reads(real_server: str) -> None:
    big = b'{"query": "' + b"x" * (6 * 1024 * 1024) + b'"}'
    assert len(big) > MAX_BODY_BYTES
    declared = httpx.post(f"{real_server}/v1/search", content=big, timeout=60)
    assert declared.status_code == 413 and declared.json()["code"] == "body_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the gate stops reading at the limit
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    chunked = httpx.post(f"{real_server}/v1/search", content=chunks(), timeout=60)
    assert chunked.status_code == 413 and chunked.json()["code"] == "body_too_large"
    # A client that is still uploading when the 413 is decided (slowly, in pieces) must finish
    # sending and read the answer, not meet a reset connection.
    host, port = real_server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as conn:
        head = f"POST /v1/search HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        conn.sendall(f"{head}Content-Length: {len(big)}\r\n\r\n".encode())
        for start in range(0, len(big), 65536):
            conn.sendall(big[start : start + 65536])
            time.sleep(0.001)
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            piece = conn.recv(65536)
            if not piece:
                break
            reply += piece
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b'"code":"body_too_large"' in reply
    # The server is still there for the next client.
    assert httpx.post(f"{real_server}/v1/search", content=VALID_SEARCH, timeout=30).status_code == 200
