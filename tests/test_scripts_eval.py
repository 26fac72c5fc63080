"""scripts/evaluate.py, translate.py and compare.py end to end (subprocesses), bad input
included: clear 'error: ...' messages, exit statuses, never a traceback."""

import json
import os
import subprocess
import sys

import pytest
from shared import ROOT

pytestmark = pytest.mark.slow  # every test here trains a run or starts a script


@pytest.fixture(scope="module")
def run(tiny_run):
    return tiny_run.workdir


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    # one CPU device; compilations cached across the subprocesses
    cache = tmp_path_factory.getbasetemp() / "jax_cache"
    return dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        JAX_COMPILATION_CACHE_DIR=str(cache),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    )


def script(env, name, *args, stdin=None, code=0):
    """Runs scripts/<name>.py; checks the exit status and that no traceback was printed."""
    p = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", f"{name}.py"), *args],
        input=stdin,
        capture_output=True,
        env=env,
        timeout=300,
    )
    out, err = p.stdout.decode(), p.stderr.decode()
    assert p.returncode == code, f"exit {p.returncode}\nstdout:\n{out}\nstderr:\n{err}"
    assert "Traceback" not in out + err, err
    return out, err


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


SOURCES = ["3 1 4 1 5", "", "9 2 6", "5 3 5 8 9 7"]
REFS = ["5 1 4 1 3", "", "6 2 9", "7 9 8 5 3 5"]


def test_evaluate_files_end_to_end(run, env, tmp_path):
    src, ref = _write(tmp_path / "src.txt", SOURCES), _write(tmp_path / "ref.txt", REFS)
    hyp = tmp_path / "hyp.txt"
    out, err = script(
        env,
        "evaluate",
        f"--workdir={run}",
        f"--src={src}",
        f"--ref={ref}",
        f"--output={hyp}",
        "--beam_size=2",
    )
    assert "BLEU|nrefs:1|case:mixed|eff:no|tok:13a" in out and "chrF2|" in out
    assert "step 300 (beam 2" in out and "1 empty source line" in err
    hyps = hyp.read_text().split("\n")[:-1]
    assert len(hyps) == len(SOURCES) and hyps[1] == ""  # aligned; empty line -> empty line
    result = json.loads((tmp_path / "hyp.txt.json").read_text())
    for key in ("bleu", "chrf", "bleu_signature", "chrf_signature", "sentences_per_sec"):
        assert key in result
    assert result["step"] == 300 and result["beam_size"] == 2
    assert result["sentences"] == 4 and result["empty_inputs"] == 1


def test_validation_bleu_is_evaluate_bleu(tiny_run, env, tmp_path):
    """The validation BLEU training recorded for a checkpoint is, exactly, scripts/evaluate.py's
    and Translator.evaluate's on that split (greedy, max_len eval.max_decode_len): one
    prediction path (jaxattn.inference.predict)."""
    from jaxattn.inference.eval_input import load_split
    from jaxattn.inference.translator import Translator
    from jaxattn.metrics import read_metrics

    run, ec = tiny_run.workdir, tiny_run.config.eval
    [recorded] = [m for m in read_metrics(run) if m["split"] == "valid" and m["step"] == 300]
    script(
        env,
        "evaluate",
        f"--workdir={run}",
        "--checkpoint=300",
        f"--split={ec.split}",
        f"--max_len={ec.max_decode_len}",
        "--beam_size=1",
        f"--json={tmp_path / 'r.json'}",
    )
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["method"] == "greedy" and result["sentences"] == 100
    assert result["bleu"] == recorded["bleu"] and result["chrf"] == recorded["chrf"]
    tr = Translator.from_workdir(run, 300)
    sources, references = load_split(tr.config, run, ec.split)
    evaluated = tr.evaluate(sources, references, max_len=ec.max_decode_len)
    assert evaluated["bleu"] == recorded["bleu"] and evaluated["chrf"] == recorded["chrf"]


