"""The file primitives of a run directory (its layout: `jaxattn.rundir.layout`): JSON and text
files written atomically, the training lock (WORKDIR/.lock) and the files' fingerprints.

Every file is written to a temporary name and renamed, so a killed process leaves the old
version or the new one, never half a file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import socket
import tempfile
import time

from jaxattn.errors import LockHeld, WorkdirError
from jaxattn.rundir.layout import LOCK_FILE

log = logging.getLogger(__name__)

_UMASK = os.umask(0o022)
os.umask(_UMASK)


def read_json(path: str):
    """The JSON content of `path`, None if it does not exist; WorkdirError naming the file if
    it cannot be read or parsed (truncated, not JSON)."""
    try:
        with open(path, encoding="utf-8-sig") as f:  # -sig: as an editor may save it
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WorkdirError(
            f"{path} is unreadable ({type(e).__name__}: {e}); it may be "
            "truncated. Restore it, or delete it if the run can rebuild "
            "it."
        ) from None


def read_json_quietly(path: str):
    """The JSON content of `path`, or None if it is absent or unreadable."""
    try:
        return read_json(path)
    except WorkdirError:
        return None


def write_bytes(path: str, data: bytes) -> None:
    """Writes `path` atomically: a temporary file in the same directory, fsync, rename."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # as open() would create it (mkstemp: 0600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json(path: str, obj) -> None:
    write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def write_text(path: str, text: str) -> None:
    """Writes a UTF-8 text file atomically (hypotheses, results); WorkdirError naming it if it
    cannot."""
    try:
        write_bytes(path, text.encode("utf-8"))
    except OSError as e:
        raise WorkdirError(f"Cannot write {path}: {e.strerror or e}.") from None


def sha256_file(path: str) -> str | None:
    if not os.path.exists(path):
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprints(workdir: str, names) -> dict[str, str]:
    """{file name: sha256} of the files among `names` that exist in workdir."""
    out = {}
    for name in names:
        digest = sha256_file(os.path.join(workdir, name))
        if digest:
            out[name] = digest
    return out


def prepare(workdir: str) -> str:
    """Creates workdir (and parents) and checks that it is a writable directory."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise WorkdirError(f"--workdir {workdir} is a file, not a directory; give a directory.")
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as e:
        raise WorkdirError(f"Cannot create --workdir {workdir}: {e.strerror or e}.") from None
    if not os.access(workdir, os.W_OK | os.X_OK):
        raise WorkdirError(
            f"--workdir {workdir} is not writable; fix its permissions or use another directory."
        )
    return workdir


class Lock:
    """An advisory lock on WORKDIR/.lock (fcntl.flock), so that two trainings never share a
    workdir. The kernel drops the lock when its process dies, so a lock file left by a killed
    run is taken over (with a warning naming the dead holder)."""

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, LOCK_FILE)
        self._fd = None

    def acquire(self) -> Lock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise LockHeld(
                    f"{os.path.dirname(self.path)} is in use by another training ({holder}). "
                    "Wait for it to finish or stop it, or use another --workdir.",
                    holder=holder,
                ) from None
            raise
        previous = os.pread(fd, 4096, 0).decode(errors="replace").strip()
        if previous:
            log.warning(
                "Taking over the lock of a training that is no longer running (%s).", previous
            )
        me = f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%F %T')}"
        os.ftruncate(fd, 0)
        os.pwrite(fd, me.encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)  # a clean exit leaves no holder behind
        os.close(self._fd)
        self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
