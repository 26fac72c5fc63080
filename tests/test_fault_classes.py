"""Fault classes of issue #25 (items 5-7), each covered as a class: damaged archives and
compressed files, every --distributed mode's failures, unreadable checkpoints with nothing left
to resume, every way a --config file fails, checkpoint selectors of the wrong type, token ids
outside the vocabulary, and invisible format characters in text. Each ends in one clear error
(or, for text, one documented behaviour), never a traceback or a page of library noise.
"""

import bz2
import gzip
import lzma
import os
import runpy
import shutil
import socket
import subprocess
import sys
import tarfile
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from shared import ROOT

from jaxattn.data import download, readers
from jaxattn.data.text import INVISIBLE, Tokenizer, normalize_tutorial
from jaxattn.errors import CheckpointError, DataError, InferenceError, TrainingError, UsageError
from jaxattn.rundir.checkpointer import Checkpointer
from jaxattn.rundir.layout import AVERAGED, EMA, check_selector
from jaxattn.tools import cli

TINY = {
    "model.hidden": 8,
    "model.embed_dim": 8,
    "data.synthetic_sizes": (64, 16, 16),
    "train.num_train_steps": 4,
    "train.checkpoint_every": 2,
    "train.eval_every": 4,
    "train.log_every": 2,
    "train.progress_bar": False,
}
NOISE = ("Traceback", "Exception ignored", "Event loop is closed", "TensorStore", "@     0x")


def _script(name, *args, timeout=180):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", name), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def _one_error_line(r, *needles, code=None):
    """The script failed with exactly one 'error:' line holding every needle, and no noise."""
    assert r.returncode == code if code is not None else r.returncode != 0, r.stderr[-2000:]
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, r.stderr[-2000:]
    for needle in needles:
        assert needle in errors[0], errors[0]
    for noise in NOISE:
        assert noise not in r.stderr, r.stderr[-2000:]
    return errors[0]


# ----------------------------------------------------- 1a. damaged archives, compressed files
TEXT = b"Go.\tVa !\nRun!\tCours !\n" * 200


def _zip(path, method=zipfile.ZIP_DEFLATED, member="data/eng-fra.txt"):
    with zipfile.ZipFile(path, "w", method) as z:
        z.writestr(member, TEXT)
    return path


def _damage_member(path):
    """Overwrites bytes in the middle of the (only) member's data: its headers stay intact."""
    data = bytearray(path.read_bytes())
    data[60:90] = b"\x00" * 30
    path.write_bytes(bytes(data))
    return path


def _tar(path):
    inner = path.parent / "eng-fra.txt"
    inner.write_bytes(TEXT)
    with tarfile.open(path, "w") as t:
        t.add(inner, arcname="eng-fra.txt")
    return path


DAMAGED = {
    # name: (make(tmp_path) -> path, words the message must hold)
    "deflate member corrupted (zlib.error)": (
        lambda d: _damage_member(_zip(d / "data.zip")),
        ("damaged zip", "data/eng-fra.txt"),
    ),
    "stored member corrupted (CRC)": (
        lambda d: _damage_member(_zip(d / "data.zip", zipfile.ZIP_STORED)),
        ("damaged zip",),
    ),
    "bzip2 member corrupted": (
        lambda d: _damage_member(_zip(d / "data.zip", zipfile.ZIP_BZIP2)),
        ("damaged zip",),
    ),
    "lzma member corrupted": (
        lambda d: _damage_member(_zip(d / "data.zip", zipfile.ZIP_LZMA)),
        ("damaged zip",),
    ),
    "truncated zip": (
        lambda d: (p := _zip(d / "data.zip")).write_bytes(p.read_bytes()[:-30]) and p,
        ("not a readable zip", "missing or damaged"),
    ),
    "text named .zip": (
        lambda d: (d / "data.zip").write_bytes(TEXT) and d / "data.zip",
        ("not a readable zip", "no zip archive"),
    ),
    "gzip": (
        lambda d: (d / "c.txt.gz").write_bytes(gzip.compress(TEXT)) and d / "c.txt.gz",
        ("compressed (gzip)", "gunzip"),
    ),
    "bzip2": (
        lambda d: (d / "c.txt.bz2").write_bytes(bz2.compress(TEXT)) and d / "c.txt.bz2",
        ("compressed (bzip2)",),
    ),
    "xz": (
        lambda d: (d / "c.txt.xz").write_bytes(lzma.compress(TEXT)) and d / "c.txt.xz",
        ("compressed (xz)",),
    ),
    "tar": (lambda d: _tar(d / "c.tar"), ("an archive (tar)",)),
}


