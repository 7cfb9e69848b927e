"""API keys: admin keys guard writes, search keys (when configured) guard search; keys never leak."""

from __future__ import annotations

import dataclasses
import io
import logging
from collections.abc import AsyncIterator

import pytest
from litestar.testing import AsyncTestClient

from search_api.app import create_app
from search_api.auth import KeyRing, hash_key
from search_api.cli import main
from search_api.settings import ApiSettings, load_api_settings
from tests.conftest import HashingEncoder
from tests.search_api.conftest import ADMIN_KEY, serving

HASHED_ADMIN = "second-admin-key-made-by-hash-key"
SEARCH_KEY = "search-key-abcdefghijklmnop"
HASHED_SEARCH = "hashed-search-key-qrstuvwxyz"
DOC = {
    "documents": [{"id": "char-9", "title": "林照夜", "kind": "character", "text": "林照夜是北境的刀客。"}]
}


@pytest.fixture
async def locked(api_settings: ApiSettings) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    """Admin key plain and hashed; search keys plain and hashed: search needs a key."""
    service = dataclasses.replace(
        api_settings.service,
        admin_key_hashes=(hash_key(HASHED_ADMIN),),
        api_keys=(SEARCH_KEY,),
        api_key_hashes=(hash_key(HASHED_SEARCH),),
    )
    async with serving(dataclasses.replace(api_settings, service=service)) as client:
        yield client


@pytest.mark.unit
def test_key_ring_accepts_plain_and_hashed_keys_only() -> None:
    ring = KeyRing.of(["alpha"], [hash_key("beta")])
    assert ring.accepts("alpha") and ring.accepts("beta")
    assert not ring.accepts("gamma") and not ring.accepts("") and not ring.accepts("alpha ")
    assert not KeyRing.of([""], [])  # an empty admin key means no key, not "the empty key"
    assert "alpha" not in repr(ring) and hash_key("beta") not in repr(ring)


@pytest.mark.unit
@pytest.mark.parametrize("entry", ["the-plain-key-pasted-by-mistake", "sha256:abc", "md5:" + "0" * 64])
def test_a_malformed_digest_stops_start_up_without_echoing_it(api_settings: ApiSettings, entry: str) -> None:
    service = dataclasses.replace(api_settings.service, api_key_hashes=(entry,))
    with pytest.raises(ValueError, match="api_key_hashes") as caught:
        create_app(dataclasses.replace(api_settings, service=service), encoder=HashingEncoder())
    assert entry not in str(caught.value)


@pytest.mark.unit
def test_keys_come_from_the_environment_and_stay_out_of_reprs() -> None:
    env = {"SEARCH_API_ADMIN_KEY": "adm-secret", "SEARCH_API_KEYS": "k-one, k-two"}
    settings = load_api_settings(environ=env)
    assert settings.service.admin_key == "adm-secret"
    assert settings.service.api_keys == ("k-one", "k-two")
    shown = repr(settings)
    assert "adm-secret" not in shown and "k-one" not in shown


@pytest.mark.unit
def test_hash_key_cli_prints_the_digest_of_a_key_read_from_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("my-key\n"))
    assert main(["--log-format", "text", "hash-key"]) == 0
    assert capsys.readouterr().out.strip() == hash_key("my-key")
    assert main(["--log-format", "text", "hash-key", "--generate"]) == 0
    key_line, digest_line = capsys.readouterr().out.strip().splitlines()
    assert digest_line.split()[-1] == hash_key(key_line.split()[-1])


@pytest.mark.integration
async def test_search_is_open_by_default(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    assert (await client.post("/v1/search", json={"query": "断剑客"})).status_code == 200


@pytest.mark.integration
async def test_writes_need_an_admin_key_plain_or_hashed(locked: AsyncTestClient) -> None:  # type: ignore[type-arg]
    missing = await locked.post("/v1/documents", json=DOC)
    assert missing.status_code == 401 and missing.json()["code"] == "missing_api_key"
    for wrong in ("nope", SEARCH_KEY, hash_key(HASHED_ADMIN)):  # a search key or a digest is no admin key
        reply = await locked.post("/v1/documents", json=DOC, headers={"X-API-Key": wrong})
        assert reply.status_code == 403 and reply.json()["code"] == "invalid_api_key", wrong
    for key in (ADMIN_KEY, HASHED_ADMIN):
        assert (await locked.post("/v1/documents", json=DOC, headers={"X-API-Key": key})).status_code == 200
    reindex = await locked.get("/v1/admin/reindex", headers={"X-API-Key": SEARCH_KEY})
    assert reindex.status_code == 403 and reindex.json()["code"] == "invalid_api_key"


@pytest.mark.integration
async def test_search_needs_a_key_once_search_keys_are_configured(locked: AsyncTestClient) -> None:  # type: ignore[type-arg]
    body = {"query": "断剑客"}
    missing = await locked.post("/v1/search", json=body)
    assert missing.status_code == 401 and missing.json()["code"] == "missing_api_key"
    assert "X-API-Key" in missing.json()["message"]
    wrong = await locked.post("/v1/search", json=body, headers={"X-API-Key": "nope"})
    assert wrong.status_code == 403 and wrong.json()["code"] == "invalid_api_key"
    for key in (SEARCH_KEY, HASHED_SEARCH, ADMIN_KEY, HASHED_ADMIN):
        assert (await locked.post("/v1/search", json=body, headers={"X-API-Key": key})).status_code == 200
    # Probes stay open so orchestrators need no key.
    assert (await locked.get("/v1/health")).status_code == 200


@pytest.mark.integration
async def test_keys_never_reach_the_logs(
    locked: AsyncTestClient,  # type: ignore[type-arg]
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    attempts = [SEARCH_KEY, ADMIN_KEY, "wrong-key-that-someone-typed"]
    for key in attempts:
        await locked.post("/v1/search", json={"query": "断剑客"}, headers={"X-API-Key": key})
        await locked.post("/v1/documents", json=DOC, headers={"X-API-Key": key})
    assert caplog.records  # the access log did write lines
    for key in attempts:
        assert key not in caplog.text
