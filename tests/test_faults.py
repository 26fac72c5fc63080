"""Fault injection: every way a run, a workdir or a command line can go wrong ends in a clear
message, and no good work is lost (issue: reliability). One section per fault class; where a
class is cheap to cover whole (every config field, every entry point), the whole class is.
"""

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from shared import ROOT, synthetic_config

from jaxattn import config as config_lib
from jaxattn.errors import CheckpointError, ConfigError, InferenceError, TrainingError, WorkdirError
from jaxattn.inference import translator as inference
from jaxattn.rundir import files as workdir
from jaxattn.rundir.checkpointer import Checkpointer
from jaxattn.rundir.run import Checkpoints
from jaxattn.training import loop as train_lib

TINY = {
    "model.hidden": 16,
    "model.embed_dim": 16,
    "data.synthetic_sizes": (400, 40, 40),
    "train.log_every": 5,
    "train.checkpoint_every": 10,
    "train.eval_every": 10,
    "train.num_train_steps": 20,
    "train.progress_bar": False,
}


def make_config(**overrides):
    return synthetic_config({**TINY, **overrides})


def train(workdir_, **overrides):
    return train_lib.train_and_evaluate(make_config(**overrides), str(workdir_))


def params_of(state):
    import jax

    return {
        jax.tree_util.keystr(k): np.asarray(v)
        for k, v in jax.tree_util.tree_leaves_with_path(state.params)
    }


