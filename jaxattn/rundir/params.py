"""Model parameters out of one Orbax item of a checkpoint (a training step's `state`, or the
averaged checkpoint's `params`), with the check that they fit the model written once: a
parameter of another name or shape is a CheckpointError naming it, and the vocabulary file
that sizes it (`layout.VOCAB_PARAMS`). The optimizer state is never read.

The shared reader of `run.Checkpoints.read_params` (any checkpoint) and of
`Checkpointer` (a resume with a fresh optimizer state).
"""

from __future__ import annotations

import os

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxattn.errors import CheckpointError
from jaxattn.rundir.layout import AVERAGED, CONFIG_FILE, EMA, VOCAB_PARAMS, Checkpoint


def shapes(tree) -> dict[str, tuple]:
    """{'a/b/c': shape} for a nested dict of arrays (or of Orbax array metadata)."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        out["/".join(str(getattr(k, "key", k)) for k in path)] = tuple(leaf.shape)
    return out


def saved_tree(item_dir: str) -> dict:
    """The tree of jax.ShapeDtypeStruct an Orbax PyTree item directory holds."""
    metadata = ocp.PyTreeCheckpointer().metadata(item_dir)
    tree = getattr(getattr(metadata, "item_metadata", metadata), "tree", metadata)
    return jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), tree)


def _at(checkpoint: Checkpoint) -> str:
    return f"'{checkpoint}'" if checkpoint in (AVERAGED, EMA) else f"at step {checkpoint}"


def shape_message(workdir: str, checkpoint: Checkpoint, name: str, saved, now: tuple) -> str:
    """Why parameter `name` has shape `saved` in the checkpoint but `now` in the model."""
    vocab = next((f for prefix, f in VOCAB_PARAMS.items() if name.startswith(prefix)), None)
    why = (
        f"{os.path.join(workdir, vocab)} has changed since the checkpoint was saved "
        "(restore the original file, or use a new --workdir)"
        if vocab
        else f"the model config differs from the run's {CONFIG_FILE}"
    )
    return (
        f"Parameter {name} has shape {saved} in the checkpoint {_at(checkpoint)} but {now} in "
        f"this model: {why}."
    )


def check_shapes(saved: dict, want: dict, *, workdir: str, checkpoint: Checkpoint, where: str):
    """CheckpointError unless the `saved` {name: shape} are the model's `want` ones: other
    names (another model), or another shape (a changed vocabulary file or config).
    `where`: the checkpoint's folder, for the message."""
    if saved.keys() != want.keys():
        extra, missing = sorted(saved.keys() - want.keys()), sorted(want.keys() - saved.keys())
        raise CheckpointError(
            f"The checkpoint {_at(checkpoint)} in {where} holds another model (only in the "
            f"checkpoint: {extra[:4]}; only in this config: {missing[:4]}). Use this run's "
            f"{CONFIG_FILE} (--config.model.* as saved) or a new --workdir."
        )
    for name, shape in want.items():
        if saved[name] != shape:
            raise CheckpointError(shape_message(workdir, checkpoint, name, saved[name], shape))


def check(item_dir: str, abstract_params, *, key: str | None, workdir: str, checkpoint) -> None:
    """`check_shapes` of the parameters saved in the Orbax item `item_dir` (under `key` of its
    tree, or the whole tree) against `abstract_params`; nothing if its metadata is unreadable
    (then reading the data decides)."""
    try:
        tree = saved_tree(item_dir)
    except Exception:  # noqa: BLE001 - unreadable metadata: treated as corrupt data
        return
    _check(shapes(tree[key] if key else tree), abstract_params, item_dir, workdir, checkpoint)


def _check(saved: dict, abstract_params, item_dir: str, workdir: str, checkpoint) -> None:
    where = os.path.dirname(os.path.dirname(item_dir))  # checkpoints/ or averaged/
    want = shapes(abstract_params)
    check_shapes(saved, want, workdir=workdir, checkpoint=checkpoint, where=where)


def read(item_dir: str, abstract_params, *, key: str | None, workdir: str, checkpoint) -> dict:
    """The parameters in the Orbax item `item_dir` (under `key` of its tree, or the whole
    tree) as numpy arrays shaped like `abstract_params`, checked (`check`) before and after
    the read; `checkpoint` and `workdir` name them in the messages."""
    check(item_dir, abstract_params, key=key, workdir=workdir, checkpoint=checkpoint)
    restore_args = jax.tree.map(
        lambda _: ocp.ArrayRestoreArgs(restore_type=np.ndarray), abstract_params
    )
    if key:
        item, restore_args = {key: abstract_params}, {key: restore_args}
    else:
        item = abstract_params
    with ocp.PyTreeCheckpointer() as reader:
        got = reader.restore(
            item_dir,
            args=ocp.args.PyTreeRestore(item=item, restore_args=restore_args, partial_restore=True),
        )
    got = got[key] if key else got
    _check(shapes(got), abstract_params, item_dir, workdir, checkpoint)
    return got
