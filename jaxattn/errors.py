"""The errors jaxattn raises for things a user can fix; the scripts print them as one
`error: ...` line (see jaxattn/tools/cli.py). Each message names what is wrong and what to do."""


class JaxattnError(Exception):
    """Base class: a user-fixable problem with a message meant for the command line."""


class ConfigError(JaxattnError, ValueError):
    """A config field with a bad type, range or name (found before any work)."""


class DataError(JaxattnError, ValueError):
    """A corpus or data file that cannot be used: missing, empty, undecodable, misaligned, or
    with no pair left after filtering (a ValueError, so older `except ValueError` still work)."""


class TrainingError(JaxattnError, RuntimeError):
    """A run that cannot go on (divergence, NaN loss, a failed evaluation, a busy workdir)."""


class CheckpointError(JaxattnError, RuntimeError):
    """A checkpoint that cannot be used: missing, unreadable, or from another model."""


class WorkdirError(JaxattnError, RuntimeError):
    """A workdir that cannot be used: not a directory, not writable, locked, corrupt files."""


class LockHeld(WorkdirError):
    """A workdir whose lock (WORKDIR/.lock) a live process holds; `holder` says which (pid,
    host, since when)."""

    def __init__(self, message: str, *, holder: str):
        super().__init__(message)
        self.holder = holder


def first_line(e: BaseException) -> str:
    """A one-line reason from an exception (Orbax/TensorStore messages run to 100 lines)."""
    text = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {text[:200]}"


class UsageError(JaxattnError):
    """Inconsistent command-line options (exit status 2)."""

    exit_code = 2
