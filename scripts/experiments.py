"""Runs the tutorial's questions as experiment groups and writes docs/experiments.md + plots.

    # the CPU budget (short runs; about 40 minutes on 2 busy cores):
    python scripts/experiments.py --data_path ../shared/data/eng-fra/eng-fra.txt --out docs
    # the tutorial's 80 epochs for every run (a GPU):
    python scripts/experiments.py --data_path ../shared/data/eng-fra/eng-fra.txt --budget full
    # some groups only; runs shared between groups (the baseline) are trained once:
    python scripts/experiments.py --data_path ... --only attention,scoring

Groups (--list): attention, scoring, teacher_forcing, lr, hidden, search. Each run trains in
WORKROOT/<config>-<budget>[-<steps>]/<overrides>; rerunning skips finished runs (and resumes
unfinished ones), and test scores are cached per checkpoint and decoding setting, so the same
command only rewrites the report. The report keeps any text outside its generated block.

This file holds the questions (`GROUPS`) and the loop over them (`run_experiments`); one run's
training and cached scoring is `jaxattn.tools.experiments`, the report
`jaxattn.tools.experiment_report`.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import logging
import os
import runpy
import shlex
import sys
import time
from collections.abc import Callable, Sequence

import ml_collections
from absl import logging as absl_logging

from jaxattn.tools import experiment_report as report
from jaxattn.tools import experiments as ex
from jaxattn.tools.experiments import GREEDY, Decoding, Group, make_variants

# The machine description lives with the benchmarks, in the repository (not the installed package).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import system  # noqa: E402

log = logging.getLogger("jaxattn.tools.experiments")  # with the library's: main() shows "jaxattn"

ADDITIVE = ("additive", {})
PLAIN = ("no attention (plain decoder)", {"model.decoder": "plain"})

GROUPS: dict[str, Group] = {
    g.name: g
    for g in (
        Group(
            "attention",
            "Attention vs no attention",
            "Does attention help? The tutorial's AttnDecoderRNN (Bahdanau additive attention) "
            "against its DecoderRNN, which sees only the encoder's last hidden state.",
            make_variants(ADDITIVE, PLAIN),
        ),
        Group(
            "scoring",
            "Attention scoring functions",
            "Which score(query, keys)? All with the Bahdanau decoder (previous hidden state as "
            "the query). dot/scaled dot: q.k (/sqrt(d)); general: q W k (Luong); location: "
            "softmax(Linear(q)) over positions, keys unused (10 outputs = the filter's maximum "
            "incl. EOS); local-m/local-p: Luong's windows of D = 5 around p_t = t (monotonic) or "
            "a predicted p_t, general score, Gaussian-weighted.",
            make_variants(
                ADDITIVE,
                ("dot", {"model.attention": "dot"}),
                ("scaled dot", {"model.attention": "scaled_dot"}),
                ("general", {"model.attention": "general"}),
                ("location", {"model.attention": "location"}),
                ("local-m", {"model.attention": "local_m"}),
                ("local-p", {"model.attention": "local_p"}),
            ),
        ),
        Group(
            "teacher_forcing",
            "Teacher forcing ratio",
            "The current tutorial always feeds the target (ratio 1.0); the older one used 0.5. "
            "Ratio r: each step feeds the reference token with probability r, else the model's "
            "own previous prediction.",
            make_variants(
                ("1.0", {"train.teacher_forcing_ratio": 1.0}),
                ("0.5", {"train.teacher_forcing_ratio": 0.5}),
                ("0.0", {"train.teacher_forcing_ratio": 0.0}),
            ),
            sweep="train.teacher_forcing_ratio",
            sweep_label="teacher forcing ratio",
        ),
        Group(
            "lr",
            "Learning rate (Adam)",
            "Adam's learning rate around the tutorial's 1e-3.",
            make_variants(
                ("3e-4", {"train.learning_rate": 3e-4}),
                ("1e-3", {"train.learning_rate": 1e-3}),
                ("3e-3", {"train.learning_rate": 3e-3}),
            ),
            sweep="train.learning_rate",
            sweep_label="learning rate",
            log_x=True,
        ),
        Group(
            "hidden",
            "Hidden size",
            "The tutorial's hidden_size sets both the embedding and the GRU size.",
            make_variants(
                ("64", {"model.hidden": 64, "model.embed_dim": 64}),
                ("128", {"model.hidden": 128, "model.embed_dim": 128}),
                ("256", {"model.hidden": 256, "model.embed_dim": 256}),
            ),
            sweep="model.hidden",
            sweep_label="hidden size (= embedding size)",
            log_x=True,
        ),
        Group(
            "search",
            "Greedy vs beam search",
            "The tutorial decodes greedily. Beam search on the same checkpoints (no extra "
            "training), length penalty alpha 0 (plain log-probability) and 1.",
            make_variants(ADDITIVE, PLAIN),
            decodings=(
                GREEDY,
                Decoding("beam 5", 5),
                Decoding("beam 5, alpha 1", 5, 1.0),
                Decoding("beam 10", 10),
            ),
            curves=False,
        ),
    )
}


def run_experiments(
    groups: Sequence[Group],
    *,
    base_config: ml_collections.ConfigDict,
    workroot: str,
    out_dir: str,
    budget: dict,
    budget_name: str = "cpu",
    extra: dict | None = None,
    config_path: str = "configs/base.py",
    command: str = "",
    train_fn: Callable | None = None,
    write_docs: bool = True,
) -> dict:
    """Trains and evaluates every run of `groups`, (re)writing OUT_DIR/experiments.md,
    OUT_DIR/experiments.json and the plots after each group, so a long grid reports as it
    goes. Returns {group name: group record}."""
    extra = dict(extra or {})
    base = ex.make_config(base_config, extra)
    root = os.path.join(workroot, ex.budget_tag(config_path, budget_name, budget, extra))
    t_start = time.time()
    unique = {ex.run_key(base, v) for g in groups for v in g.variants}
    log.info("%d group(s), %d distinct run(s) under %s", len(groups), len(unique), root)
    records: dict = {}
    for g in groups:
        rows = [ex.run_row(base, v, g, root, budget, train_fn) for v in g.variants]
        records[g.name] = {
            "title": g.title,
            "question": g.question,
            "rows": rows,
            "searches": [dataclasses.asdict(d) for d in g.decodings],
            "sweep": g.sweep,
            "sweep_label": g.sweep_label,
            "log_x": g.log_x,
            "curves": g.curves,
            "command": command,
            "budget": budget_name,
            "budget_overrides": budget,
            "extra_overrides": extra,
            "config": config_path,
            "machine": system.machine_summary(),
            "max_decode_len": int(base.eval.max_decode_len),
            "date": datetime.date.today().isoformat(),
        }
        if write_docs:
            report.write_outputs({g.name: records[g.name]}, out_dir, order=list(GROUPS))
        log.info("[%s] done (%.0f s since start)", g.name, time.time() - t_start)
    log.info("All done in %.0f s.", time.time() - t_start)
    return records


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", default="configs/base.py", help="Base config file.")
    p.add_argument("--data_path", default="", help="config.data.path (the eng-fra corpus).")
    p.add_argument("--out", default="docs", help="Folder for experiments.md/.json and plots.")
    p.add_argument(
        "--workroot",
        default="/tmp/jaxattn-experiments",
        help="Folder for the runs (checkpoints, metrics).",
    )
    p.add_argument(
        "--budget",
        choices=("cpu", "full"),
        default="cpu",
        help="cpu: --steps steps per run; full: the config's schedule (80 epochs).",
    )
    p.add_argument("--steps", type=int, default=1500, help="Steps per run for --budget cpu.")
    p.add_argument(
        "--eval_every",
        type=int,
        default=500,
        help="Validation (and checkpoint) interval for --budget cpu.",
    )
    p.add_argument("--only", default="", help="Comma-separated groups (default: all).")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="A config override for every run, e.g. model.dropout=0.2 (repeatable).",
    )
    p.add_argument("--no_docs", action="store_true", help="Train and score only.")
    p.add_argument("--list", action="store_true", help="List the groups and exit.")
    return p.parse_args(argv)


def select_groups(only: str) -> list[Group]:
    """--only: comma-separated group names (all when empty)."""
    names = [n.strip() for n in only.split(",") if n.strip()] or list(GROUPS)
    unknown = [n for n in names if n not in GROUPS]
    if unknown:
        raise SystemExit(
            f"error: unknown group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}."
        )
    return [GROUPS[n] for n in names]


def parse_sets(items) -> dict:
    """--set KEY=VALUE items as {dotted key: parsed value}."""
    out = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"error: --set wants KEY=VALUE, got {item!r}.")
        k, v = item.split("=", 1)
        out[k.strip()] = ex.parse_value(v.strip())
    return out


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.list:
        for g in GROUPS.values():
            print(f"{g.name:16s} {g.title}: " + ", ".join(v.name for v in g.variants))
        return {}
    groups = select_groups(args.only)
    extra = parse_sets(args.set)
    if args.data_path:
        extra["data.path"] = os.path.abspath(args.data_path)
    base = runpy.run_path(args.config)["get_config"]()
    try:
        ex.make_config(base, extra)
    except KeyError as e:
        raise SystemExit(f"error: {e.args[0]}") from None
    # full: the base config's own schedule (configs/base.py: 80 epochs)
    budget = ex.cpu_budget(args.steps, args.eval_every) if args.budget == "cpu" else {}
    absl_logging.set_verbosity(absl_logging.ERROR)  # orbax's read-only notices
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("jaxattn")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    command = "python scripts/experiments.py " + shlex.join(
        argv if argv is not None else sys.argv[1:]
    )
    return run_experiments(
        groups,
        base_config=base,
        workroot=args.workroot,
        out_dir=args.out,
        budget=budget,
        budget_name=args.budget,
        extra=extra,
        config_path=args.config,
        command=command,
        write_docs=not args.no_docs,
    )


if __name__ == "__main__":
    main()
