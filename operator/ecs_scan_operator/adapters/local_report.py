"""Local-folder report sink (CLI `--output-dir`): the same tree as in S3, written atomically.

Conditional writes (the run lease, the state object) are compare-and-swap under an exclusive
`fcntl` lock on a sidecar `.lock` file, with a SHA-256 of the content as the ETag; taking an
absent object is an atomic `os.link` of a finished temp file, which fails when the name exists.
That holds between processes on one machine (and on NFS with working locks); S3 is the store
to share between machines.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ecs_scan_operator.errors import ConflictError, PermanentError
from ecs_scan_operator.ports import StoredObject


def content_etag(body: bytes) -> str:
    """The local ETag: a quoted SHA-256 of the content (S3 quotes its ETags too)."""
    return '"' + hashlib.sha256(body).hexdigest() + '"'


class LocalReportSink:
    """ReportSink over a directory; keys are already sanitized, and are checked to stay inside it."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise PermanentError(f"report key {key!r} escapes the output directory")
        return path

    @staticmethod
    @contextmanager
    def _mapped(path: Path, verb: str) -> Iterator[None]:
        """The boundary: a full disk, a read-only folder or a path under a file is a ScanError."""
        try:
            yield
        except OSError as exc:
            raise PermanentError(f"cannot {verb} {path}: {exc.strerror or exc}") from None

    def _temp(self, path: Path, body: bytes) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(body)
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return Path(tmp)

    def put(self, key: str, body: bytes, content_type: str) -> None:
        """Write to a temp file and rename, so a crash never leaves half an object."""
        path = self._path(key)
        with self._mapped(path, "write"):
            tmp = self._temp(path, body)
            try:
                tmp.replace(path)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise

    @contextmanager
    def _locked(self, path: Path) -> Iterator[None]:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.with_name(path.name + ".lock").open("a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield  # the lock goes with the file descriptor, also when the process dies

    def read(self, key: str) -> StoredObject | None:
        """The content and its SHA-256 ETag; None when absent."""
        path = self._path(key)
        try:
            body = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise PermanentError(f"cannot read {path}: {exc.strerror}") from None
        return StoredObject(body, content_etag(body))

    def put_if(self, key: str, body: bytes, content_type: str, *, etag: str | None) -> str:
        """Create (etag None) or replace (etag matches) atomically; ConflictError otherwise."""
        path = self._path(key)
        with self._mapped(path, "write"):
            tmp = self._temp(path, body)
        try:
            with self._mapped(path, "write"), self._locked(path):
                if etag is None:
                    try:
                        os.link(tmp, path)  # fails when the name exists: an atomic create
                    except FileExistsError:
                        raise ConflictError(f"{path}: already exists") from None
                else:
                    current = self.read(key)
                    if current is None or current.etag != etag:
                        raise ConflictError(f"{path}: changed since it was read")
                    tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)
        return content_etag(body)

    def delete_if(self, key: str, *, etag: str) -> None:
        """Delete when unchanged; absent is fine; ConflictError when it changed."""
        path = self._path(key)
        with self._mapped(path, "delete"), self._locked(path):
            current = self.read(key)
            if current is None:
                return
            if current.etag != etag:
                raise ConflictError(f"{path}: changed since it was read")
            path.unlink()

    def get(self, key: str) -> bytes | None:
        """None when absent."""
        obj = self.read(key)
        return None if obj is None else obj.body

    def uri(self, key: str) -> str:
        """The file's path."""
        return str(self._path(key))

    def link(self, key: str) -> str:
        """A file:// URL."""
        return self._path(key).as_uri()