def test_evaluate_split_and_tsv(run, env, tmp_path):
    out, _ = script(
        env, "evaluate", f"--workdir={run}", "--checkpoint=best", f"--json={tmp_path / 'r.json'}"
    )
    assert "on test split: 100 sentences" in out
    assert json.loads((tmp_path / "r.json").read_text())["bleu"] > 80
    tsv = tmp_path / "pairs.tsv"
    tsv.write_bytes(b"1 2 3\t3 2 1\n\xff\t\xfe\nno tab\n4 5 6 7\t7 6 5 4\n")
    out, err = script(env, "evaluate", f"--workdir={run}", f"--tsv={tsv}")
    assert "2 sentences" in out and "BLEU|" in out
    assert "4 lines, 2 pairs kept, skipped 1 undecodable, 1 no tab" in err
    assert "line 2" in err


def test_translate_stdin_args_and_attention_png(run, env, tmp_path):
    out, _ = script(env, "translate", f"--workdir={run}", stdin=b"1 2 3\n\n4 5 6 7\n")
    assert out.split("\n") == ["3 2 1", "", "7 6 5 4", ""]
    png = tmp_path / "att.png"
    out, err = script(
        env,
        "translate",
        f"--workdir={run}",
        "--beam_size=2",
        f"--attention_png={png}",
        "1 2 3",
        "8 9 10 11",
        "1 zz 2",
    )
    assert out.split("\n")[:2] == ["3 2 1", "11 10 9 8"]
    assert "unknown word" in err and "'zz'" in err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_translate_non_utf8_lines(run, env):
    out, err = script(env, "translate", f"--workdir={run}", stdin=b"1 2 3\n\xe9\xff\n4 5\n", code=1)
    assert out.split("\n") == ["3 2 1", "", "5 4", ""]  # alignment kept
    assert "error: stdin: 1 line(s) are not valid UTF-8 (line 2)" in err


def test_translate_n_best_sampling_and_ensemble(run, env):
    out, _ = script(
        env, "translate", f"--workdir={run}", "--beam_size=3", "--n_best=3", "1 2 3", "", "4 5 6 7"
    )
    rows = [line.split("\t") for line in out.split("\n")[:-1]]
    assert [r[:2] for r in rows] == [
        ["0", "1"],
        ["0", "2"],
        ["0", "3"],
        ["1", "1"],
        ["2", "1"],
        ["2", "2"],
        ["2", "3"],
    ]
    assert rows[0][3] == "3 2 1" and rows[3][2:] == ["0.0000", ""] and rows[4][3] == "7 6 5 4"
    scores = [float(r[2]) for r in rows[:3]]
    assert scores == sorted(scores, reverse=True) and len({r[3] for r in rows[:3]}) == 3
    # two runs (the same twice: an ensemble equal to the run), sampling among the top 1 token
    out, _ = script(
        env,
        "translate",
        f"--workdir={run},{run}",
        "--checkpoint=300,best",
        "--method=sample",
        "--top_k=1",
        "--n_best=2",
        "--seed=7",
        "1 2 3",
    )
    assert [line.split("\t")[3] for line in out.split("\n")[:-1]] == ["3 2 1", "3 2 1"]


def test_evaluate_ensemble_options_and_score(run, env, tmp_path):
    src, ref = _write(tmp_path / "src.txt", SOURCES), _write(tmp_path / "ref.txt", REFS)
    out, _ = script(
        env,
        "evaluate",
        f"--workdir={run},{run}",
        f"--src={src}",
        f"--ref={ref}",
        "--beam_size=3",
        "--beta=0.2",
        "--replace_unk",
        f"--json={tmp_path / 'r.json'}",
    )
    assert f"ensemble of {run} step 300 + {run} step 300 (beam 3, alpha 0, beta 0.2)" in out
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["bleu"] > 80 and result["beta"] == 0.2 and result["replace_unk"]
    assert result["ensemble"] == [dict(workdir=run, step=300)] * 2
    out, err = script(
        env,
        "evaluate",
        f"--workdir={run}",
        f"--src={src}",
        f"--ref={ref}",
        "--score",
        "--per_token",
    )
    rows = [line.split("\t") for line in out.split("\n")[:-1]]
    assert len(rows) == 4 and all(len(r) == 3 for r in rows)
    assert rows[0][1] == "5 1 4 1 3 </s>" and rows[1][1] == "</s>"
    for total, _, tokens in rows:
        assert float(total) == pytest.approx(sum(map(float, tokens.split())), abs=1e-3)
    assert -1 < float(rows[0][0]) < 0 and "4 references, log-probability" in err


