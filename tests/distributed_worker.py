"""One process of a multi-process training test (tests/test_train.py starts these).

    python tests/distributed_worker.py PORT PROCESS_ID NUM_PROCESSES WORKDIR OUT.npz [k=v ...]

Joins jax.distributed on 127.0.0.1:PORT (PORT 0: no distributed runtime), trains
configs/synthetic.py with the `section.key=value` overrides, and saves this process's own
in-memory copy of the final parameters to OUT.npz.
"""

import ast
import sys

import jax
import numpy as np
from absl import flags
from shared import synthetic_config


def main():
    port, pid, nproc, workdir, out = sys.argv[1:6]
    if int(port):
        jax.distributed.initialize(
            coordinator_address=f"127.0.0.1:{port}", num_processes=int(nproc), process_id=int(pid)
        )
    flags.FLAGS.mark_as_parsed()
    from jaxattn.training.loop import train_and_evaluate

    overrides = dict(item.split("=", 1) for item in sys.argv[6:])
    config = synthetic_config({k: ast.literal_eval(v) for k, v in overrides.items()})
    config.train.progress_bar = False
    state, metrics = train_and_evaluate(config, workdir)
    leaves = {
        jax.tree_util.keystr(k): np.asarray(v.addressable_data(0))
        for k, v in jax.tree_util.tree_leaves_with_path(state.params)
    }
    np.savez(out, **leaves)
    print(
        f"process {pid} of {jax.process_count()} on {jax.device_count()} devices: "
        f"step {int(state.step)}, metrics {metrics}"
    )


if __name__ == "__main__":
    main()
