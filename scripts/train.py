"""Trains a jaxattn model: python scripts/train.py --config configs/base.py --workdir runs/base

Config values can be overridden from the command line (`--config.model.hidden=256`). Rerunning
the same command resumes from the latest checkpoint in --workdir. For several hosts, start one
process per host with --distributed=explicit and --coordinator_address, --num_processes and
--process_id (or --distributed=auto on a cluster that JAX detects by itself).
"""

from absl import app, flags
from ml_collections import config_flags

from jaxattn import cli

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
_TIMEOUT = flags.DEFINE_integer("distributed_timeout", 300, "Seconds to wait for every process "
                                "to join the coordinator.")
flags.mark_flags_as_required(["config", "workdir"])


def run(argv):
    if len(argv) > 1:
        raise cli.UsageError(f"Unexpected arguments: {argv[1:]} (options are --name=value).")
    cli.init_distributed(_DISTRIBUTED.value, _COORD.value, _NPROC.value, _PID.value,
                         _TIMEOUT.value)
    from jaxattn.train import train_and_evaluate

    _, result = train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    if result:
        print("final validation: " + ", ".join(f"{k} {v:.4f}" for k, v in result.items()))


if __name__ == "__main__":
    app.run(cli.main(run), flags_parser=cli.parse_flags)
