"""Faults of export and averaging (issue #25), each tested as a class of input:

- export never writes into a training run: the one exported or any other, any folder in it
  (checkpoints/, a step, averaged/, a new nested folder), however the path is spelt (symlinks,
  '..', relative), refused before any work;
- a write error (disk full) names the file of --out being written, leaves no export `load`
  accepts and keeps an earlier export as it was;
- averaging honours the run's training lock (refused while a live process holds it, a dead
  holder's lock taken over, held while reading) and tells a step that vanished from a damaged
  one;
- --best on a run without validation BLEU says so and suggests --last.

Export tests use the session's `tiny_run` (copied); averaging tests a 4-step run trained with
config.eval.bleu=False (checkpoints at steps 2 and 4)."""

import errno
import logging
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from shared import ROOT

from jaxattn.errors import CheckpointError, ExportError, WorkdirError
from jaxattn.inference import exported
from jaxattn.inference import translator as inference
from jaxattn.rundir import averaging
from jaxattn.rundir import files as workdir_lib
from jaxattn.rundir.layout import averaged_dir, checkpoint_dir

pytestmark = pytest.mark.slow  # every test here trains a run or starts a script

NO_BLEU_RUN = {
    "model.hidden": 8,
    "model.embed_dim": 8,
    "data.synthetic_sizes": (64, 16, 16),
    "train.num_train_steps": 4,
    "train.checkpoint_every": 2,
    "train.eval_every": 2,
    "train.log_every": 2,
    "train.progress_bar": False,
    "eval.bleu": False,
}
DISK_FULL = "No space left on device"


def _copy(src, dst):
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".lock"))
    return str(dst)


def _listing(directory):
    return sorted(
        os.path.relpath(os.path.join(d, f), directory)
        for d, dirs, files in os.walk(directory)
        for f in files + dirs
    )


def _script(name, *args):
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", name), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


def _error_lines(p):
    return [line for line in p.stderr.splitlines() if line.startswith("error:")]


@pytest.fixture
def run(tiny_run, tmp_path):
    """A copy of the tiny run (checkpoints 150 and 300), at tmp_path/run."""
    return _copy(tiny_run.workdir, tmp_path / "run")


@pytest.fixture
def no_restore(monkeypatch):
    """Fails a test whose export restores parameters (the refusal must come first)."""

    def restore(*args, **kwargs):
        raise AssertionError("the checkpoint was restored before --out was refused")

    monkeypatch.setattr(inference.Translator, "from_workdir", restore)


# ------------------------------------------------------------- 1. export never into a run
def _symlink(tmp_path, name, target):
    link = tmp_path / name
    os.symlink(target, link)
    return str(link)


# (id, out given the run w and tmp_path): each is the run exported or a folder inside it
INSIDE_THE_RUN = [
    ("the run", lambda w, t: w),
    ("the run, trailing slash", lambda w, t: w + "/"),
    ("checkpoints/", lambda w, t: os.path.join(w, "checkpoints")),
    ("a new step", lambda w, t: os.path.join(w, "checkpoints", "400")),
    ("an existing step", lambda w, t: os.path.join(w, "checkpoints", "300")),
    ("averaged/", lambda w, t: averaged_dir(w)),
    ("a new nested folder", lambda w, t: os.path.join(w, "exports", "v1", "out")),
    ("tensorboard/", lambda w, t: os.path.join(w, "tensorboard")),
    ("a '..' path", lambda w, t: os.path.join(w, "checkpoints", "..", "export")),
    (
        "a '..' path from outside",
        lambda w, t: os.path.join(str(t), "elsewhere", "..", "run", "checkpoints", "400"),
    ),
    ("a relative path", lambda w, t: os.path.relpath(os.path.join(w, "checkpoints", "400"))),
    (
        "a symlink to checkpoints/",
        lambda w, t: os.path.join(_symlink(t, "ckpts", os.path.join(w, "checkpoints")), "400"),
    ),
    ("a symlink to the run", lambda w, t: _symlink(t, "alias", w)),
    (
        "a symlink to a step",
        lambda w, t: _symlink(t, "step", os.path.join(w, "checkpoints", "300")),
    ),
]


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize(
    "where", [f for _, f in INSIDE_THE_RUN], ids=[i for i, _ in INSIDE_THE_RUN]
)
def test_export_into_the_run_exported_is_refused_before_any_work(
    run, tmp_path, no_restore, where, overwrite
):
    (tmp_path / "elsewhere").mkdir()
    before = _listing(run)
    out = where(run, tmp_path)
    with pytest.raises(ExportError) as e:
        exported.export_workdir(run, out, overwrite=overwrite)
    message = str(e.value)
    assert run in message and "outside" in message, message
    assert "the run being exported" in message, message
    assert _listing(run) == before  # nothing written, nothing moved aside
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]  # no temporary left


