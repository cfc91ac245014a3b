"""Between CoCalc's outputs and notebook cells, both ways.

CoCalc returns IOPub contents with ``output_type`` (and a few keys) stripped
(docs/cocalc-api.md §5). :func:`jupyter_outputs` puts the types back, so any run becomes a
notebook cell: ``stream``, ``execute_result`` (a bundle with an ``execution_count``),
``display_data`` and ``error``, with images left exactly as they came. :func:`cocalc_outputs`
strips a notebook cell's outputs the way CoCalc does, so an executed notebook's cells read like
any other :class:`~cocalc_tasks.model.results.ExecutionResult`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cocalc_tasks.model.output_items import (
    IMAGE_EXTENSIONS,
    ClearOutput,
    ErrorOutput,
    OtherOutput,
    OutputItem,
    RichOutput,
    Stream,
    TruncationNotice,
)

__all__ = ["cocalc_outputs", "code_cell", "jupyter_outputs", "new_notebook"]


def jupyter_outputs(
    items: Iterable[OutputItem], execution_count: int | None = None
) -> list[dict[str, Any]]:
    """Notebook outputs (nbformat v4) for CoCalc's items; clear markers and unknown items,
    which a saved notebook has no place for, are left out.

    CoCalc's filter makes ``execute_result`` and ``display_data`` look alike. The last bundle
    of a run, when it holds no image, is taken for the value of the cell's last expression
    (``execute_result``, numbered ``execution_count``); every other bundle (plots, ``display``
    calls) is ``display_data``. Either renders the same."""
    items = list(items)
    bundles = [i for i in items if isinstance(i, RichOutput)]
    last = (
        bundles[-1]
        if bundles and not any(m in IMAGE_EXTENSIONS for m in bundles[-1].data)
        else None
    )
    outputs: list[dict[str, Any]] = []
    for item in items:
        match item:
            case Stream(name=name, text=text) | TruncationNotice(name=name, text=text):
                outputs.append({"output_type": "stream", "name": name, "text": text})
            case RichOutput(data=data, metadata=metadata):
                bundle = {"data": dict(data), "metadata": dict(metadata)}
                if item is last:
                    outputs.append(
                        {
                            "output_type": "execute_result",
                            **bundle,
                            "execution_count": execution_count,
                        }
                    )
                else:
                    outputs.append({"output_type": "display_data", **bundle})
            case ErrorOutput(error=error):
                outputs.append(
                    {
                        "output_type": "error",
                        "ename": error.ename,
                        "evalue": error.evalue,
                        "traceback": list(error.raw_traceback),
                    }
                )
            case ClearOutput() | OtherOutput():
                continue
    return outputs


def cocalc_outputs(outputs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A notebook cell's outputs as CoCalc returns them: without ``output_type`` and
    ``execution_count``, and without empty fields (an empty ``metadata``)."""
    dropped = ("output_type", "execution_count")
    return [{k: v for k, v in o.items() if k not in dropped and v != {}} for o in outputs]


def code_cell(source: str, outputs: list[dict[str, Any]], execution_count: int | None) -> Any:
    import nbformat

    cell = nbformat.v4.new_code_cell(source, execution_count=execution_count)
    cell.outputs = [nbformat.from_dict(o) for o in outputs]
    return cell


def new_notebook(cells: list[Any], kernel: str | None, language: str | None = None) -> Any:
    """A v4 notebook of ``cells`` for ``kernel``, valid under ``nbformat.validate``."""
    import nbformat

    nb = nbformat.v4.new_notebook(cells=cells)
    if kernel:
        nb.metadata["kernelspec"] = {
            "name": kernel,
            "display_name": kernel,
            "language": language or "python",
        }
    nbformat.validate(nb)
    return nb
