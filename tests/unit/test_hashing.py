"""compute_hash reproduces CoCalc's digests (docs/cocalc-api.md §7.2)."""

from __future__ import annotations

import pytest

from cocalc_tasks import compute_hash
from cocalc_tasks.model.hashing import js_trim


@pytest.mark.parametrize(
    ("kwargs", "digest"),
    [
        (
            {"input": "print('hello world')", "kernel": "python3"},
            "68451ab83bd1d76484243bf2bcbf7efb8ca78c9d",
        ),
        ({"input": "2+3", "kernel": "python3"}, "a3dc72f6ad2fac88719d4e1278fb8884f16b0605"),
        (
            {"input": "print(a+b)", "kernel": "Python3 ", "history": ["a=2", " b=3\n"]},
            "7aef4d1b77bf1df950b5eed14f39f84429d528d2",
        ),
        (
            {
                "input": "x = 'éé 😀'\tprint(x)\n",
                "kernel": "python3",
                "project_id": "6e75dbf1-0342-4249-9dce-6b21648656e9",
                "path": "work",
            },
            "9a040c9a55fdde261c0c1640d7c83ced4534e09d",
        ),
        (
            {"input": 'ctrl\x01\x1f"\\', "kernel": "python3"},
            "e620108d4a48c9e41105a2eff768c80b5d8891df",
        ),
    ],
)
def test_documented_digests(kwargs: dict[str, object], digest: str) -> None:
    assert compute_hash(**kwargs) == digest  # type: ignore[arg-type]


def test_js_trim_differs_from_str_strip() -> None:
    assert js_trim("\ufeffx\ufeff") == "x"  # JS trims BOM, Python does not
    assert js_trim("\x1cx\x85") == "\x1cx\x85"  # Python strips these, JS does not


def test_every_field_changes_the_digest() -> None:
    base = compute_hash("1", "python3")
    assert compute_hash("2", "python3") != base
    assert compute_hash("1", "bash") != base
    assert compute_hash("1", "python3", ["a=1"]) != base
    assert compute_hash("1", "python3", project_id="6e75dbf1-0342-4249-9dce-6b21648656e9") != base
    assert compute_hash("1", "python3", path="x") != base