# (id, out given another run r and tmp_path): in or equal to a run other than the exported one
IN_ANOTHER_RUN = [
    ("the run", lambda r, t: r),
    ("a new step", lambda r, t: os.path.join(r, "checkpoints", "400")),
    ("averaged/", lambda r, t: os.path.join(averaged_dir(r), "x")),
    ("a new nested folder", lambda r, t: os.path.join(r, "a", "b")),
    ("a '..' path", lambda r, t: os.path.join(r, "checkpoints", "..", "export")),
    ("a symlink into it", lambda r, t: os.path.join(_symlink(t, "other_alias", r), "export")),
]


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize(
    "where", [f for _, f in IN_ANOTHER_RUN], ids=[i for i, _ in IN_ANOTHER_RUN]
)
def test_export_into_another_run_is_refused(run, tmp_path, no_restore, where, overwrite):
    other = _copy(run, tmp_path / "other")
    before = _listing(other)
    with pytest.raises(ExportError, match="training run .*Choose a folder outside it") as e:
        exported.export_workdir(run, where(other, tmp_path), overwrite=overwrite)
    assert os.path.realpath(other) in str(e.value)
    assert _listing(other) == before


def test_a_run_is_known_by_its_config_or_its_lock(run, tmp_path):
    """A folder with checkpoints/ and config.json, or checkpoints/ and the training lock (a
    training started, no config.json yet), is a run; checkpoints/ alone or config.json alone
    (an export has one) is not."""
    started = tmp_path / "started"
    (started / "checkpoints").mkdir(parents=True)
    (started / workdir_lib.LOCK_FILE).write_text("")
    with pytest.raises(ExportError, match="is inside the training run"):
        exported._check_out(str(started / "out"), False, run)
    with pytest.raises(ExportError, match="is the training run"):
        exported._check_out(str(started), True, run)
    for name, files in [
        ("just_checkpoints", ["checkpoints/"]),
        ("an_export", ["config.json", exported.MANIFEST_FILE]),
    ]:
        folder = tmp_path / name
        folder.mkdir()
        for f in files:
            if f.endswith("/"):
                (folder / f.rstrip("/")).mkdir()
            else:
                (folder / f).write_text("{}")
        exported._check_out(str(folder / "out"), False, run)  # inside: fine
    exported._check_out(str(tmp_path / "an_export"), True, run)  # an earlier export: replaced
    exported._check_out(run + "-export", False, run)  # beside the run: fine
    (tmp_path / "checkpoints").mkdir()
    exported._check_out(str(tmp_path / "checkpoints" / "400"), False, run)  # not a run's


def test_overwrite_never_replaces_a_folder_holding_a_run(run, tmp_path, no_restore):
    """--overwrite replaces an earlier export (files only), never a folder with folders in it,
    even one with a manifest.json: it might hold a run."""
    stash = tmp_path / "stash"
    _copy(run, stash / "old_run")
    (stash / exported.MANIFEST_FILE).write_text("{}")
    before = _listing(stash)
    with pytest.raises(
        ExportError, match="holds folders \\(old_run\\).*replaces only an earlier export"
    ):
        exported.export_workdir(run, str(stash), overwrite=True)
    assert _listing(stash) == before


def test_script_refuses_a_step_folder_of_the_run(run):
    """The issue's command: one error line naming the run, exit status 1, nothing created."""
    out = os.path.join(run, "checkpoints", "400")
    p = _script("export.py", "--workdir", run, "--out", out, "--beam_size", "0")
    errors = _error_lines(p)
    assert p.returncode == 1 and len(errors) == 1, p.stderr
    assert f"inside the run being exported, {run}" in errors[0] and "outside" in errors[0]
    assert not os.path.exists(out) and "Traceback" not in p.stderr


# ------------------------------------------------------------ 2. disk full during export
@pytest.fixture(scope="module")
def translator(tiny_run):
    return inference.Translator.from_workdir(tiny_run.workdir)


@pytest.fixture
def cheap_export(monkeypatch):
    """Artifacts as placeholder bytes (no lowering); the names of the files written, in order
    (returned list)."""
    monkeypatch.setattr(exported, "_export", lambda *args: b"an artifact")
    written, real = [], workdir_lib.write_bytes

    def write_bytes(path, data):
        written.append(os.path.basename(path))
        real(path, data)

    monkeypatch.setattr(workdir_lib, "write_bytes", write_bytes)
    return written


