"""Local-folder report sink (CLI `--output-dir`): the same tree as in S3, written atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ecs_scan_operator.errors import PermanentError


class LocalReportSink:
    """ReportSink over a directory; keys are already sanitized, and are checked to stay inside it."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise PermanentError(f"report key {key!r} escapes the output directory")
        return path

    def put(self, key: str, body: bytes, content_type: str) -> None:
        """Write to a temp file and rename, so a crash never leaves half an object."""
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        except OSError as exc:  # the boundary: a full disk or a read-only folder is a ScanError
            raise PermanentError(f"cannot write {path}: {exc.strerror or exc}") from None
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(body)
            Path(tmp).replace(path)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise PermanentError(f"cannot write {path}: {exc.strerror or exc}") from None
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes | None:
        """None when absent."""
        path = self._path(key)
        try:
            return path.read_bytes() if path.is_file() else None
        except OSError as exc:
            raise PermanentError(f"cannot read {path}: {exc.strerror or exc}") from None

    def uri(self, key: str) -> str:
        """The file's path."""
        return str(self._path(key))

    def link(self, key: str) -> str:
        """A file:// URL."""
        return self._path(key).as_uri()
