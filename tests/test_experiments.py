"""The experiment runner (scripts/experiments.py over jaxattn.tools.experiments and
jaxattn.tools.experiment_report) on tiny synthetic runs: tables and plots are written, their numbers
parse, and a rerun trains and decodes nothing."""

import json
import os
import re
import runpy

import pytest
from shared import ROOT, synthetic_config

from jaxattn.inference import translator as inference
from jaxattn.tools import experiment_report as report
from jaxattn.tools import experiments as ex

SCRIPT = os.path.join(ROOT, "scripts", "experiments.py")
RUNNER = runpy.run_path(SCRIPT)  # the script's functions (its main() is not called)

# tiny runs: 2 groups x 2 runs, 2 distinct (the search group reuses the sweep's runs)
TINY = {"model.hidden": 16, "model.embed_dim": 16, "data.synthetic_sizes": (600, 40, 40)}
RUNS = ex.make_variants(
    ("3e-3", {"train.learning_rate": 3e-3}), ("1e-2", {"train.learning_rate": 1e-2})
)
GROUPS = [
    ex.Group(
        "rates",
        "Learning rates",
        "Tiny question one.",
        RUNS,
        sweep="train.learning_rate",
        sweep_label="learning rate",
        log_x=True,
    ),
    ex.Group(
        "decoding",
        "Greedy or beam",
        "Tiny question two.",
        RUNS,
        decodings=(ex.GREEDY, ex.Decoding("beam 3", 3)),
        curves=False,
    ),
]


def _base():
    return synthetic_config()


def _run(tmp_path, **kw):
    return RUNNER["run_experiments"](
        GROUPS,
        base_config=_base(),
        workroot=str(tmp_path / "runs"),
        out_dir=str(tmp_path / "docs"),
        budget=ex.cpu_budget(20, 20, 5),
        extra=TINY,
        config_path="configs/synthetic.py",
        command="python scripts/experiments.py --tiny",
        **kw,
    )


def _table_rows(md: str, title: str) -> list[list[str]]:
    section = md.split(f"### {title}", 1)[1].split("###", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    return [[c.strip() for c in r.strip("|").split("|")] for r in rows[1:]]  # no header


@pytest.mark.slow
def test_runner_writes_tables_and_plots_and_reruns_nothing(tmp_path, monkeypatch):
    records = _run(tmp_path)
    docs = tmp_path / "docs"
    md = (docs / "experiments.md").read_text()
    assert report.BEGIN in md and report.END in md
    assert "python scripts/experiments.py --tiny" in md
    assert "nrefs:1|case:mixed|eff:no|tok:13a" in md

    # the standard table: one row per run, numbers in every numeric column
    rows = _table_rows(md, "Learning rates")
    assert [r[0] for r in rows] == ["3e-3", "1e-2"]
    for r in rows:
        bleu_best, chrf_best, bleu_last, chrf_last = (float(c.split(" ± ")[0]) for c in r[2:6])
        assert re.fullmatch(r"[\d.]+ ± [\d.]+", r[2])  # BLEU with its confidence interval
        assert 0 <= bleu_best <= 100 and 0 <= chrf_best <= 100
        assert 0 <= bleu_last <= 100 and 0 <= chrf_last <= 100
        assert re.fullmatch(r"[\d.]+ \(\d+\)", r[6])  # best valid BLEU (step)
        float(r[7])
        assert int(r[8]) == 20
    assert rows[0][1] == "(base config)"  # synthetic.py's own learning rate: the shared run

    # the search table: greedy and beam 3 per run
    rows = _table_rows(md, "Greedy or beam")
    assert {(r[0], r[2]) for r in rows} >= {
        ("3e-3", "greedy"),
        ("3e-3", "beam 3"),
        ("1e-2", "greedy"),
        ("1e-2", "beam 3"),
    }
    for r in rows:
        float(r[3].split(" ± ")[0]), float(r[4])

    for png in ("exp_rates_curves.png", "exp_rates_bleu.png"):
        assert (docs / png).read_bytes()[:4] == b"\x89PNG", png
    assert not (docs / "exp_decoding_curves.png").exists()
    summary = json.loads((docs / "experiments.json").read_text())
    assert set(summary) == {"rates", "decoding"}
    workdirs = {row["workdir"] for g in records.values() for row in g["rows"]}
    assert len(workdirs) == 2  # each run is trained once for both groups

    # a rerun neither trains nor decodes, and gives the same numbers; text outside the
    # generated block is kept
    (docs / "experiments.md").write_text("# Mine\n\nnotes above\n" + md + "\nnotes below\n")

    def fail(*a, **k):
        raise AssertionError("should not run")

    monkeypatch.setattr(inference.Translator, "from_workdir", fail)
    again = _run(tmp_path, train_fn=fail)
    for name in records:
        for a, b in zip(records[name]["rows"], again[name]["rows"], strict=True):
            assert a["test"] == b["test"] and a["steps"] == b["steps"] == 20
            assert a["train_seconds"] == b["train_seconds"]
    new_md = (docs / "experiments.md").read_text()
    assert new_md.startswith("# Mine\n\nnotes above\n") and new_md.endswith("notes below\n")
    assert new_md.count(report.BEGIN) == 1


def test_finished_means_final_step_on_disk(tmp_path):
    wd = tmp_path / "run"
    wd.mkdir()
    (wd / ex.RESULT_FILE).write_text(json.dumps({"finished_step": 100}))
    assert not ex.is_finished(str(wd))  # recorded, but no checkpoint: train (resume) again


def test_failed_run_is_reported_not_fatal(tmp_path):
    def boom(config, workdir):
        raise ValueError("loss became nan")

    rec = ex.train_run(_base(), str(tmp_path / "w"), train_fn=boom)
    assert "loss became nan" in rec["error"] and "finished_step" not in rec


@pytest.mark.parametrize("message", ["", "  \n ", "first\nsecond"])
def test_failed_run_with_an_empty_message_is_reported_too(tmp_path, message):
    """An exception with an empty (or blank) message is recorded by its type: the grid goes
    on (reading the first line of '' raised IndexError, which stopped the grid)."""

    def boom(config, workdir):
        raise RuntimeError(message)

    rec = ex.train_run(_base(), str(tmp_path / "w"), train_fn=boom)
    want = "RuntimeError: first" if message.startswith("first") else "RuntimeError: "
    assert rec["error"] == want and "finished_step" not in rec
    assert json.loads((tmp_path / "w" / ex.RESULT_FILE).read_text())["error"] == want


def test_run_keys_share_equal_runs():
    base = _base()
    same = ex.Variant("x", (("train.learning_rate", base.train.learning_rate),))
    assert ex.run_key(base, same) == ex.run_key(base, ex.Variant("y")) == "base"
    assert ex.run_key(base, ex.Variant("z", (("model.hidden", 32),))) == "hidden=32"
    with pytest.raises(KeyError):
        ex.make_config(base, {"model.nope": 1})


def test_cli_lists_and_rejects_unknown_groups(capsys):
    RUNNER["main"](["--list"])
    out = capsys.readouterr().out
    for name in ("attention", "scoring", "teacher_forcing", "lr", "hidden", "search"):
        assert name in out
    with pytest.raises(SystemExit, match="unknown group"):
        RUNNER["main"](["--only", "attention,nope"])
    assert RUNNER["parse_sets"](["model.hidden=32", "train.learning_rate=3e-4"]) == {
        "model.hidden": 32,
        "train.learning_rate": 3e-4,
    }