def _full_disk(monkeypatch, target, tmp_path):
    """Makes writing `target` (a file name of the export, or None: the final rename) raise
    ENOSPC, as a full disk does; the error's filename is the temporary file, as the OS gives
    it (never the --out path). Returns the list of the file names that failed."""
    enospc, failed = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), []
    if target == exported.PARAMS_FILE:

        def savez(f, **arrays):
            f.write(b"PK")
            raise enospc

        monkeypatch.setattr(np, "savez", savez)
    elif target is not None:
        real = workdir_lib.write_bytes

        def write_bytes(path, data):
            name = os.path.basename(path)
            if name == target or target == ".bin" and name.endswith(".bin"):
                failed.append(name)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
            real(path, data)

        monkeypatch.setattr(workdir_lib, "write_bytes", write_bytes)
    else:
        real_replace = os.replace

        def replace(src, dst):
            if os.path.basename(src).startswith(".out."):  # the finished temporary directory
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), src, None, dst)
            real_replace(src, dst)

        monkeypatch.setattr(os, "replace", replace)
    return failed


DISK_FULL_AT = [
    exported.PARAMS_FILE,
    "config.json",
    "src_vocab.txt",
    "tgt_vocab.txt",
    ".bin",
    exported.MANIFEST_FILE,
    None,
]


@pytest.mark.parametrize("earlier", [False, True], ids=["new out", "over an earlier export"])
@pytest.mark.parametrize(
    "target", DISK_FULL_AT, ids=[t or "moving into place" for t in DISK_FULL_AT]
)
def test_disk_full_names_the_destination_and_leaves_no_export(
    translator, tmp_path, monkeypatch, cheap_export, target, earlier
):
    out = str(tmp_path / "out")
    if earlier:
        exported.export_translator(translator, out, beam_size=0, max_source_len=6)
        before = {n: open(os.path.join(out, n), "rb").read() for n in os.listdir(out)}
    written = cheap_export
    written.clear()
    failed = _full_disk(monkeypatch, target, tmp_path)
    with pytest.raises(ExportError) as e:
        exported.export_translator(
            translator, out, beam_size=0, max_source_len=6, overwrite=earlier
        )
    message = str(e.value)
    dest = out if target is None else os.path.join(out, failed[0] if failed else target)
    assert f"Cannot write {dest}: {DISK_FULL}" in message, message
    assert "free space" in message and "another --out" in message, message
    assert translator.workdir not in message and "/.out." not in message  # not run, not tmp
    if target not in (exported.MANIFEST_FILE, None):
        assert exported.MANIFEST_FILE not in written  # the manifest is written last
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]  # no temporary left
    if earlier:  # the earlier export is as it was
        assert "is as it was before" in message
        assert {n: open(os.path.join(out, n), "rb").read() for n in os.listdir(out)} == before
        exported.read_manifest(out)
    else:
        assert f"nothing was written to {out}" in message
        assert not os.path.exists(out)
        with pytest.raises(ExportError, match="No such export directory"):
            exported.load(out)


def test_the_manifest_is_written_last(translator, tmp_path, cheap_export):
    written = cheap_export
    exported.export_translator(translator, str(tmp_path / "out"), beam_size=3, max_source_len=6)
    assert written[-1] == exported.MANIFEST_FILE and written.count(exported.MANIFEST_FILE) == 1
    assert sorted(os.listdir(tmp_path / "out")) == sorted([exported.PARAMS_FILE, *written])


def test_an_unreadable_run_file_is_named_as_the_run_s(
    translator, tmp_path, monkeypatch, cheap_export
):
    """A read error names the run's file (the source), before anything is written."""
    import builtins

    real_open, vocab = builtins.open, os.path.join(translator.workdir, "tgt_vocab.txt")

    def open_(path, *args, **kwargs):
        if os.fspath(path) == vocab:
            raise OSError(errno.EIO, os.strerror(errno.EIO), path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_)
    with pytest.raises(ExportError, match=f"Cannot read {vocab} of the run exported"):
        exported.export_translator(translator, str(tmp_path / "out"), beam_size=0)
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------- 3. averaging and the lock
@pytest.fixture(scope="module")
def no_bleu_run(synthetic_config, tmp_path_factory):
    """A 4-step run trained with config.eval.bleu=False: checkpoints 2 and 4, no BLEU."""
    from jaxattn.training.loop import train_and_evaluate

    workdir = str(tmp_path_factory.mktemp("no_bleu") / "run")
    train_and_evaluate(synthetic_config(NO_BLEU_RUN), workdir)
    return workdir


@pytest.fixture
def w(no_bleu_run, tmp_path):
    return _copy(no_bleu_run, tmp_path / "w")


