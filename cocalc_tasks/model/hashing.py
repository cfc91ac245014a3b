"""CoCalc's content hash of an execute request (``src/packages/util/jupyter-api/compute-hash.ts``).

The server keys its result cache by this digest, and ``{"hash": ...}`` looks a result up
without running anything. The recipe is SHA-1 of compact JSON with non-ASCII characters kept,
and JavaScript's ``String.prototype.trim`` semantics, which differ from :meth:`str.strip`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

__all__ = ["compute_hash", "js_trim"]

# Exactly the characters JavaScript's trim() removes (docs/cocalc-api.md §7.1).
_JS_WHITESPACE = (
    "\t\n\x0b\x0c\r \xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)


def js_trim(text: str) -> str:
    """Trim like JavaScript's ``String.prototype.trim``."""
    return text.strip(_JS_WHITESPACE)


def compute_hash(
    input: str,
    kernel: str,
    history: Sequence[str] | None = None,
    project_id: str | None = None,
    path: str | None = None,
) -> str:
    """Return CoCalc's 40-hex-digit cache key for this request.

    >>> compute_hash("2+3", "python3")
    'a3dc72f6ad2fac88719d4e1278fb8884f16b0605'
    """
    preimage = json.dumps(
        [
            [js_trim(h) for h in (history or [])],
            js_trim(input),
            js_trim(kernel.lower()),
            project_id,
            path,
        ],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha1(preimage.encode("utf-8"), usedforsecurity=False).hexdigest()
