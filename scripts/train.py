"""Trains a jaxattn model: python scripts/train.py --config configs/base.py --workdir runs/base

Config values can be overridden from the command line (`--config.model.hidden=256`). Rerunning
the same command resumes from the latest checkpoint in --workdir. For several hosts, start one
process per host with --coordinator_address, --num_processes and --process_id (or
--distributed=auto on a cluster that JAX detects by itself).
"""

import logging
import sys

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, vocabularies, "
                               "metrics and plots.")
_DISTRIBUTED = flags.DEFINE_enum("distributed", "off", ["off", "auto", "explicit"],
                                 "Multi-host: 'auto' lets jax.distributed detect the cluster; "
                                 "'explicit' uses the three flags below.")
_COORD = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NPROC = flags.DEFINE_integer("num_processes", None, "Number of processes (hosts).")
_PID = flags.DEFINE_integer("process_id", None, "This process's index.")
flags.mark_flags_as_required(["config", "workdir"])


def parse_flags(argv):
    """absl's parser, with a clear message (not a traceback) for an unknown --config key."""
    try:
        return app.parse_flags_with_usage(argv)
    except (AttributeError, KeyError) as e:
        msg = str(e).strip("'\"").replace("\\n", " ").replace("\\'", "'")
        print(f"FATAL Flags parsing error: unknown config key {msg}", file=sys.stderr)
        sys.exit(2)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    absl_logging.set_verbosity(absl_logging.WARNING)  # quiet library chatter (orbax, grain)
    logging.getLogger("jaxattn").setLevel(logging.INFO)
    import jax

    if _DISTRIBUTED.value == "auto" or _COORD.value:
        kwargs = {}
        if _COORD.value:
            kwargs = dict(coordinator_address=_COORD.value, num_processes=_NPROC.value,
                          process_id=_PID.value)
        jax.distributed.initialize(**kwargs)

    from jaxattn.checkpoints import CheckpointError
    from jaxattn.train import TrainingError, train_and_evaluate

    try:
        _, result = train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    except (TrainingError, CheckpointError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt as e:
        print(f"interrupted ({e}); rerun the same command to resume.", file=sys.stderr)
        sys.exit(130)
    if result:
        print("final validation: " + ", ".join(f"{k} {v:.4f}" for k, v in result.items()))


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
