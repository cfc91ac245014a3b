"""Files into and out of a project through the exec API alone, safely for any content.

CoCalc's exec API takes no request body and answers text, so a file travels as base64 in
pieces: each piece is one blocking exec of ``python3 -c`` (an argument stays well under
Linux's 128 KiB limit per argument), appended on the way in and read by offset on the way out.
Both ends compare a SHA-256 digest, so a lost or repeated piece is an error, never a corrupt
file.
"""

from __future__ import annotations

import base64
import hashlib

from cocalc_tasks.client.client import CocalcClient
from cocalc_tasks.errors import CocalcError, CocalcServerError, CocalcValidationError

__all__ = ["download", "upload"]

#: Raw bytes per upload piece (base64 makes it 4/3 larger, under the 128 KiB argument limit).
UPLOAD_PIECE = 90_000
#: Raw bytes per download piece (its base64 comes back as a command's stdout).
DOWNLOAD_PIECE = 2_000_000

_APPEND = (
    "import base64, os, sys\n"
    "path, data, first = sys.argv[1], sys.argv[2], sys.argv[3] == '1'\n"
    "os.makedirs(os.path.dirname(path) or '.', exist_ok=True)\n"
    "open(path, 'wb' if first else 'ab').write(base64.b64decode(data))\n"
)
_READ = (
    "import base64, sys\n"
    "handle = open(sys.argv[1], 'rb'); handle.seek(int(sys.argv[2]))\n"
    "sys.stdout.write(base64.b64encode(handle.read(int(sys.argv[3]))).decode())\n"
)


def upload(
    client: CocalcClient, data: bytes, remote: str, *, project_id: str, path: str | None
) -> str:
    """Write ``data`` to ``remote`` (relative to ``path`` in the project); returns its
    SHA-256, which the reader checks."""
    pieces = [data[i : i + UPLOAD_PIECE] for i in range(0, len(data), UPLOAD_PIECE)] or [b""]
    for number, piece in enumerate(pieces):
        try:
            client.exec(
                "python3",
                [
                    "-c",
                    _APPEND,
                    remote,
                    base64.b64encode(piece).decode(),
                    "1" if number == 0 else "0",
                ],
                project_id=project_id,
                path=path,
                timeout=60,
            )
        except CocalcError as exc:
            # CoCalc's message repeats the whole command (the file, base64-encoded) before
            # the reason: keep the reason.
            reason = str(exc).rsplit(" -- ", 1)[-1]
            if reason.startswith("invalid exec request: "):
                raise CocalcValidationError(
                    f"could not write {remote!r} in project {project_id}: "
                    f"{reason.removeprefix('invalid exec request: ')}"
                ) from None
            raise
    return hashlib.sha256(data).hexdigest()


def download(
    client: CocalcClient,
    remote: str,
    *,
    size: int,
    sha256: str,
    project_id: str,
    path: str | None,
) -> bytes:
    """Read ``size`` bytes of ``remote`` and check them against ``sha256``."""
    parts: list[bytes] = []
    for offset in range(0, max(size, 1), DOWNLOAD_PIECE):
        answer = client.exec(
            "python3",
            ["-c", _READ, remote, str(offset), str(DOWNLOAD_PIECE)],
            project_id=project_id,
            path=path,
            timeout=60,
            max_output=DOWNLOAD_PIECE * 2,
        )
        parts.append(base64.b64decode(answer.stdout))
    data = b"".join(parts)
    if len(data) != size or hashlib.sha256(data).hexdigest() != sha256:
        raise CocalcServerError(
            f"the executed notebook {remote} arrived incomplete ({len(data)} of {size} bytes "
            "or a different digest); its job finished, so fetch it again"
        )
    return data
