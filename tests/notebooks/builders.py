"""The notebooks the notebook tests run, built with nbformat."""

from __future__ import annotations

from typing import Any

import nbformat


def notebook(
    cells: list[tuple[str, list[str]]], kernel: str = "python3", language: str = "python"
) -> Any:
    """Code cells of ``(source, tags)``, for ``kernel``."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": language}
    nb.cells = [
        nbformat.v4.new_code_cell(source, metadata={"tags": tags} if tags else {})
        for source, tags in cells
    ]
    nbformat.validate(nb)
    return nb


def report(long_seconds: int = 40) -> Any:
    """Five cells: parameters, a matplotlib plot (PNG), a result cell, a cell longer than any
    Jupyter cell limit, and a summary."""
    return notebook(
        [
            ('n = 3\nlabel = "default"', ["parameters"]),
            (
                "%matplotlib inline\nimport matplotlib.pyplot as plt\n"
                "plt.plot(range(n), [i * i for i in range(n)])\nplt.show()",
                [],
            ),
            ("total = sum(range(n))\ntotal", ["result:total"]),
            (f"import time\ntime.sleep({long_seconds})\nprint('slept {long_seconds} s')", []),
            ("print(f'{label}: {total}')", []),
        ]
    )


def sage_report(long_seconds: int = 40) -> Any:
    return notebook(
        [
            ("n = 2023", ["parameters"]),
            (
                "%matplotlib inline\nimport matplotlib.pyplot as plt\n"
                "plt.plot([1, 2, 3], [1, 4, 9])\nplt.show()",
                [],
            ),
            ("factor(n)", ["result:factored"]),
            (f"import time\ntime.sleep({long_seconds})\nprint('slept')", []),
            ("print(version())", []),
        ],
        kernel="sage-9.8",
        language="sage",
    )


def failing() -> Any:
    return notebook(
        [
            ("a = 1", []),
            ("print('second ran')", []),
            ("raise ValueError('third cell fails')", []),
            ("print('never')", []),
        ]
    )