def run_script(name, *args, timeout=180):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", name), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def assert_one_error_line(r, needle, code=None):
    """A user mistake at the CLI: non-zero exit, one 'error:' line naming it, no traceback."""
    assert r.returncode != 0 if code is None else r.returncode == code, (r.returncode, r.stderr)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, r.stderr[-2000:]
    assert needle in errors[0], errors[0]
    for noise in ("Traceback", "Event loop is closed", "tensorstore", "@     0x"):
        assert noise not in r.stderr, r.stderr[-2000:]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 20-step run (checkpoints 10 and 20, both with validation BLEU)."""
    d = tmp_path_factory.mktemp("trained") / "w"
    train(d)
    return d


def copy_run(src, tmp_path):
    dst = tmp_path / "w"
    shutil.copytree(src, dst)
    os.unlink(dst / workdir.LOCK_FILE) if (dst / workdir.LOCK_FILE).exists() else None
    return dst


# --------------------------------------------------------------------- 1. keep-best
@pytest.mark.slow
def test_best_checkpoint_survives_resumes_past_the_keep_window(tmp_path, monkeypatch):
    w = tmp_path / "w"
    train(w)
    best = Checkpointer(str(w), read_only=True).best_step()
    assert best in (10, 20)
    # Resumed and extended twice: with a worse validation, then with no BLEU at all.
    real = train_lib.validation_scores
    monkeypatch.setattr(
        train_lib, "validation_scores", lambda *a, **k: {**real(*a, **k), "bleu": -1.0}
    )
    train(w, **{"train.num_train_steps": 40})
    monkeypatch.undo()
    train(w, **{"train.num_train_steps": 60, "eval.bleu": False})  # a resume without BLEU
    ckpt = Checkpointer(str(w), read_only=True)
    assert ckpt.all_steps() == sorted({best, 50, 60}), ckpt.all_steps()
    assert ckpt.best_step() == best
    assert json.loads((w / "best.json").read_text())["step"] == best
    assert inference.Translator.from_workdir(str(w), "best").step == best


def test_keep_best_policy_unit(tmp_path):
    """Metrics persist with each checkpoint: a reopened manager still keeps the best."""
    import grain
    import jax.numpy as jnp

    it = iter(grain.MapDataset.range(10).to_iter_dataset())
    state = {"w": jnp.ones(3)}
    ck = Checkpointer(str(tmp_path), keep_latest=2, async_save=False)
    for step, bleu in ((1, 50.0), (2, 10.0)):
        ck.save(step, state, it, {}, {"bleu": bleu})
    ck.close()
    ck = Checkpointer(str(tmp_path), keep_latest=2, async_save=False)
    for step, metrics in ((3, {"bleu": 5.0}), (4, None), (5, {"bleu": 1.0})):
        ck.save(step, state, it, {}, metrics)
    ck.close()
    ro = Checkpointer(str(tmp_path), read_only=True)
    assert ro.all_steps() == [1, 4, 5]
    assert ro.best_step() == 1 and ro.metrics(1) == {"bleu": 50.0}
    with Checkpoints(str(tmp_path)) as ckpts:
        assert ckpts.resolve("best") == 1


@pytest.mark.slow
def test_runs_from_before_the_fix_get_their_metrics_back(trained, tmp_path):
    """Old checkpoints kept metrics only in `meta`: they are backfilled on resume."""
    w = copy_run(trained, tmp_path)
    for step in (10, 20):
        shutil.rmtree(w / "checkpoints" / str(step) / "metrics")
    assert Checkpointer(str(w), read_only=True).best_step() in (10, 20)  # from meta
    ck = Checkpointer(str(w))
    ck.close()
    assert (w / "checkpoints" / "10" / "metrics" / "metrics").exists()


# ------------------------------------------------------------ 2-3. restore errors
@pytest.mark.slow
@pytest.mark.parametrize(
    "change",
    [
        {"train.grad_clip": 1.0},
        {"train.optimizer": "sgd"},
        {"train.optimizer": "adamw", "train.weight_decay": 0.01},
    ],
)
def test_optimizer_change_resumes_from_params_with_fresh_state(trained, tmp_path, caplog, change):
    w = copy_run(trained, tmp_path)
    before = params_of_checkpoint(w, 20)
    with caplog.at_level("WARNING"):
        state, _ = train(w, **{"train.num_train_steps": 25, **change})
    assert "fresh optimizer state" in caplog.text
    assert "unreadable" not in caplog.text
    assert int(state.step) == 25
    assert Checkpointer(str(w), read_only=True).all_steps()[-1] == 25
    assert any(not np.array_equal(before[k], v) for k, v in params_of(state).items())


def params_of_checkpoint(w, step):
    t = inference.Translator.from_workdir(str(w), step)
    import jax

    return {
        jax.tree_util.keystr(k): np.asarray(v)
        for k, v in jax.tree_util.tree_leaves_with_path(t.variables["params"])
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", ["src_vocab.txt", "tgt_vocab.txt"])
def test_changed_vocabulary_is_named(trained, tmp_path, name):
    w = copy_run(trained, tmp_path)
    lines = (w / name).read_text().splitlines()
    (w / name).write_text("\n".join(lines[:-3]) + "\n")  # truncated
    with pytest.raises(CheckpointError, match=name):
        train(w, **{"train.num_train_steps": 30})
    with pytest.raises(InferenceError, match=name):
        inference.Translator.from_workdir(str(w))
    (w / name).unlink()
    with pytest.raises(CheckpointError, match=f"{name} is missing"):
        train(w, **{"train.num_train_steps": 30})


@pytest.mark.slow
def test_other_model_is_refused_not_called_corrupt(trained, tmp_path):
    w = copy_run(trained, tmp_path)
    with pytest.raises(CheckpointError, match="model.hidden: saved 16, now 32"):
        train(w, **{"model.hidden": 32})
    assert Checkpointer(str(w), read_only=True).all_steps() == [10, 20]


@pytest.mark.slow
def test_corrupt_latest_is_moved_aside_and_saved_again(trained, tmp_path, caplog):
    w = copy_run(trained, tmp_path)
    for root, _, files in os.walk(w / "checkpoints" / "20" / "state"):
        for name in files:
            (tmp := os.path.join(root, name)) and open(tmp, "wb").write(b"garbage")
    with caplog.at_level("WARNING"):
        state, _ = train(w)
    assert "step 20 is unreadable" in caplog.text and "corrupt-20" in caplog.text
    assert len([r for r in caplog.records if "unreadable" in r.getMessage()]) == 1
    assert max(len(r.getMessage()) for r in caplog.records) < 600  # no TensorStore dump
    assert (w / "checkpoints" / "corrupt-20").is_dir()
    assert Checkpointer(str(w), read_only=True).all_steps() == [10, 20]  # 20 saved again
    assert int(state.step) == 20
    assert inference.Translator.from_workdir(str(w)).step == 20


# ------------------------------------------------------- 4. long evaluation sentences
def _parallel_corpus(tmp_path, long_line: int):
    d = tmp_path / "corpus"
    d.mkdir()
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(12)]

    def lines(n):
        return [" ".join(rng.choice(words, rng.integers(2, 6))) for _ in range(n)]

    for split, n in (("train", 300), ("validation", 20), ("test", 20)):
        src = lines(n)
        if split == "validation":
            src[3] = " ".join(["w1"] * long_line)
        (d / f"{split}.src").write_text("\n".join(src) + "\n")
        (d / f"{split}.tgt").write_text("\n".join(src) + "\n")
    return d


@pytest.mark.slow
def test_overlong_validation_sentences_are_cut_not_fatal(tmp_path, caplog):
    from jaxattn import data as data_lib

    corpus = _parallel_corpus(tmp_path, long_line=20000)
    overrides = {
        "data.name": "parallel",
        "data.path": str(corpus),
        "data.src_lang": "src",
        "data.tgt_lang": "tgt",
        "data.data_dir": str(tmp_path / "tfds"),
        "data.max_length": 12,
    }
    data = data_lib.build(make_config(**overrides).data)
    with caplog.at_level("WARNING"):
        batches = data.eval_batches("validation", 8)
    assert max(b["src"].shape[1] for b in batches) <= 16  # 12 rounded up to pad_multiple
    assert "1 sentence(s)" in caplog.text or "2 sentence(s)" in caplog.text
    state, metrics = train(tmp_path / "w", **overrides, **{"train.num_train_steps": 10})
    assert int(state.step) == 10 and math.isfinite(metrics["loss"])


@pytest.mark.slow
def test_failed_validation_keeps_the_checkpoint(tmp_path, monkeypatch):
    w = tmp_path / "w"

    def broken(*a, **k):
        raise RuntimeError("RESOURCE_EXHAUSTED: out of memory\nand 50 more lines")

    monkeypatch.setattr(train_lib, "validation_scores", broken)
    with pytest.raises(TrainingError, match="Validation at step 10 failed.*is saved"):
        train(w)
    assert Checkpointer(str(w), read_only=True).all_steps() == [10]
    monkeypatch.undo()
    state, _ = train(w)  # fixed: resumes from 10
    assert int(state.step) == 20


# ----------------------------------------------------------------- 5. divergence
# The guard's rules and both directions end to end: tests/test_guard.py.
@pytest.mark.slow
def test_diverging_run_keeps_its_good_checkpoints(trained, tmp_path, monkeypatch, nan_loss_from):
    w = copy_run(trained, tmp_path)
    monkeypatch.setattr(train_lib, "train_step", nan_loss_from(23))
    with pytest.raises(TrainingError, match="stopped without saving"):
        train(w, **{"train.num_train_steps": 200})
    assert Checkpointer(str(w), read_only=True).all_steps() == [10, 20]


# -------------------------------------------------------------- 6. stale vocabulary
@pytest.mark.slow
def test_files_of_a_run_without_checkpoints_are_not_reused(tmp_path, monkeypatch, nan_loss_from):
    w = tmp_path / "w"
    monkeypatch.setattr(train_lib, "train_step", nan_loss_from(0))
    with pytest.raises(TrainingError):  # dies at its first log, before any checkpoint
        train(w)
    monkeypatch.undo()
    assert not (w / "src_vocab.txt").exists() and not (w / "config.json").exists()
    (w / "src_vocab.txt").write_text("<pad>\n<s>\n</s>\n<unk>\nstale\n")  # another corpus's
    (w / "tgt_vocab.txt").write_text("<pad>\n<s>\n</s>\n<unk>\nstale\n")
    (w / "config.json").write_text("{broken")
    state, _ = train(w, **{"train.num_train_steps": 10})
    assert "stale" not in (w / "src_vocab.txt").read_text()
    assert json.loads((w / "config.json").read_text())["model"]["hidden"] == 16


# ---------------------------------------------------------- 7. best.json, metadata
@pytest.mark.slow
def test_truncated_best_json_blocks_nothing(trained, tmp_path):
    w = copy_run(trained, tmp_path)
    (w / "best.json").write_text('{"step": 1')
    with Checkpoints(str(w)) as ckpts:
        assert ckpts.resolve("best") in (10, 20)
    state, _ = train(w, **{"train.num_train_steps": 30})
    assert int(state.step) == 30
    assert json.loads((w / "best.json").read_text())["step"] in (10, 20, 30)


def test_atomic_writes_leave_no_partial_file(tmp_path):
    path = str(tmp_path / "f.json")
    workdir.write_json(path, {"a": 1})

    class Boom:
        def __iter__(self):
            raise KeyboardInterrupt

    with pytest.raises(TypeError):
        workdir.write_json(path, {"a": Boom()})
    assert json.loads(open(path).read()) == {"a": 1}
    assert os.listdir(tmp_path) == ["f.json"]
    assert oct(os.stat(path).st_mode & 0o777) != oct(0o600)


# ---------------------------------------------------------------- 8. workdir lock
@pytest.mark.slow
def test_second_training_on_a_workdir_is_refused(tmp_path, caplog):
    w = tmp_path / "w"
    w.mkdir()
    with workdir.Lock(str(w)):
        with pytest.raises(WorkdirError, match=f"pid {os.getpid()}"):
            train(w, **{"train.num_train_steps": 10})
    (w / workdir.LOCK_FILE).write_text("pid 999999 on a-dead-host since 2026-01-01")
    with caplog.at_level("WARNING"):
        state, _ = train(w, **{"train.num_train_steps": 10})
    assert "Taking over the lock" in caplog.text and "999999" in caplog.text
    assert int(state.step) == 10
    assert (w / workdir.LOCK_FILE).read_text() == ""  # released on exit


# ------------------------------------------------------- 9. every config field checked
def _fields():
    config = config_lib.default_config()
    for section in ("", "data", "model", "train", "eval"):
        cfg = config[section] if section else config
        for key in cfg.keys():
            if section == "" and key in config_lib.rules():
                continue
            yield section, key, cfg[key]


def _bad_values(value):
    if isinstance(value, bool):
        return ["yes", 1]
    if isinstance(value, int):
        return [-(10**9), 1.5, "3"]
    if isinstance(value, float):
        return [float("nan"), float("inf"), -1e9, "0.1"]
    if isinstance(value, str):
        return [3]
    if isinstance(value, tuple):
        return ["x", (-1,) * max(len(value), 1)]
    return []


def test_every_config_field_has_a_rule():
    rules = config_lib.rules()
    for section, key, _ in _fields():
        assert key in rules[section] or (section, key) == ("data", "splits"), (section, key)


@pytest.mark.parametrize(
    "section,key,value", [f for f in _fields() if _bad_values(f[2])], ids=lambda x: str(x)
)
def test_every_bad_field_value_fails_before_any_work(tmp_path, section, key, value):
    for bad in _bad_values(value):
        config = config_lib.default_config()
        cfg = config[section] if section else config
        with cfg.ignore_type():
            cfg[key] = bad
        name = f"config.{section}.{key}" if section else f"config.{key}"
        try:
            config_lib.validate(config)
        except ConfigError as e:
            assert name in str(e), (bad, str(e))
        else:  # a value that is in range for this field (e.g. -1e9 with no lower bound)
            assert not isinstance(bad, str) and section not in ("model",), (name, bad)
            continue
        with pytest.raises(ConfigError, match=name.replace(".", r"\.")):
            train_lib.train_and_evaluate(config, str(tmp_path / "w"))
        assert not (tmp_path / "w").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "key,value",
    [
        ("eval.batch_size", 0),
        ("eval.max_decode_len", 0),
        ("model.hidden", 0),
        ("train.learning_rate", -1e-3),
        ("train.keep_checkpoints", 0),
        ("data.sp_vocab_size", 0),
        ("model.attention", "bogus"),
        ("data.name", "bogus"),
    ],
)
def test_issue_examples_fail_before_any_file(tmp_path, key, value):
    with pytest.raises(ConfigError, match=f"config.{key}"):
        train(tmp_path / "w", **{key: value})
    assert not (tmp_path / "w").exists()


@pytest.mark.slow
def test_python_api_checks_arguments(trained, tmp_path):
    with pytest.raises(ConfigError, match="ConfigDict"):
        train_lib.train_and_evaluate({"model": {}}, str(tmp_path / "w"))
    with pytest.raises(ConfigError, match="workdir"):
        train_lib.train_and_evaluate(make_config(), None)
    with pytest.raises(ValueError, match="workdir"):
        inference.Translator.from_workdir(3)
    tr = inference.Translator.from_workdir(str(trained))
    for kwargs, needle in [
        (dict(sentences="a b c"), "sentences"),
        (dict(sentences=[1, 2]), "sentences"),
        (dict(sentences=["a"], beam_size=0), "beam_size"),
        (dict(sentences=["a"], beam_size=2.5), "beam_size"),
        (dict(sentences=["a"], alpha=float("nan")), "alpha"),
        (dict(sentences=["a"], max_len=0), "max_len"),
        (dict(sentences=["a"], batch_size=0), "batch_size"),
    ]:
        sentences = kwargs.pop("sentences")
        with pytest.raises(ValueError, match=needle):
            tr.translate(sentences, **kwargs)
    with pytest.raises(ValueError, match="references"):
        tr.evaluate(["a b"], "a b")


@pytest.mark.slow
def test_search_entry_points_check_arguments(trained):
    """Every public search function names its bad argument (ValueError), before tracing."""
    from jaxattn import search

    tr = inference.Translator.from_workdir(str(trained))
    src, src_len = np.ones((2, 4), np.int32), np.array([4, 3])
    ok = dict(eos_id=tr.tgt_vocab.eos_id, max_len=5)
    cases = [
        (dict(max_len=0), "max_len"),
        (dict(max_len=2.5), "max_len"),
        (dict(eos_id=-1), "eos_id"),
        (dict(src=np.ones(4, np.int32)), "src must"),
        (dict(src=np.ones((2, 4), np.float32)), "src must"),
        (dict(src_len=np.array([4])), "src_len"),
        (dict(beam_size=0), "beam_size"),
        (dict(alpha=float("inf")), "alpha"),
        (dict(n_best=3, beam_size=2), "n_best"),
    ]
    for bad, needle in cases:
        for fn in (search.greedy_search, search.beam_search):
            kw = {**ok, **({"beam_size": 2} if fn is search.beam_search else {}), **bad}
            beam_only = {"beam_size", "alpha", "n_best"} & bad.keys()
            if fn is search.greedy_search and beam_only:
                continue
            args = (kw.pop("src", src), kw.pop("src_len", src_len))
            with pytest.raises(ValueError, match=needle):
                fn(tr.model, tr.variables, *args, **kw)


# ------------------------------------------------------------ 10. corrupt config.json
@pytest.mark.slow
def test_corrupt_config_json_is_named(trained, tmp_path):
    w = copy_run(trained, tmp_path)
    (w / "config.json").write_text('{"model": {"hidden": 16')
    with pytest.raises(WorkdirError, match="config.json"):
        train(w, **{"train.num_train_steps": 30})
    with pytest.raises(InferenceError, match="config.json"):
        inference.Translator.from_workdir(str(w))
    r = run_script("evaluate.py", f"--workdir={w}", "--src=/dev/null", "--ref=/dev/null")
    assert_one_error_line(r, "config.json")
    (w / "config.json").write_text("[1, 2]")
    with pytest.raises(InferenceError, match="config.json"):
        inference.Translator.from_workdir(str(w))
    saved = json.loads((trained / "config.json").read_text())
    saved["model"]["hidden"] = "sixteen"  # valid JSON, invalid value
    saved["model"]["from_a_later_version"] = 1  # unknown fields are kept, not refused
    (w / "config.json").write_text(json.dumps(saved))
    with pytest.raises(InferenceError, match="config.json.*config.model.hidden"):
        inference.Translator.from_workdir(str(w))
    saved["model"]["hidden"] = 16
    (w / "config.json").write_text(json.dumps(saved))
    assert inference.Translator.from_workdir(str(w)).step == 20


# ---------------------------------------------------- 11-12. the command line, quietly
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_cli_user_mistakes_are_one_line(tmp_path, trained):
    cfg = os.path.join(ROOT, "configs", "synthetic.py")
    (tmp_path / "broken.py").write_text("def get_config(:\n")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "empty").mkdir()
    cases = [
        (
            ("train.py", f"--config={tmp_path / 'missing.py'}", f"--workdir={tmp_path / 'a'}"),
            "missing.py",
            2,
        ),
        (
            ("train.py", f"--config={tmp_path / 'broken.py'}", f"--workdir={tmp_path / 'a'}"),
            "--config",
            2,
        ),
        (("train.py", f"--config={cfg}", f"--workdir={tmp_path / 'afile'}"), "is a file", 1),
        (
            (
                "train.py",
                f"--config={cfg}",
                f"--workdir={tmp_path / 'a'}",
                "--config.eval.batch_size=0",
            ),
            "config.eval.batch_size",
            2,
        ),
        (
            (
                "train.py",
                f"--config={cfg}",
                f"--workdir={tmp_path / 'a'}",
                "--distributed=explicit",
            ),
            "--coordinator_address",
            2,
        ),
        (
            (
                "train.py",
                f"--config={cfg}",
                f"--workdir={tmp_path / 'a'}",
                "--coordinator_address=127.0.0.1:1234",
            ),
            "--distributed=explicit",
            2,
        ),
        (
            (
                "train.py",
                f"--config={cfg}",
                f"--workdir={tmp_path / 'a'}",
                "--distributed=explicit",
                "--coordinator_address=127.0.0.1:1",
                "--num_processes=2",
                "--process_id=2",
            ),
            "--process_id",
            2,
        ),
        (("evaluate.py", f"--workdir={tmp_path / 'empty'}"), "no training run", 1),
        (("translate.py", f"--workdir={trained}", "--checkpoint=7"), "No checkpoint at step 7", 1),
    ]
    for args, needle, code in cases:
        assert_one_error_line(run_script(*args), needle, code)
    assert not (tmp_path / "a").exists()


@pytest.mark.slow
def test_coordinator_timeout_says_what_it_waited_for(tmp_path):
    cfg = os.path.join(ROOT, "configs", "synthetic.py")
    t0 = time.time()
    r = run_script(
        "train.py",
        f"--config={cfg}",
        f"--workdir={tmp_path / 'w'}",
        "--distributed=explicit",
        f"--coordinator_address=127.0.0.1:{_free_port()}",
        "--num_processes=2",
        "--process_id=0",
        "--distributed_timeout=3",
    )
    assert_one_error_line(r, "waited 3 s for all 2 processes", 1)
    assert time.time() - t0 < 90


def _tmpfs(path, size):
    path.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if r.returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    return path


@pytest.mark.slow
def test_disk_full_is_one_line_and_best_json_stays_true(tmp_path):
    disk = _tmpfs(tmp_path / "disk", "3m")
    try:
        w = disk / "w"
        cfg = os.path.join(ROOT, "configs", "synthetic.py")
        filler = disk / "filler"
        args = [f"--config={cfg}", f"--workdir={w}"] + [
            f"--config.{k}={v}" for k, v in {**TINY, "train.num_train_steps": 100}.items()
        ]
        with open(filler, "wb") as f:  # leave room for about two checkpoints
            f.write(b"\0" * (3 * 2**20 - 700 * 2**10))
        r = run_script("train.py", *args)
        assert_one_error_line(r, "the disk is full", 1)
        steps = Checkpointer(str(w), read_only=True).all_steps()
        best = json.loads((w / "best.json").read_text()) if (w / "best.json").exists() else None
        assert best is None or best["step"] in steps
        filler.unlink()
        r = run_script("train.py", *args)  # space again: resumes and finishes
        assert r.returncode == 0, r.stderr[-2000:]
        assert Checkpointer(str(w), read_only=True).all_steps()[-1] == 100
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


@pytest.mark.slow
def test_kill_9_during_saves_then_resume(tmp_path):
    w = tmp_path / "w"
    cfg = os.path.join(ROOT, "configs", "synthetic.py")
    args = [f"--config={cfg}", f"--workdir={w}"] + [
        f"--config.{k}={v}"
        for k, v in {
            **TINY,
            "train.num_train_steps": 25,
            "train.checkpoint_every": 1,
            "train.eval_every": 1000,
        }.items()
    ]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "scripts", "train.py"), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    t0 = time.time()
    while not (w / "checkpoints" / "5").exists():  # saving every step from here on
        assert proc.poll() is None and time.time() - t0 < 120
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    r = run_script("train.py", *args)
    assert r.returncode == 0, r.stderr[-2000:]
    steps = Checkpointer(str(w), read_only=True).all_steps()
    assert steps[-1] == 25
    assert not [d for d in os.listdir(w / "checkpoints") if "tmp" in d]
    assert inference.Translator.from_workdir(str(w)).step == 25
