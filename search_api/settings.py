"""The API's settings: its address, keys, request limits and rate limit, beside the engine's.

Read from the same files and environment as the engine's (`retrieval.settings.read_config`);
`load_api_settings` also refuses a section that no layer knows, so a typo in a settings file stops
`search-api` instead of being ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrieval.settings import NAMED_ENV, SECTIONS, Settings, build_sections, read_config, settings_from


@dataclass(frozen=True)
class ServiceSettings:
    """Where the API listens and who may use it."""

    host: str = "127.0.0.1"
    port: int = 8000
    # Keys stay out of reprs (and so out of any log line that prints the settings).
    admin_key: str = field(default="", repr=False)
    """Plain admin key (`SEARCH_API_ADMIN_KEY`); with `admin_key_hashes`, writes need one of them."""
    admin_key_hashes: tuple[str, ...] = field(default=(), repr=False)
    """`sha256:<hex>` digests of further admin keys (`search-api hash-key`)."""
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    """Plain search keys (`SEARCH_API_KEYS`, comma-separated); any search key makes search need one."""
    api_key_hashes: tuple[str, ...] = field(default=(), repr=False)
    """`sha256:<hex>` digests of search keys."""
    cors_origins: tuple[str, ...] = ()


@dataclass(frozen=True)
class SearchLimits:
    """Request limits."""

    max_query_chars: int = 512
    max_top_k: int = 100
    max_offset: int = 1000
    max_documents_per_request: int = 256


@dataclass(frozen=True)
class LimitsSettings:
    """Rate limiting per API key, else per client address; 0 requests turns it off."""

    rate_limit: int = 0
    rate_limit_unit: str = "second"


@dataclass(frozen=True)
class ApiSettings:
    """The engine's settings plus the API's own sections."""

    engine: Settings = field(default_factory=Settings)
    service: ServiceSettings = field(default_factory=ServiceSettings)
    search: SearchLimits = field(default_factory=SearchLimits)
    limits: LimitsSettings = field(default_factory=LimitsSettings)


API_SECTIONS: Mapping[str, type[Any]] = {
    "service": ServiceSettings,
    "search": SearchLimits,
    "limits": LimitsSettings,
}

API_ENV: Mapping[str, tuple[str, str]] = {
    "SEARCH_API_HOST": ("service", "host"),
    "SEARCH_API_PORT": ("service", "port"),
    "SEARCH_API_ADMIN_KEY": ("service", "admin_key"),
    "SEARCH_API_KEYS": ("service", "api_keys"),
    "SEARCH_CORS_ORIGINS": ("service", "cors_origins"),
}
"""Well-known variables of the API (README "Configuration"), mapped to (section, key)."""


def load_api_settings(
    config_file: Path | None = None, environ: Mapping[str, str] | None = None
) -> ApiSettings:
    """Engine and API settings from the defaults, an override TOML (`SEARCH_CONFIG`) and the environment."""
    sections = {**SECTIONS, **API_SECTIONS}
    merged = read_config(sections, {**NAMED_ENV, **API_ENV}, config_file, environ)
    unknown = set(merged) - set(sections)
    if unknown:
        raise ValueError(f"unknown settings section(s): {sorted(unknown)}")
    return ApiSettings(engine=settings_from(merged, environ), **build_sections(API_SECTIONS, merged))
