"""ExecutionResult handles every documented output shape."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cocalc_tasks import CocalcExecutionError, ExecutionResult, KernelSpec
from cocalc_tasks.model.results import RemoteError, item_kind, strip_ansi

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()


def make(*items: dict[str, object], **kw: object) -> ExecutionResult:
    return ExecutionResult(outputs=list(items), **kw)  # type: ignore[arg-type]


def test_stream_text_as_string_and_list() -> None:
    r = make(
        {"name": "stdout", "text": "a\n"},
        {"name": "stderr", "text": "warn\n"},
        {
            "name": "stdout",
            "output_type": "stream",
            "text": ["Output truncated since it exceeded the global output limit of 10 characters"],
        },
    )
    assert r.stdout.startswith("a\nOutput truncated")
    assert r.stderr == "warn\n"
    assert r.truncated


def test_plain_list_text_is_not_a_truncation() -> None:
    assert not make({"name": "stdout", "text": ["hello"]}).truncated


def test_data_with_metadata_transient_and_json_objects() -> None:
    r = make(
        {"data": {"text/plain": "7 * 17^2"}},
        {
            "data": {"application/json": {"a": [1, 2]}, "text/plain": "<JSON>"},
            "metadata": {"application/json": {"expanded": False}},
        },
        {"data": {"text/plain": "'b'"}, "transient": {"display_id": "abc"}},
    )
    assert r.text == "7 * 17^2\n<JSON>\n'b'"
    assert r.data[1]["application/json"] == {"a": [1, 2]}
    assert json.loads(json.dumps(r.to_dict()))["outputs"][1]["metadata"]


def test_clear_marker_is_classified_and_ignored() -> None:
    r = make({"wait": False}, {"name": "stdout", "text": "2\n"})
    assert item_kind(r.outputs[0]) == "clear"
    assert r.stdout == "2\n" and r.ok


def test_images_and_save(tmp_path: Path) -> None:
    r = make(
        {"data": {"image/png": PNG, "text/plain": "<Figure>"}},
        {"data": {"image/svg+xml": "<svg/>"}},
    )
    images = r.images
    assert [(i.mime, i.index) for i in images] == [("image/png", 0), ("image/svg+xml", 1)]
    paths = r.save_images(tmp_path / "imgs")
    assert [p.name for p in paths] == ["output-0.png", "output-1.svg"]
    assert paths[0].read_bytes().startswith(b"\x89PNG") and paths[1].read_text() == "<svg/>"


def test_error_and_raise_for_error() -> None:
    r = make(
        {"name": "stdout", "text": "before\n"},
        {"ename": "ValueError", "evalue": "bad", "traceback": ["\x1b[31mValueError\x1b[0m: bad"]},
    )
    assert not r.ok
    with pytest.raises(CocalcExecutionError) as info:
        r.raise_for_error()
    assert info.value.ename == "ValueError"
    assert info.value.traceback == "ValueError: bad"
    assert info.value.result.stdout == "before\n"
    assert "ValueError: bad" in str(info.value)
    assert make({"name": "stdout", "text": "x"}).raise_for_error().ok


def test_bash_nonzero_exit_error_without_name() -> None:
    r = make({"ename": "", "evalue": "2", "traceback": []})
    assert not r.ok and str(r.error) == "2"
    with pytest.raises(CocalcExecutionError, match="error: 2"):
        r.raise_for_error()


def test_round_trip_keeps_everything() -> None:
    r = make(
        {"name": "stdout", "text": "x"},
        {"data": {"text/plain": "1"}},
        created=datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
        cache_id=7,
        kernel="python3",
        hash="a" * 40,
        elapsed=0.25,
        project_id=None,
        path="w",
    )
    again = ExecutionResult.from_dict(json.loads(json.dumps(r.to_dict())))
    assert again == r
    assert again.to_dict() == r.to_dict()


def test_from_response_rejects_non_list_output() -> None:
    with pytest.raises(TypeError):
        ExecutionResult.from_response({"output": "nope"})


def test_strip_ansi() -> None:
    assert strip_ansi("\x1b[38;5;28;01mdef\x1b[39;00m x") == "def x"


def test_kernelspec_round_trip_keeps_optional_keys_optional() -> None:
    spec = {
        "name": "bash",
        "display_name": "Bash",
        "language": "bash",
        "env": {"PS1": "$"},
        "resource_dir": "/k",
        "argv": ["bash"],
    }
    assert KernelSpec.from_dict(spec).to_dict() == spec
    with_meta = {**spec, "interrupt_mode": "signal", "metadata": {"debugger": True}}
    assert KernelSpec.from_dict(with_meta).to_dict() == with_meta


def test_public_surface_is_complete_and_lazy() -> None:
    import subprocess
    import sys

    import cocalc_tasks
    from cocalc_tasks import errors

    assert sorted(cocalc_tasks.__all__) == sorted({*cocalc_tasks._EXPORTS, *errors.__all__})
    classes = [n for n in errors.__all__ if n != "error_from_message"]
    assert all(issubclass(getattr(errors, n), errors.CocalcError) for n in classes)
    for name in cocalc_tasks.__all__:
        assert getattr(cocalc_tasks, name) is not None
    code = (
        "import sys, cocalc_tasks; "
        "print('requests' in sys.modules, 'cocalc_tasks.model.results' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_items_are_parsed_once_into_typed_outputs() -> None:
    from cocalc_tasks.model.output_items import (
        ClearOutput,
        ErrorOutput,
        OtherOutput,
        RichOutput,
        Stream,
        TruncationNotice,
    )

    raw = [
        {"name": "stdout", "text": "a\n"},
        {
            "name": "stdout",
            "output_type": "stream",
            "text": ["Output truncated since it exceeded x"],
        },
        {"data": {"text/plain": "2"}, "execution_count": 3},
        {"wait": True},
        {"ename": "E", "evalue": "v", "traceback": ["\x1b[31mE: v\x1b[0m"]},
        {"status": "ok"},
    ]
    r = make(*raw)
    kinds = [type(item) for item in r.items]
    assert kinds == [Stream, TruncationNotice, RichOutput, ClearOutput, ErrorOutput, OtherOutput]
    assert r.items is r.items  # parsed once
    assert [item.raw for item in r.items] == raw  # nothing lost
    rich = r.items[2]
    assert isinstance(rich, RichOutput) and rich.execution_count == 3 and rich.text == "2"
    error = r.items[4]
    assert isinstance(error, ErrorOutput) and error.error.traceback == "E: v"


def test_compact_dict_gives_each_image_of_a_bundle_its_own_path() -> None:
    from cocalc_tasks.reporting.results import compact_dict

    svg = "<svg xmlns='http://www.w3.org/2000/svg'/>"
    r = make({"data": {"image/png": PNG, "image/svg+xml": svg, "text/plain": "<Figure>"}})
    assert [i.mime for i in r.images] == ["image/png", "image/svg+xml"]
    data = compact_dict(r, image_paths=["/out/0.png", "/out/1.svg"])["outputs"][0]["data"]
    assert data["image/png"] == "/out/0.png"
    assert data["image/svg+xml"] == "/out/1.svg"
    assert data["text/plain"] == "<Figure>"


def test_earlier_helpers_keep_their_names_and_answers() -> None:
    from cocalc_tasks.model.results import remote_error, stream_text

    assert stream_text({"name": "stdout", "text": ["a", "b"]}) == "ab"
    assert stream_text({"data": {"text/plain": "1"}}) == ""
    error = remote_error({"ename": "E", "evalue": "v", "traceback": ["\x1b[31mE: v\x1b[0m"]})
    assert (error.ename, error.evalue, error.traceback) == ("E", "v", "E: v")
    assert remote_error({"name": "stdout", "text": "x"}) == RemoteError("", "")