def test_compare_table(run, env, tmp_path):
    png = tmp_path / "minutes.png"
    out, err = script(env, "compare", run, f"{run}@150", "--nowarmup", f"--curves_png={png}")
    assert png.stat().st_size > 5000 and f"wrote {png}" in err
    lines = out.strip().split("\n")
    assert [c.strip() for c in lines[0].split("|")[1:-1]] == [
        "name",
        "model",
        "params",
        "step",
        "BLEU",
        "chrF",
        "sentences/s",
    ]
    assert lines[1].startswith("|---") and len([x for x in lines if x.startswith("| ")]) == 3
    assert " 300 |" in lines[2] and " 150 |" in lines[3] and "@150" in lines[3]
    assert "test, 100 sentences, greedy; BLEU|nrefs:1" in out


@pytest.mark.parametrize(
    "args,code,message",
    [
        (["--workdir={tmp}/missing"], 1, "No such directory"),
        (["--workdir={tmp}"], 1, "holds no training run (no config.json)"),
        (["--workdir={run}", "--checkpoint=12345"], 1, "No checkpoint at step 12345; available"),
        (
            ["--workdir={run}", "--src={tmp}/latin1.txt", "--ref={tmp}/latin1.txt"],
            1,
            "not valid UTF-8 (line 2)",
        ),
        (
            ["--workdir={run}", "--src={tmp}/missing.txt", "--ref={tmp}/missing.txt"],
            1,
            "No such file",
        ),
        (["--workdir={run}", "--split=dev"], 2, "No 'dev' split"),
        (["--workdir={run}", "--src={tmp}/latin1.txt"], 2, "--src needs --ref"),
        (["--workdir={run}", "--beam_size=0"], 2, "--beam_size must be >= 1"),
        (["--workdir={run}", "--no_such_flag"], 2, "Unknown command line flag"),
        (["--workdir={run}", "--method=sample", "--beam_size=3"], 2, "beam_size=3 is for"),
        (["--workdir={run}", "--beam_size=2", "--n_best=3"], 2, "n_best=3 > beam_size=2"),
        (["--workdir={run}", "--method=sample", "--top_p=0"], 2, "top_p must be in (0, 1]"),
        (["--workdir={run}", "--temperature=0.5"], 2, "temperature=0.5 is for method='sample'"),
        (["--workdir={run}", "--method=beam", "--beam_size=2", "--beta=-1"], 2, "beta (the "),
        (
            ["--workdir={run}", "--replace_unk", "--unk_dictionary={tmp}/missing.tsv"],
            1,
            "Cannot read the unknown-word dictionary",
        ),
        (
            ["--workdir={run},{run}", "--checkpoint=best,300,150"],
            2,
            "gives 3 checkpoints for 2 workdirs",
        ),
        (["--workdir={run}", "--score", "--beam_size=2"], 2, "--beam_size: no search runs"),
        (["--workdir={run}", "--per_token"], 2, "--per_token goes with --score"),
        ([], 2, "--workdir"),
    ],
)
def test_evaluate_bad_input(run, env, tmp_path, args, code, message):
    (tmp_path / "latin1.txt").write_bytes("il est grand\nil est l\u00e0\n".encode("latin-1"))
    args = [a.format(run=run, tmp=tmp_path) for a in args]
    out, err = script(env, "evaluate", *args, code=code)
    assert err.startswith("error: ") and message in err, err


def test_translate_and_compare_bad_input(run, env, tmp_path):
    _, err = script(env, "translate", f"--workdir={tmp_path}", "1 2", code=1)
    assert "error: " in err and "no config.json" in err
    _, err = script(env, "compare", run, f"{run}@99", code=1)
    assert "No checkpoint at step 99" in err
    _, err = script(env, "compare", code=2)
    assert "error: Give the runs to compare" in err
    _, err = script(env, "translate", f"--workdir={run}", "--n_best=2", "--verbose", "1", code=2)
    assert "error: Give one of --n_best (its own format) and --verbose" in err
