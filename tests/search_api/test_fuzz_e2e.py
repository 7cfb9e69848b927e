"""Schemathesis against the real server's OpenAPI schema: no 5xx, every response as documented.

CI runs this small budget; the large run is documented in the README (`st run ... --max-examples 500`).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from eval.server import free_port
from retrieval.encoders.build import BuiltModel
from tests.api_process import ApiProcess
from tests.conftest import seed_model

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

KEY = "fuzz-admin-key"


def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    built_model: BuiltModel, tmp_path_factory: pytest.TempPathFactory
) -> None:
    st = shutil.which("st") or str(Path(sys.executable).with_name("st"))
    data_dir = tmp_path_factory.mktemp("fuzz") / "data"
    seed_model(data_dir, built_model)
    env = {"SEARCH_API_ADMIN_KEY": KEY, "SEARCH_ROUTING_TRAIN_ON_START": "false"}
    server = ApiProcess(data_dir, free_port(), data_dir.parent / "server.log", env=env)
    server.start()
    try:
        result = subprocess.run(
            [
                st,
                "run",
                f"{server.url}/schema/openapi.json",
                "--max-examples",
                "15",
                "--checks",
                "not_a_server_error,response_schema_conformance",
                "--header",
                f"X-API-Key: {KEY}",
                "--seed",
                "7",
            ],
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
    finally:
        server.stop()
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "passed" in result.stdout
