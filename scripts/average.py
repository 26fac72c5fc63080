"""Averages the parameters of a run's last N or best N checkpoints into its averaged one.

    python scripts/average.py --workdir runs/base --last 5
    python scripts/average.py --workdir runs/base --best 3     # by the run's train.best_metric
    python scripts/evaluate.py --workdir runs/base --checkpoint averaged

The average is written atomically to WORKDIR/averaged (replacing an earlier one); the training
checkpoints are untouched, and a resumed training continues from its own latest checkpoint.
Averaging holds the run's training lock (WORKDIR/.lock): it is refused while a training runs on
the workdir, and a training started meanwhile is refused until it has finished. --best ranks
by the validation metric the run ranks its checkpoints by (train.best_metric: BLEU unless set)
saved with the checkpoints (a BLEU-ranked run trained with config.eval.bleu=False has none: use
--last).
"""

from absl import app, flags

from jaxattn.errors import UsageError
from jaxattn.rundir.averaging import average_checkpoints
from jaxattn.rundir.layout import AVERAGED, averaged_dir
from jaxattn.tools import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "A training run's directory.")
_LAST = flags.DEFINE_integer("last", None, "Average the newest N checkpoints.")
_BEST = flags.DEFINE_integer(
    "best",
    None,
    "Average the N checkpoints with the best validation train.best_metric (BLEU by default).",
)
flags.mark_flag_as_required("workdir")


def run(argv):
    cli.no_arguments(argv)
    if (_LAST.value is None) == (_BEST.value is None):
        raise UsageError("Give one of --last N and --best N.")
    cli.check_positive("last", "best")
    meta = average_checkpoints(_WORKDIR.value, last=_LAST.value, best=_BEST.value)
    name = meta["metric"]
    steps = ", ".join(
        f"{s} ({name} {m[name]:.4g})" if name in m else f"{s} (no {name})"
        for s, m in meta["sources"].items()
    )
    print(
        f"averaged the {meta['method']} {meta['n']} checkpoints, steps {steps}, into "
        f"{averaged_dir(_WORKDIR.value)}; use --checkpoint {AVERAGED}."
    )


if __name__ == "__main__":
    app.run(cli.main(run), flags_parser=cli.parse_flags)
