"""What the tests share at import time, before any fixture can be asked for: the repository's
root, configs/synthetic.py with overrides, and the words of the small tutorial-format corpora
that data tests write (`SUBJECTS`, `ADJECTIVES`, `very_pairs`).

Test functions and fixtures ask conftest.py's fixtures (`synthetic_config` among them); this
module is for module-level code (parametrize lists globbed under ROOT, helper functions of a test
module) and for the scripts that tests start (tests/distributed_worker.py, tests/mutations.py),
which are not pytest sessions. `from shared import ROOT` works in both: pytest and Python put
tests/ on sys.path (tests/ has no __init__.py).
"""

from __future__ import annotations

import os
import runpy
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository's root


def synthetic_config(overrides: dict | None = None):
    """configs/synthetic.py (reverse 3..8 symbols out of 12) with {"section.field": value}."""
    config = runpy.run_path(os.path.join(ROOT, "configs", "synthetic.py"))["get_config"]()
    for key, value in (overrides or {}).items():
        section, name = key.split(".")
        config[section][name] = value
    return config


def run_script(name: str, *args, env=None, stdin=None, code: int = 0) -> tuple[str, str]:
    """(stdout, stderr) of `python scripts/NAME.py ARGS` (JAX on the CPU unless `env` says
    otherwise); fails the test unless it exits with `code` and without a traceback."""
    p = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", f"{name}.py"), *args],
        input=stdin,
        capture_output=True,
        env=env or dict(os.environ, JAX_PLATFORMS="cpu"),
        timeout=300,
    )
    out, err = p.stdout.decode(), p.stderr.decode()
    assert p.returncode == code, f"exit {p.returncode}\nstdout:\n{out}\nstderr:\n{err}"
    assert "Traceback" not in out + err, err
    return out, err


# Tutorial-format corpora written by tests: "I am very tall.<TAB>Je suis très tall !" pairs pass
# the tutorial's filter (an English prefix, < 10 words); (English, French) subjects.
SUBJECTS = [
    ("I am", "Je suis"),
    ("He is", "Il est"),
    ("She's", "Elle est"),
    ("We are", "Nous sommes"),
    ("You're", "Vous êtes"),
    ("They are", "Ils sont"),
]
ADJECTIVES = [
    "tall", "happy", "tired", "ready", "hungry", "late", "sick", "rich",
    "young", "angry", "calm", "cold", "busy", "sad", "early", "free",
]  # fmt: skip


def very_pairs(subjects=SUBJECTS) -> list[str]:
    """One tutorial-format line per (subject, adjective): len(subjects) x 16 pairs."""
    return [f"{e} very {a}.\t{f} très {a} !" for e, f in subjects for a in ADJECTIVES]
