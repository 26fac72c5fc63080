"""Bad input at the command line layer: each ends in one clear error, before any work where it
can, and nothing of a run is lost (export --overwrite, damaged checkpoints, output paths)."""

import os
import shutil
import subprocess
import sys

import pytest
from absl import flags
from shared import ROOT

from jaxattn.errors import CheckpointError, ExportError, InferenceError, UsageError
from jaxattn.inference import exported
from jaxattn.rundir import averaging
from jaxattn.rundir import run as run_lib
from jaxattn.rundir.layout import AVERAGED, averaged_dir, checkpoint_dir
from jaxattn.tools import cli

TINY = {
    "model.hidden": 8,
    "model.embed_dim": 8,
    "data.synthetic_sizes": (64, 16, 16),
    "train.num_train_steps": 4,
    "train.checkpoint_every": 2,
    "train.eval_every": 2,
    "train.log_every": 2,
    "train.progress_bar": False,
}


@pytest.fixture(scope="module")
def run(tmp_path_factory, synthetic_config):
    """A 4-step synthetic run: checkpoints at steps 2 and 4, and an averaged one."""
    from jaxattn.training.loop import train_and_evaluate

    config = synthetic_config(TINY)
    workdir = str(tmp_path_factory.mktemp("bad_inputs") / "run")
    train_and_evaluate(config, workdir)
    averaging.average_checkpoints(workdir, last=2)
    return workdir


def _copy(run, tmp_path, name="w"):
    dst = str(tmp_path / name)
    shutil.copytree(run, dst, ignore=shutil.ignore_patterns(".lock"))
    return dst


def _listing(directory):
    return sorted(
        os.path.relpath(os.path.join(d, f), directory)
        for d, _, files in os.walk(directory)
        for f in files
    )


# -------------------------------------------------------------- export never eats a run
@pytest.mark.slow
def test_export_overwrite_never_replaces_the_run_or_a_non_export(run, tmp_path):
    w = _copy(run, tmp_path)
    before = _listing(w)
    with pytest.raises(ExportError, match="is \\(or holds\\) the run being exported"):
        exported.export_workdir(w, w, overwrite=True)  # the run itself
    with pytest.raises(ExportError, match="is \\(or holds\\) the run being exported"):
        exported.export_workdir(w, str(tmp_path), overwrite=True)  # a folder holding it
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not an export directory.*replaces only"):
        exported.export_workdir(w, str(other), overwrite=True)
    assert _listing(w) == before and (other / "notes.txt").read_text() == "mine"
    (other / exported.MANIFEST_FILE).write_text("{}")  # an earlier export may be replaced
    exported._check_out(str(other), True, w)


@pytest.mark.slow
def test_export_to_an_unusable_place_names_it(run, tmp_path):
    with pytest.raises(ExportError, match="No platform given"):
        exported.export_workdir(run, str(tmp_path / "e"), platforms=())
    missing = str(tmp_path / "no" / "e")
    with pytest.raises(ExportError, match="its parent is missing"):
        exported.export_workdir(run, missing)
    assert not os.path.exists(os.path.dirname(missing))


# ------------------------------------------------------------------ damaged checkpoints
@pytest.mark.slow
def test_average_with_a_damaged_step_names_it_and_keeps_the_old_average(run, tmp_path):
    w = _copy(run, tmp_path)
    step_dir = os.path.join(checkpoint_dir(w), "4")
    shutil.rmtree(os.path.join(step_dir, "state"))
    before = _listing(averaged_dir(w))
    with pytest.raises(
        CheckpointError, match=f"Cannot read the checkpoint {step_dir} .*corrupt-4.*average again"
    ):
        averaging.average_checkpoints(w, last=2)
    assert _listing(averaged_dir(w)) == before  # the earlier average is intact
    os.replace(step_dir, os.path.join(checkpoint_dir(w), "corrupt-4"))  # as the message says
    assert averaging.average_checkpoints(w, last=1)["steps"] == [2]


