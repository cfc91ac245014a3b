"""Parameters injected papermill's way, in each kernel language; cells typed back from CoCalc."""

from __future__ import annotations

import base64

import nbformat
import pytest

from cocalc_tasks import ExecutionResult
from cocalc_tasks.notebooks.runner import ParameterError, inject_parameters, render_parameters
from tests.conftest import load_fixture
from tests.notebooks.builders import notebook

VALUES = {"n": 10, "name": 'it\'s "x"', "ok": True, "none": None, "xs": [1, 2.5], "m": {"a": 1}}


def test_python_and_sage_read_the_rendered_values_back() -> None:
    source = render_parameters(VALUES, "python")
    scope: dict[str, object] = {}
    exec(source, scope)  # noqa: S102 - our own rendering of known values
    assert {k: scope[k] for k in VALUES} == VALUES
    assert render_parameters(VALUES, "sage") == source


def test_r_and_bash_literals() -> None:
    r = render_parameters({"n": 10, "s": 'a"b', "ok": False, "none": None, "xs": [1, "b"]}, "R")
    assert 'n <- 10L\ns <- "a\\"b"\nok <- FALSE\nnone <- NULL\nxs <- list(1L, "b")' in r
    bash = render_parameters({"n": 10, "s": "it's; rm -rf /", "xs": ["a b", "c"]}, "bash")
    assert "n=10\ns='it'\"'\"'s; rm -rf /'\nxs=('a b' c)" in bash


@pytest.mark.parametrize(
    ("parameters", "language", "message"),
    [
        ({"not a name": 1}, "python", "not an identifier"),
        ({"x": object()}, "python", "cannot write a object"),
        ({"m": {"a": 1}}, "bash", "bash has no mapping values"),
        ({"x": 1}, "cobol", "no parameter syntax for the language 'cobol'"),
    ],
)
def test_what_cannot_be_written_is_refused_by_name(
    parameters: dict[str, object], language: str, message: str
) -> None:
    with pytest.raises(ParameterError, match=message):
        render_parameters(parameters, language)


def test_injected_after_the_parameters_cell_or_first_and_replaced_on_a_rerun() -> None:
    nb = notebook([("a = 1", []), ("n = 3", ["parameters"]), ("n", [])])
    inject_parameters(nb, {"n": 5}, "python")
    assert [c.metadata.get("tags", []) for c in nb.cells] == [
        [],
        ["parameters"],
        ["injected-parameters"],
        [],
    ]
    inject_parameters(nb, {"n": 6}, "python")  # an executed notebook run again
    assert [
        c.source.splitlines()[-1]
        for c in nb.cells
        if "injected-parameters" in c.metadata.get("tags", [])
    ] == ["n = 6"]
    plain = notebook([("a = 1", [])])
    inject_parameters(plain, {"n": 5}, "python")
    assert plain.cells[0].metadata["tags"] == ["injected-parameters"]
    nbformat.validate(nb)


def test_a_run_becomes_a_notebook_cell_with_typed_outputs_and_intact_images() -> None:
    png = ExecutionResult.from_response(load_fixture("execute_display_png.json"))
    cell = png.to_notebook_cell("show()")
    (output,) = [o for o in cell.outputs if "image/png" in o.get("data", {})]
    assert output.output_type == "display_data"
    raw = next(o for o in png.outputs if "data" in o)["data"]["image/png"]
    assert output.data["image/png"] == raw and base64.b64decode(raw).startswith(b"\x89PNG")
    mixed = ExecutionResult.from_response(load_fixture("execute_stdout_and_result_cache_hit.json"))
    cell = mixed.to_notebook_cell("print('computing...'); 5050", execution_count=7)
    kinds = [o.output_type for o in cell.outputs]
    assert kinds == ["stream", "execute_result"] and cell.execution_count == 7
    assert cell.outputs[1].execution_count == 7 and cell.outputs[1].data == {"text/plain": "5050"}
    error = ExecutionResult.from_response(load_fixture("execute_user_exception.json"))
    (err,) = error.to_notebook_cell("1/0").outputs
    assert err.output_type == "error" and err.ename and err.traceback
    nb = nbformat.v4.new_notebook(cells=[cell])
    nbformat.validate(nb)
