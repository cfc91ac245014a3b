"""CocalcCredentials: secret handling, client building, registration, Prefect's block standards."""

from __future__ import annotations

import subprocess
import sys

import pytest
from prefect.testing.standard_test_suites import BlockStandardTestSuite

from cocalc_tasks import CocalcClient
from prefect_tasks import CocalcCredentials
from prefect_tasks.credentials import LOGO_URL
from tests.conftest import ROOT, SECRET_KEY
from tests.prefect.conftest import AT_STARTUP


def test_entry_point_registered_the_block_type_at_server_start() -> None:
    """Read when the harness's server started, before any test could save or register the
    block, so only the ``prefect.collections`` entry point can have put it there."""
    block_type = AT_STARTUP["block_type"]
    assert block_type is not None and block_type.name == "CoCalc Credentials"


class TestBlockStandards(BlockStandardTestSuite):
    @pytest.fixture
    def block(self) -> type[CocalcCredentials]:
        return CocalcCredentials

    def test_has_a_valid_image(self, block: type[CocalcCredentials]) -> None:
        """Prefect's version downloads the logo; offline, check the file the URL publishes."""
        from PIL import Image

        assert block._logo_url == LOGO_URL
        path = LOGO_URL.split("/main/", 1)[1]
        with Image.open(ROOT / path) as image:
            image.verify()
            assert image.format == "PNG" and image.size == (48, 48)


def test_fields_slug_and_descriptions() -> None:
    assert CocalcCredentials.get_block_type_slug() == "cocalc-credentials"
    fields = CocalcCredentials.model_fields
    assert set(fields) >= {"api_key", "host", "project_id", "verify", "timeout", "api"}
    assert all(f.description for f in fields.values())


def test_secret_is_masked_and_client_is_built() -> None:
    block = CocalcCredentials(api_key=SECRET_KEY, host="http://127.0.0.1:9", timeout=12)
    assert SECRET_KEY not in repr(block) and SECRET_KEY not in str(block.model_dump())
    client = block.get_client()
    assert isinstance(client, CocalcClient)
    assert client.has_api_key and client.host == "http://127.0.0.1:9"
    assert client.timeout == (10.0, 12.0) and client.verify is True
    assert SECRET_KEY not in repr(client)
    assert client.api == "auto" and CocalcCredentials(api="project").get_client().api == "project"


def test_save_and_load_round_trip() -> None:
    CocalcCredentials(api_key=SECRET_KEY, host="http://h.example").save("roundtrip", overwrite=True)
    loaded = CocalcCredentials.load("roundtrip")
    assert loaded.api_key is not None and loaded.api_key.get_secret_value() == SECRET_KEY
    assert loaded.host == "http://h.example"


def test_block_register_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "prefect", "block", "register", "-m", "prefect_tasks"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # CocalcCredentials and CocalcJob
    assert "Successfully registered 2 blocks" in done.stdout


def test_check_tells_a_known_key_from_an_unknown_one(local_server: str) -> None:
    from cocalc_tasks import CocalcAuthError

    good = CocalcCredentials(api_key=SECRET_KEY, host=local_server)
    me = good.check()
    assert me.kind == "account" and me.host == local_server
    assert "from the CocalcCredentials block (api_key)" in me.describe()
    with pytest.raises(CocalcAuthError, match="does not know the API key") as info:
        CocalcCredentials(api_key="sk-typo", host=local_server).check()
    assert "sk-typo" not in str(info.value)
    assert CocalcCredentials(host=local_server).check().kind == "anonymous"
