"""Rate limiting: per API key, else per client address; 429 with the stable error body."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest
from litestar.testing import AsyncTestClient

from search_api.app import rate_limit_config
from search_api.settings import ApiSettings, LimitsSettings
from tests.search_api.conftest import ADMIN_KEY, serving

LIMIT = 3


@pytest.fixture
async def limited(api_settings: ApiSettings) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    limits = LimitsSettings(rate_limit=LIMIT, rate_limit_unit="minute")
    settings = dataclasses.replace(api_settings, limits=limits)
    async with serving(settings) as client:
        yield client


@pytest.mark.unit
def test_rate_limit_is_off_by_default_and_bad_settings_are_refused() -> None:
    assert rate_limit_config(LimitsSettings()) is None
    with pytest.raises(ValueError, match="rate_limit_unit"):
        rate_limit_config(LimitsSettings(rate_limit=5, rate_limit_unit="fortnight"))
    with pytest.raises(ValueError, match="rate_limit"):
        rate_limit_config(LimitsSettings(rate_limit=-1))


@pytest.mark.integration
async def test_over_the_limit_answers_429_rate_limited(limited: AsyncTestClient) -> None:  # type: ignore[type-arg]
    body = {"query": "断剑客"}
    for _ in range(LIMIT):
        assert (await limited.post("/v1/search", json=body)).status_code == 200
    over = await limited.post("/v1/search", json=body, headers={"X-Request-ID": "rl-1"})
    assert over.status_code == 429
    assert over.json()["code"] == "rate_limited"
    assert over.json()["request_id"] == "rl-1"
    assert over.headers["RateLimit-Remaining"] == "0"
    # Probes and scrapes are never limited, so an orchestrator never reads a throttle as an outage.
    for path in ("/v1/health", "/v1/ready", "/metrics"):
        assert (await limited.get(path)).status_code == 200, path


@pytest.mark.integration
async def test_each_valid_api_key_has_its_own_budget_and_made_up_keys_share_the_address_one(
    api_settings: ApiSettings,
) -> None:
    service = dataclasses.replace(api_settings.service, api_keys=("client-a", "client-b"))
    settings = dataclasses.replace(
        api_settings, service=service, limits=LimitsSettings(rate_limit=LIMIT, rate_limit_unit="minute")
    )
    body = {"query": "断剑客"}
    async with serving(settings) as client:
        for key in ("client-a", "client-b", ADMIN_KEY):
            for _ in range(LIMIT):
                reply = await client.post("/v1/search", json=body, headers={"X-API-Key": key})
                assert reply.status_code == 200, key
            over = await client.post("/v1/search", json=body, headers={"X-API-Key": key})
            assert over.status_code == 429, key
        # A made-up key is refused (403) but spends the address's budget: rotating keys buys nothing.
        for i in range(LIMIT):
            made_up = await client.post("/v1/search", json=body, headers={"X-API-Key": f"x{i}"})
            assert made_up.status_code == 403
        over = await client.post("/v1/search", json=body, headers={"X-API-Key": "x-new"})
        assert over.status_code == 429 and over.json()["code"] == "rate_limited"