@pytest.mark.slow
def test_damaged_checkpoints_name_the_way_out(run, tmp_path):
    w = _copy(run, tmp_path)
    os.unlink(os.path.join(checkpoint_dir(w), "4", "state", "manifest.ocdbt"))
    loaded = run_lib.load_run(w)
    with pytest.raises(InferenceError, match="step 4 .*another --checkpoint \\(steps: 2\\)"):
        run_lib.restore_params(loaded, "latest")
    assert run_lib.restore_params(loaded, 2)[1] == 2
    version = run_lib.averaged_version(w)
    shutil.rmtree(os.path.join(averaged_dir(w), str(version), "params"))
    with pytest.raises(InferenceError) as e:
        run_lib.restore_params(loaded, AVERAGED)
    assert averaged_dir(w) in str(e.value) and "scripts/average.py" in str(e.value)
    assert checkpoint_dir(w) not in str(e.value)


# ------------------------------------------------------- flags checked before any work
@pytest.fixture
def fresh_flags(monkeypatch):
    """cli's flag helpers on a FlagValues of their own (the global one belongs to scripts)."""
    values = flags.FlagValues()
    monkeypatch.setattr(cli, "FLAGS", values)
    return values


def test_output_flags_are_checked_before_any_work(fresh_flags, tmp_path):
    for name in ("output", "json", "src", "ref"):
        flags.DEFINE_string(name, None, "", flag_values=fresh_flags)
    ref = tmp_path / "ref.txt"
    ref.write_text("a\n")
    fresh_flags(["prog", f"--src={tmp_path / 'src.txt'}", f"--ref={ref}"])
    cases = [
        (str(tmp_path), "is a directory"),
        (str(tmp_path / "missing" / "h.txt"), "folder that does not exist"),
        (str(ref), "is the --ref file: it would be overwritten"),
    ]
    for path, needle in cases:
        fresh_flags["output"].value = path
        with pytest.raises(UsageError, match=needle):
            cli.check_outputs("output", "json", inputs=("src", "ref"))
    fresh_flags["output"].value = str(tmp_path / "hyp.txt")
    cli.check_outputs("output", "json", inputs=("src", "ref"))  # a new file: fine
    assert ref.read_text() == "a\n"


def test_negative_alpha_is_refused_like_the_config(fresh_flags):
    cli.define_decoding_flags()
    fresh_flags(["prog", "--beam_size=2", "--alpha=-0.5"])
    with pytest.raises(ValueError, match="alpha .* must be a finite number >= 0"):
        cli.decoding_options(1)
    fresh_flags["alpha"].value = 0.6
    assert cli.decoding_options(1)["options"].alpha == 0.6


# ------------------------------------------------------------------ the scripts, end to end
def _script(name, *args):
    p = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", f"{name}.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )
    assert "Traceback" not in p.stderr, p.stderr
    errors = [line for line in p.stderr.splitlines() if line.startswith("error: ")]
    assert p.returncode == 2 and len(errors) == 1, (p.returncode, p.stderr)
    return errors[0]


@pytest.mark.slow
def test_scripts_name_the_bad_flag(tmp_path):
    cfg, w = os.path.join(ROOT, "configs", "synthetic.py"), str(tmp_path / "w")
    err = _script("train", f"--config={cfg}", f"--workdir={w}", "--config.model.hiden=3")
    assert "--config.model.hiden: unknown config key" in err and "hidden" in err
    err = _script("train", f"--config={cfg}", f"--workdir={w}", "--config.train.batch_size=abc")
    assert "config.train.batch_size is an integer, like its default 32" in err
    assert not os.path.exists(w)
    err = _script("translate", f"--workdir={w}", f"--attention_png={tmp_path / 'a.txt'}", "1")
    assert "--attention_png=" in err and ".png" in err
    err = _script("translate", f"--exported={w}", "--checkpoint=best", "1")
    assert "--checkpoint: an export holds one checkpoint" in err
