"""Fixtures shared by the test modules (tests never import each other)."""

import pytest


@pytest.fixture
def nan_loss_from():
    """A factory of train_step stand-ins that report a NaN loss from a given step on: a config
    cannot ask for one (config validation refuses NaN rates), a diverging run can."""
    import jax.numpy as jnp

    from jaxattn import train as train_lib

    real = train_lib.train_step

    def make(step: int):
        def train_step(state, batch, key, **kw):
            new, m = real(state, batch, key, **kw)
            return new, {**m, "loss": jnp.where(state.step >= step, jnp.nan, m["loss"])}

        return train_step

    return make