def test_averaging_is_refused_while_a_training_holds_the_lock(w):
    lock = workdir_lib.Lock(w).acquire()  # as a live training does: this process's pid
    try:
        with pytest.raises(WorkdirError) as e:
            averaging.average_checkpoints(w, last=2)
        message = str(e.value)
        assert f"pid {os.getpid()}" in message and f"Cannot average {w} now" in message
        assert "running" in message and "finished" in message and "damaged" not in message
        assert not os.path.exists(averaged_dir(w))
    finally:
        lock.release()
    assert averaging.average_checkpoints(w, last=2)["steps"] == [2, 4]  # once it has ended
    workdir_lib.Lock(w).acquire().release()  # and the lock is free again


def test_a_dead_training_s_lock_is_taken_over(w, caplog):
    """A lock file left by a killed training (its pid, no lock held) does not stop averaging."""
    with open(os.path.join(w, workdir_lib.LOCK_FILE), "w") as f:
        f.write("pid 999999999 on gone-host since 2020-01-01 00:00:00")
    with caplog.at_level(logging.WARNING):
        assert averaging.average_checkpoints(w, last=1)["steps"] == [4]
    assert "no longer running (pid 999999999" in caplog.text


def test_averaging_holds_the_lock_while_it_reads(w, monkeypatch):
    """A training started while averaging reads is refused, so no step rotates away."""
    real, seen = averaging._read_params, []

    def read_params(ckpt, steps):
        with pytest.raises(WorkdirError, match="in use by another training"):
            workdir_lib.Lock(w).acquire()
        seen.append(steps)
        return real(ckpt, steps)

    monkeypatch.setattr(averaging, "_read_params", read_params)
    averaging.average_checkpoints(w, last=2)
    assert seen == [[2, 4]]


@pytest.mark.parametrize("fault", ["vanished", "damaged"])
def test_a_vanished_step_is_told_from_a_damaged_one(w, monkeypatch, fault):
    """A step removed after it was listed (as a rotation does) vs one whose files are broken."""
    real = averaging.select_steps
    step_dir = os.path.join(checkpoint_dir(w), "2")

    def select_steps(ckpt, **kwargs):
        steps = real(ckpt, **kwargs)
        shutil.rmtree(step_dir if fault == "vanished" else os.path.join(step_dir, "state"))
        return steps

    monkeypatch.setattr(averaging, "select_steps", select_steps)
    with pytest.raises(CheckpointError) as e:
        averaging.average_checkpoints(w, last=2)
    assert step_dir in str(e.value)
    message = str(e.value).replace(w, "W")  # the test's name is in the path
    if fault == "vanished":
        assert "vanished" in message and "no longer exists" in message
        assert "damaged" not in message and "corrupt-" not in message
    else:
        assert "damaged" in message and "corrupt-2" in message and "vanished" not in message
    assert not os.path.exists(averaged_dir(w))


def test_script_refuses_while_another_process_trains(w):
    lock = workdir_lib.Lock(w).acquire()
    try:
        p = _script("average.py", f"--workdir={w}", "--last=2")
    finally:
        lock.release()
    errors = _error_lines(p)
    assert p.returncode == 1 and len(errors) == 1, p.stderr
    assert f"pid {os.getpid()}" in errors[0] and "damaged" not in errors[0]


# ---------------------------------------------------------- 4. --best without validation BLEU
@pytest.mark.parametrize("n, last", [(1, 1), (2, 2), (5, 2)])
def test_best_on_a_run_without_bleu_suggests_last(w, n, last):
    with pytest.raises(CheckpointError) as e:
        averaging.average_checkpoints(w, best=n)
    message = str(e.value)
    assert "has no validation BLEU" in message and "config.eval.bleu=False" in message
    assert f"--last {last}" in message
    assert "keep_checkpoints" not in message and "Train" not in message  # no "train longer"
    assert averaging.average_checkpoints(w, last=last)["n"] == last  # the advice works


def test_best_on_a_run_never_validated_at_a_saved_step(w):
    """No BLEU although eval.bleu is on (checkpoints between validations): both causes named."""
    for step in (2, 4):
        metrics = os.path.join(checkpoint_dir(w), str(step), "metrics", "metrics")
        meta = os.path.join(checkpoint_dir(w), str(step), "meta", "metadata")
        workdir_lib.write_json(metrics, {})
        m = workdir_lib.read_json(meta)
        m["metrics"], m["config"]["eval"]["bleu"] = {}, True
        workdir_lib.write_json(meta, m)
    with pytest.raises(
        CheckpointError,
        match="has no validation BLEU .*config.eval.bleu=False,"
        " or never validated at a saved step.*--last 2",
    ):
        averaging.average_checkpoints(w, best=2)


def test_script_best_without_bleu(w):
    p = _script("average.py", f"--workdir={w}", "--best=2")
    errors = _error_lines(p)
    assert p.returncode == 1 and len(errors) == 1, p.stderr
    assert "no validation BLEU" in errors[0] and "--last 2" in errors[0]