@pytest.mark.parametrize("kind", list(DAMAGED))
def test_damaged_or_packed_files_are_a_data_error_naming_the_file(tmp_path, kind):
    make, needles = DAMAGED[kind]
    path = make(tmp_path)
    with pytest.raises(DataError) as e:
        readers.read_bytes(path)
    message = str(e.value)
    assert str(path) in message and "\n" not in message
    for needle in needles:
        assert needle in message, message
    # every reader goes through read_bytes: evaluation files and corpora alike
    with pytest.raises(DataError, match="zip|compressed|archive"):
        readers.read_lines(str(path))


def test_good_zips_still_read(tmp_path):
    for method in (zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):
        assert readers.read_bytes(_zip(tmp_path / f"{method}.zip", method)) == TEXT
    with pytest.raises(FileNotFoundError, match="without eng-fra.txt"):  # as before
        readers.read_bytes(_zip(tmp_path / "other.zip", member="fra.txt"))
    plain = tmp_path / "BZh-looking.txt"  # text that only starts like a compressed file
    plain.write_bytes(b"BZh is a word\tnot bzip2\n")
    assert readers.read_bytes(plain).startswith(b"BZh")


def test_damaged_download_is_removed_and_named(tmp_path):
    src = _damage_member(_zip(tmp_path / "served.zip"))
    dest = tmp_path / "dl" / "data.zip"
    with pytest.raises(DataError, match="is not the tutorial's data.zip .*damaged zip"):
        download.download_tutorial_zip(src.as_uri(), str(dest))
    assert not dest.exists() and not (tmp_path / "dl" / "data.zip.part").exists()


@pytest.mark.slow
def test_damaged_zip_at_the_command_line_is_one_line(tmp_path):
    z = _damage_member(_zip(tmp_path / "data.zip"))
    r = _script(
        "train.py",
        f"--config={ROOT}/configs/base.py",
        f"--workdir={tmp_path / 'w'}",
        f"--config.data.path={z}",
    )
    _one_error_line(r, str(z), "damaged zip", code=1)
    assert not (tmp_path / "w" / "checkpoints").exists()


# --------------------------------------------------------------- 1b. every --distributed mode
@pytest.fixture
def no_cluster(monkeypatch):
    for name in (
        "JAX_COORDINATOR_ADDRESS",
        "SLURM_JOB_ID",
        "OMPI_MCA_orte_hnp_uri",
        "TPU_WORKER_HOSTNAMES",
        "MEGASCALE_COORDINATOR_ADDRESS",
    ):
        monkeypatch.delenv(name, raising=False)


def test_distributed_auto_without_a_cluster(no_cluster, monkeypatch):
    """JAX's own refusal, as it comes before any backend exists (the command-line test below
    runs the real one; in this process other tests have started JAX's backend already)."""

    def initialize(**kw):
        raise ValueError("coordinator_address should be defined.")

    monkeypatch.setattr(jax.distributed, "initialize", initialize)
    with pytest.raises(UsageError, match="no cluster detected") as e:
        cli.init_distributed("auto", None, None, None, 5)
    assert "--distributed=explicit" in str(e.value) and "--distributed=off" in str(e.value)


def test_distributed_explicit_coordinator_problems_fail_before_jax(monkeypatch):
    called = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: called.append(kw))
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cases = [
            ("nosuchhost.invalid:1234", 1, "cannot resolve host 'nosuchhost.invalid'"),
            (f"127.0.0.1:{port}", 0, f"port {port} is already in use"),
            ("127.0.0.1:0", 1, "port 0 is not in 1..65535"),
            ("127.0.0.1:70000", 1, "port 70000 is not in 1..65535"),
        ]
        for address, process_id, needle in cases:
            with pytest.raises(UsageError, match=needle):
                cli.init_distributed("explicit", address, 2, process_id, 5)
    assert called == []
    # a free port on process 0, or another process's view of a taken port: JAX's turn
    cli.init_distributed("explicit", f"127.0.0.1:{port}", 2, 1, 5)
    assert called and called[-1]["coordinator_address"] == f"127.0.0.1:{port}"


