"""The README's demo, exactly as a new user types it: configs/synthetic.py trained to its own
end through scripts/train.py (no override), then evaluated and used to translate. The commands
are read from the README's code block, so the README cannot drift from what is tested."""

import os
import re
import shlex
import subprocess
import sys

import pytest
from shared import ROOT

pytestmark = pytest.mark.slow  # every test here trains a run or starts a script


def readme_demo() -> list[str]:
    """The lines of the README's code block that trains configs/synthetic.py."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        blocks = re.findall(r"```bash\n(.*?)```", f.read(), re.S)
    block = next(b for b in blocks if "--config configs/synthetic.py" in b)
    return [line for line in block.splitlines() if line.strip()]


def run(line: str, workdir: str) -> subprocess.CompletedProcess:
    """One README line, with runs/synthetic -> `workdir` and python -> this interpreter."""
    stdin = None
    if "|" in line:
        echo, line = (part.strip() for part in line.split("|", 1))
        stdin = shlex.split(echo)[1] + "\n"
    argv = [workdir if a == "runs/synthetic" else a for a in shlex.split(line)]
    assert argv[0] == "python", line
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, *argv[1:]],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env=env,
    )


def test_readme_demo_trains_to_its_end_then_evaluates_and_translates(tmp_path):
    train, evaluate, translate = readme_demo()
    workdir = str(tmp_path / "synthetic")

    r = run(train, workdir)
    assert r.returncode == 0, r.stderr[-3000:]
    final = re.search(r"final validation: .*bleu ([\d.]+)", r.stdout)
    assert final and float(final.group(1)) > 95, r.stdout[-2000:]
    steps = [int(n) for n in os.listdir(os.path.join(workdir, "checkpoints")) if n.isdigit()]
    assert max(steps) == 1500, steps  # the config's own end

    r = run(evaluate, workdir)
    assert r.returncode == 0, r.stderr[-3000:]
    bleu = re.search(r"^BLEU\S* = ([\d.]+)", r.stdout, re.M)
    assert bleu and float(bleu.group(1)) > 95, r.stdout

    r = run(translate, workdir)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip() == "5 4 3 2 1", r.stdout
