"""Every error class jaxattn raises, and `first_line`. The errors are things a user can fix:
the scripts print each as one `error: ...` line and exit with its `exit_code` (see
jaxattn/tools/cli.py: 2 for usage errors, 1 otherwise). Each message names what is wrong and
what to do. Most are also ValueError or RuntimeError, so plain `except ValueError` still works.

    JaxattnError
    ├── ConfigError (ValueError)      a config field's type, range or name
    ├── DataError (ValueError)        a corpus or data file that cannot be used
    ├── TrainingError (RuntimeError)  a run that cannot go on
    ├── CheckpointError (RuntimeError)
    ├── WorkdirError (RuntimeError)
    │   └── LockHeld                  a live process holds the run directory's lock
    ├── InferenceError                a bad workdir, checkpoint, input file or option
    │   ├── UsageError (ValueError)   a bad command-line option or API argument (exit 2)
    │   │   └── OptionError           a bad decoding option (jaxattn.search.options)
    │   └── InputTooLongError (ValueError)
    ├── ExportError                   an export directory that cannot be written or used
    └── StateDictError (ValueError)   a PyTorch state dict that does not fit the model
"""


class JaxattnError(Exception):
    """Base class: a user-fixable problem with a message meant for the command line."""

    exit_code = 1


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


class InferenceError(JaxattnError):
    """A user mistake when translating or evaluating (bad workdir, checkpoint, input file or
    option): a clear message."""


class UsageError(InferenceError, ValueError):
    """Inconsistent command-line options, or a bad argument of the Python API (exit status 2).
    An InferenceError too, so a script's `except InferenceError` adds its context to both."""

    exit_code = 2


class OptionError(UsageError):
    """A bad decoding option (a value out of its range, a name that is not an option, an option
    the method would ignore), raised by the one check in jaxattn.search.options."""


class InputTooLongError(InferenceError, ValueError):
    """A sentence longer than the model takes (`InputLimit`), refused before any decoding;
    the message names it, its length, the limit and what to do."""


class ExportError(JaxattnError):
    """An export directory that cannot be written or used; the message names the file."""


class StateDictError(JaxattnError, ValueError):
    """A PyTorch state dict that does not fit the expected module: a missing or unexpected key
    or a bad shape (jaxattn.tools.torch_port)."""


def first_line(e: BaseException, limit: int = 200, *, typed: bool = True) -> str:
    """'TypeName: the first line of its message' (at most `limit` characters of it; `typed`
    False: without 'TypeName: ') for an exception whose message may run long (Orbax and
    TensorStore write 100 lines) or be empty ('TypeName: ')."""
    text = (str(e).strip().splitlines() or [""])[0][:limit]
    return f"{type(e).__name__}: {text}" if typed else text