def test_distributed_runtime_failure_is_a_training_error(monkeypatch):
    def fail(**kw):
        raise jax.errors.JaxRuntimeError("UNKNOWN: Failed to start RPC server")

    monkeypatch.setattr(jax.distributed, "initialize", fail)
    monkeypatch.setattr(cli, "_check_coordinator", lambda *a: None)
    with pytest.raises(TrainingError, match="could not start .*Failed to start RPC server"):
        cli.init_distributed("explicit", "127.0.0.1:1234", 2, 0, 5)


@pytest.mark.slow
def test_distributed_auto_at_the_command_line_is_one_line(tmp_path, no_cluster):
    r = _script(
        "train.py",
        f"--config={ROOT}/configs/synthetic.py",
        f"--workdir={tmp_path / 'w'}",
        "--distributed=auto",
    )
    _one_error_line(r, "no cluster detected", "--distributed=explicit", code=2)
    assert not (tmp_path / "w").exists()


# ------------------------------------------------- 2. every checkpoint of a run unreadable
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 4-step synthetic run with checkpoints 2 and 4, and its config file."""
    from jaxattn.training.loop import train_and_evaluate

    d = tmp_path_factory.mktemp("fault_classes")
    config_file = d / "tiny.py"
    config_file.write_text(
        "import runpy\n"
        f"_base = runpy.run_path({os.path.join(ROOT, 'configs', 'synthetic.py')!r})\n"
        "def get_config():\n"
        "    c = _base['get_config']()\n"
        + "".join(f"    c.{k} = {v!r}\n" for k, v in TINY.items())
        + "    return c\n"
    )
    config = runpy.run_path(str(config_file))["get_config"]()
    workdir = d / "run"
    train_and_evaluate(config, str(workdir))
    return workdir, config_file, config


def _corrupt_every_checkpoint(workdir, how):
    """Damages the array data files of every checkpoint (their metadata stays readable)."""
    steps = Checkpointer(str(workdir), read_only=True).all_steps()
    assert steps == [2, 4]
    for step in steps:
        for root, _, files in os.walk(workdir / "checkpoints" / str(step) / "state"):
            if os.path.basename(root) != "d":  # OCDBT's data files
                continue
            for name in files:
                path = os.path.join(root, name)
                size = os.path.getsize(path)
                with open(path, "r+b") as f:
                    if how == "truncate":
                        f.truncate(size // 3)
                    else:
                        f.write(b"garbage" * (size // 7 + 1))
    return steps


def _copy(run, tmp_path):
    dst = tmp_path / "w"
    shutil.copytree(run, dst, ignore=shutil.ignore_patterns(".lock"))
    return dst


@pytest.mark.slow
def test_no_readable_checkpoint_script_says_so_in_few_lines(run, tmp_path):
    workdir, config_file, _ = run
    w = _copy(workdir, tmp_path)
    steps = _corrupt_every_checkpoint(w, "overwrite")
    r = _script("train.py", f"--config={config_file}", f"--workdir={w}")
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stderr.splitlines()
    moved = [line for line in lines if "is unreadable" in line]
    assert len(moved) == len(steps), r.stderr[-3000:]
    assert any("starting from scratch (step 0)" in line for line in lines), r.stderr[-3000:]
    assert len(lines) <= 8, r.stderr[-3000:]
    for noise in NOISE:
        assert noise not in r.stderr, r.stderr[-3000:]
    assert sorted(os.listdir(w / "checkpoints")) == ["2", "4", "corrupt-2", "corrupt-4"]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["truncate", "overwrite"])
def test_no_readable_checkpoint_python_api_is_quiet(run, tmp_path, capfd, caplog, how):
    from jaxattn.training.loop import train_and_evaluate

    workdir, _, config = run
    w = _copy(workdir, tmp_path)
    steps = _corrupt_every_checkpoint(w, how)
    capfd.readouterr()
    with caplog.at_level("WARNING"):
        state, _ = train_and_evaluate(config, str(w))
    err = capfd.readouterr().err
    for noise in NOISE:
        assert noise not in err, err[-3000:]
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("jaxattn")]
    assert len([m for m in messages if "is unreadable" in m]) == len(steps)
    assert len([m for m in messages if "starting from scratch (step 0)" in m]) == 1
    assert max(len(m) for m in messages) < 600  # no TensorStore spec dump
    assert int(state.step) == 4


@pytest.mark.slow
def test_unreadable_checkpoint_for_inference_is_quiet(run, tmp_path, capfd):
    import gc

    from jaxattn.inference.translator import Translator

    w = _copy(run[0], tmp_path)
    _corrupt_every_checkpoint(w, "overwrite")
    capfd.readouterr()
    with pytest.raises(InferenceError, match="Cannot restore the parameters of step 4"):
        Translator.from_workdir(str(w))
    gc.collect()
    err = capfd.readouterr().err
    for noise in NOISE:
        assert noise not in err, err[-3000:]


# ------------------------------------------------------------- 3. every bad --config file
CONFIG_FILES = {
    # name: (file content or None for no file, --config suffix, words the error must hold)
    "missing": (None, "", ("no such file: {path}",)),
    "syntax error": ("def get_config(:\n", "", ("{path} line 1: syntax error",)),
    "no get_config": ("x = 1\n", "", ("{path} has no get_config()",)),
    "get_config raises": (
        "def get_config():\n    raise ValueError('boom')\n",
        "",
        ("{path} line 2: get_config() raised ValueError: boom",),
    ),
    "get_config returns None": (
        "def get_config():\n    pass\n",
        "",
        ("{path}: get_config() returned None; it must return an ml_collections.ConfigDict",),
    ),
    "import fails": (
        "import no_such_module_here\n",
        "",
        ("{path} line 1: loading it failed: ModuleNotFoundError",),
    ),
    "bad argument": (
        "def get_config():\n    return None\n",
        ":small",
        ("{path}: get_config('small') raised TypeError",),
    ),
}


@pytest.mark.parametrize("case", list(CONFIG_FILES))
def test_bad_config_files_are_named_in_one_line(tmp_path, case):
    content, suffix, needles = CONFIG_FILES[case]
    path = tmp_path / "configs" / "x.py"
    if content is not None:
        path.parent.mkdir()
        path.write_text(content)
    with pytest.raises(cli._ConfigFileProblem) as e:
        cli._ConfigFileParser("config").parse(f"{path}{suffix}")
    message = str(e.value)
    assert message.startswith("--config") and "\n" not in message
    for needle in needles:
        assert needle.format(path=path) in message, message


def test_config_file_loads_like_ml_collections():
    config = cli._ConfigFileParser("config").parse(os.path.join(ROOT, "configs", "luong.py"))
    want = runpy.run_path(os.path.join(ROOT, "configs", "luong.py"))["get_config"]()
    assert config.to_dict() == want.to_dict() and config.is_locked


@pytest.mark.slow
@pytest.mark.parametrize("case", ["missing", "get_config returns None", "no get_config"])
def test_bad_config_files_at_the_command_line(tmp_path, case):
    content, _, needles = CONFIG_FILES[case]
    path = tmp_path / "x.py"
    if content is not None:
        path.write_text(content)
    r = _script(
        "train.py", f"--config={path}", f"--workdir={tmp_path / 'w'}", "--config.model.hidden=8"
    )  # an override too: checked after the file
    _one_error_line(r, *(n.format(path=path) for n in needles), code=2)
    assert "must have a value other than None" not in r.stderr
    assert "config_config" not in r.stderr
    assert not (tmp_path / "w").exists()


@pytest.mark.slow
def test_missing_required_config_flag(tmp_path):
    r = _script("train.py", f"--workdir={tmp_path / 'w'}")
    _one_error_line(r, "--config is required", code=2)


# ------------------------------------------------------------ 4. checkpoint selectors
@pytest.mark.parametrize(
    "bad", [True, False, np.bool_(True), 2.0, None, [4], "4.0", "", "lates", b"4"]
)
def test_checkpoint_selectors_refuse_other_types(bad):
    with pytest.raises(
        CheckpointError, match="must be 'latest', 'best', 'averaged', 'ema' or a step"
    ):
        check_selector(bad)


@pytest.mark.parametrize(
    "good", ["latest", "best", AVERAGED, str(AVERAGED), EMA, "ema", 4, np.int64(4), "4", " 4 "]
)
def test_checkpoint_selectors_accepted(good):
    assert check_selector(good) is good


@pytest.mark.slow
def test_bool_checkpoint_is_refused_not_read_as_step_1(run):
    from jaxattn.inference.translator import Translator
    from jaxattn.rundir import run as run_lib

    workdir = str(run[0])
    for bad in (True, 2.0):
        with pytest.raises(ValueError, match="not True|not 2.0"):
            Translator.from_workdir(workdir, checkpoint=bad)
        with pytest.raises(ValueError, match="a step number"):
            run_lib.restore_runs([workdir, workdir], [4, bad])
        with run_lib.Checkpoints(workdir) as ckpts:
            with pytest.raises(CheckpointError, match="a step number"):
                ckpts.resolve(bad)
    assert Translator.from_workdir(workdir, checkpoint="2").step == 2


# ------------------------------------------------------ 5. token ids outside the vocabulary
SRC_VOCAB, TGT_VOCAB = 10, 12


@pytest.fixture(scope="module")
def model_and_variables(random_init):
    from jaxattn.config import default_config
    from jaxattn.model.seq2seq import build_model

    c = default_config().model
    c.hidden = c.embed_dim = 8
    model = build_model(c, SRC_VOCAB, TGT_VOCAB, bos_id=1)
    src, tgt = jnp.ones((2, 3), jnp.int32), jnp.ones((2, 4), jnp.int32)
    return model, random_init(model, src, jnp.array([3, 2]), tgt)


@pytest.mark.parametrize(
    "side, value", [("src", -1), ("src", SRC_VOCAB), ("tgt", -1), ("tgt", TGT_VOCAB)]
)
def test_seq2seq_refuses_ids_outside_the_vocabulary(model_and_variables, side, value):
    model, variables = model_and_variables
    src, tgt, lengths = np.ones((2, 3), np.int32), np.ones((2, 4), np.int32), np.array([3, 2])
    (src if side == "src" else tgt)[1, 1] = value
    name = "src" if side == "src" else "targets"
    with pytest.raises(ValueError, match=f"{name} holds {value}, not one of the model's"):
        model.apply(variables, src, lengths, tgt)
    if side == "src":
        with pytest.raises(ValueError, match=f"src holds {value}"):
            model.apply(variables, src, lengths, method="encode")
    else:
        memory = model.apply(variables, np.ones((2, 3), np.int32), lengths, method="encode")
        state = model.apply(variables, memory, method="init_state")
        with pytest.raises(ValueError, match=f"prev_tokens holds {value}"):
            model.apply(variables, memory, state, tgt[:, 1], 0, method="decode_step")


def test_seq2seq_in_range_ids_and_jit_unchanged(model_and_variables):
    model, variables = model_and_variables
    src, tgt, lengths = jnp.ones((2, 3), jnp.int32), jnp.ones((2, 4), jnp.int32), jnp.array([3, 2])
    eager, _ = model.apply(
        variables, src.at[0, 0].set(SRC_VOCAB - 1), lengths, tgt.at[0, 0].set(TGT_VOCAB - 1)
    )
    assert eager.shape == (2, 4, TGT_VOCAB) and bool(jnp.isfinite(eager).all())
    # under jit the ids are tracers: no check, no error (documented in jaxattn.model.seq2seq)
    jitted = jax.jit(lambda s: model.apply(variables, s, lengths, tgt)[0])
    assert jitted(src.at[0, 0].set(-1)).shape == (2, 4, TGT_VOCAB)


# ---------------------------------------------------- 6. invisible format characters in text
@pytest.mark.parametrize("char", list(INVISIBLE))
def test_invisible_characters_never_split_a_word(char):
    text = f"Le{char}chat dort{char}.{char}"
    assert Tokenizer("word").tokenize(text) == ["Le" + "chat", "dort", "\uffed."]
    assert Tokenizer("space").tokenize(text) == ["Lechat", "dort."]
    assert Tokenizer("char").tokenize(f"a{char}b") == ["a", "b"]
    assert Tokenizer("space", normalize="tutorial").tokenize(f"I a{char}m ok.") == ["i", "am", "ok"]
    assert normalize_tutorial(f"ca{char}t") == "cat"


def test_invisible_characters_removed_the_same_everywhere():
    """preprocess is what training, evaluation references and translation all see: the
    characters are gone there, and detokenize(tokenize(t)) == preprocess(t) still holds."""
    text = "Er\u00adfolg \u200bist\u2060 gut\u200d,\ufeff ja\u200c!"
    for kind in ("word", "space", "char"):
        tok = Tokenizer(kind)
        assert not set(tok.preprocess(text)) & set(INVISIBLE)
        assert tok.detokenize(tok.tokenize(text)) == tok.preprocess(text) == "Erfolg ist gut, ja!"
    # visible format characters (an Arabic number sign) stay
    assert Tokenizer("space").preprocess("\u0600\u0661") == "\u0600\u0661"
