"""jaxattn.errors owns every error class and `first_line`: no error class is defined anywhere
else in the package, there is one UsageError (the scripts' and the Python API's), and
`first_line` gives one line for any exception, an empty message included."""

import os
import re

import pytest

from jaxattn import errors
from jaxattn.errors import (
    ConfigError,
    InferenceError,
    InputTooLongError,
    JaxattnError,
    OptionError,
    StateDictError,
    UsageError,
    first_line,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASS = re.compile(r"^\s*class (\w+)\s*[(:]", re.M)


def test_every_error_class_is_defined_in_errors_py():
    elsewhere = []
    for folder, _, files in os.walk(os.path.join(ROOT, "jaxattn")):
        for name in files:
            path = os.path.join(folder, name)
            if not name.endswith(".py") or path == errors.__file__:
                continue
            with open(path, encoding="utf-8") as f:
                found = [c for c in CLASS.findall(f.read()) if c.endswith(("Error", "Exception"))]
            elsewhere += [f"{os.path.relpath(path, ROOT)}: {c}" for c in found]
    assert not elsewhere, elsewhere
    assert CLASS.findall(open(errors.__file__, encoding="utf-8").read()).count("UsageError") == 1


def test_one_usage_error_for_scripts_and_api():
    from jaxattn.inference import translator
    from jaxattn.tools import cli

    assert cli.UsageError is translator.UsageError is UsageError
    # what the scripts and the API catch keeps working: exit status 2, an InferenceError (the
    # scripts add context to both), a ValueError (the Python API's contract)
    assert UsageError.exit_code == 2 and issubclass(UsageError, (InferenceError, ValueError))
    assert issubclass(OptionError, UsageError) and OptionError.exit_code == 2
    assert InferenceError.exit_code == InputTooLongError.exit_code == 1
    assert issubclass(InputTooLongError, ValueError) and issubclass(StateDictError, ValueError)
    for cls in (ConfigError, OptionError, InputTooLongError, StateDictError, errors.ExportError):
        assert issubclass(cls, JaxattnError)


@pytest.mark.parametrize(
    "error, want",
    [
        (RuntimeError(""), "RuntimeError: "),
        (ValueError("  \n  "), "ValueError: "),
        (KeyError(), "KeyError: "),
        (OSError("disk full\nTensorStore details: ..."), "OSError: disk full"),
        (ValueError("x" * 500), "ValueError: " + "x" * 200),
    ],
)
def test_first_line_of_any_message(error, want):
    assert first_line(error) == want


def test_first_line_limit_and_untyped():
    e = RuntimeError("Vocabulary size is smaller than required_chars.\nmore")
    assert first_line(e, typed=False) == "Vocabulary size is smaller than required_chars."
    assert first_line(e, 10) == "RuntimeError: Vocabulary"
    assert first_line(RuntimeError(""), typed=False) == ""
