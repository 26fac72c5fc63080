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
"""

from __future__ import annotations

import argparse
import logging
import os
import runpy
import shlex
import sys

from jaxattn import experiments as ex


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/base.py", help="Base config file.")
    p.add_argument("--data_path", default="", help="config.data.path (the eng-fra corpus).")
    p.add_argument("--out", default="docs", help="Folder for experiments.md/.json and plots.")
    p.add_argument("--workroot", default="/tmp/jaxattn-experiments",
                   help="Folder for the runs (checkpoints, metrics).")
    p.add_argument("--budget", choices=("cpu", "full"), default="cpu",
                   help="cpu: --steps steps per run; full: the config's schedule (80 epochs).")
    p.add_argument("--steps", type=int, default=1500, help="Steps per run for --budget cpu.")
    p.add_argument("--eval_every", type=int, default=500,
                   help="Validation (and checkpoint) interval for --budget cpu.")
    p.add_argument("--only", default="", help="Comma-separated groups (default: all).")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="A config override for every run, e.g. model.dropout=0.2 (repeatable).")
    p.add_argument("--no_docs", action="store_true", help="Train and score only.")
    p.add_argument("--list", action="store_true", help="List the groups and exit.")
    return p.parse_args(argv)


def select_groups(only: str) -> list[ex.Group]:
    names = [n.strip() for n in only.split(",") if n.strip()] or list(ex.GROUPS)
    unknown = [n for n in names if n not in ex.GROUPS]
    if unknown:
        raise SystemExit(f"error: unknown group(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(ex.GROUPS)}.")
    return [ex.GROUPS[n] for n in names]


def parse_sets(items) -> dict:
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
        for g in ex.GROUPS.values():
            print(f"{g.name:16s} {g.title}: " + ", ".join(r.name for r in g.runs))
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
    budget = (ex.cpu_budget(args.steps, args.eval_every) if args.budget == "cpu"
              else dict(ex.FULL_BUDGET))

    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)  # orbax's read-only notices
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("jaxattn")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    command = "python scripts/experiments.py " + shlex.join(
        argv if argv is not None else sys.argv[1:])
    return ex.run_experiments(groups, base_config=base, workroot=args.workroot,
                              out_dir=args.out, budget=budget, budget_name=args.budget,
                              extra=extra, config_path=args.config, command=command,
                              write_docs=not args.no_docs)


if __name__ == "__main__":
    main()
