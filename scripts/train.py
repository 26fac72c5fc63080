"""Trains a jaxattn model: python scripts/train.py --config configs/base.py --workdir runs/base

Config values can be overridden from the command line (`--config.model.hidden=256`). Rerunning
the same command resumes from the latest checkpoint in --workdir. For several hosts, start one
process per host with --distributed=explicit and --coordinator_address, --num_processes and
--process_id (or --distributed=auto on a cluster that JAX detects by itself).
"""

from absl import app, flags

from jaxattn.tools import cli

_CONFIG = cli.define_config_flag("config", "Config file (configs/*.py).")
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Directory for checkpoints, vocabularies, metrics and plots."
)
cli.define_distributed_flags()
flags.mark_flags_as_required(["workdir"])
for _name in (
    "config",
    "distributed",
    "coordinator_address",
    "num_processes",
    "process_id",
    "distributed_timeout",
):  # defined in jaxattn.tools.cli: listed by --help here
    flags.declare_key_flag(_name)


def run(argv):
    cli.no_arguments(argv)
    cli.init_distributed_from_flags()
    from jaxattn.training.loop import train_and_evaluate  # after jax.distributed is set up

    _, result = train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    if result:
        print("final validation: " + ", ".join(f"{k} {v:.4f}" for k, v in result.items()))


if __name__ == "__main__":
    app.run(cli.main(run), flags_parser=cli.parse_flags)
