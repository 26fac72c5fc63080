"""Recurrent cells and a scanned, length-aware RNN layer.

The cells keep PyTorch's layout (GRU gates [r, z, n], LSTM gates [i, f, g, o], separate input
and hidden biases) so that PyTorch weights load 1:1, and they split the input projection
from the recurrence: `project_inputs` runs on a whole sequence as one matmul outside the time
loop, and `step` does only the hidden-to-hidden work inside it.

A carry is always a tuple: `(h,)` for a GRU, `(h, c)` for an LSTM, each `[batch, hidden]`.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

Carry = tuple


class GRUCell(nn.Module):
    """GRU as in torch.nn.GRU: n = tanh(W_in x + b_in + r * (W_hn h + b_hn))."""

    features: int
    dtype: jnp.dtype | None = None

    def setup(self):
        self.input_proj = nn.Dense(3 * self.features, dtype=self.dtype)  # W_ih^T, b_ih
        self.hidden_proj = nn.Dense(  # W_hh^T, b_hh
            3 * self.features, dtype=self.dtype, kernel_init=nn.initializers.orthogonal()
        )

    def initial_carry(self, batch_size: int) -> Carry:
        return (jnp.zeros((batch_size, self.features), jnp.float32),)

    def project_inputs(self, x):  # [..., in] -> [..., 3H]
        return self.input_proj(x)

    def step(self, carry: Carry, xp) -> Carry:  # xp: [B, 3H] projected input
        (h,) = carry
        hp = self.hidden_proj(h)  # [B, 3H]
        xr, xz, xn = jnp.split(xp, 3, axis=-1)
        hr, hz, hn = jnp.split(hp, 3, axis=-1)
        r = jax.nn.sigmoid(xr + hr)
        z = jax.nn.sigmoid(xz + hz)
        n = jnp.tanh(xn + r * hn)
        new_h = (1.0 - z) * n + z * h
        return (new_h.astype(h.dtype),)

    def __call__(self, carry: Carry, x) -> tuple[Carry, jax.Array]:
        carry = self.step(carry, self.project_inputs(x))
        return carry, carry[0]


class LSTMCell(nn.Module):
    """LSTM as in torch.nn.LSTM: gates [i, f, g, o], c' = f c + i g, h' = o tanh(c')."""

    features: int
    dtype: jnp.dtype | None = None

    def setup(self):
        self.input_proj = nn.Dense(4 * self.features, dtype=self.dtype)
        self.hidden_proj = nn.Dense(
            4 * self.features, dtype=self.dtype, kernel_init=nn.initializers.orthogonal()
        )

    def initial_carry(self, batch_size: int) -> Carry:
        zeros = jnp.zeros((batch_size, self.features), jnp.float32)
        return (zeros, zeros)

    def project_inputs(self, x):  # [..., in] -> [..., 4H]
        return self.input_proj(x)

    def step(self, carry: Carry, xp) -> Carry:  # xp: [B, 4H]
        h, c = carry
        gates = xp + self.hidden_proj(h)
        i, f, g, o = jnp.split(gates, 4, axis=-1)
        new_c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        new_h = jax.nn.sigmoid(o) * jnp.tanh(new_c)
        return (new_h.astype(h.dtype), new_c.astype(c.dtype))

    def __call__(self, carry: Carry, x) -> tuple[Carry, jax.Array]:
        carry = self.step(carry, self.project_inputs(x))
        return carry, carry[0]


CELLS = {"gru": GRUCell, "lstm": LSTMCell}


def compute_dtype(c):
    """Model config c's `dtype` as the modules' `dtype` field: None for float32 (the default)."""
    return jnp.dtype(c.dtype) if c.dtype != "float32" else None


def make_cell(cell: str, features: int, dtype=None, name: str | None = None) -> nn.Module:
    """Returns a GRUCell or LSTMCell by name."""
    if cell not in CELLS:
        raise ValueError(f"Unknown RNN cell {cell!r}; choose one of {sorted(CELLS)}.")
    return CELLS[cell](features, dtype=dtype, name=name)


def valid_mask(lengths, max_len: int):
    """Padding mask from lengths.

    Args:
        lengths: [B] int.
        max_len: T, the padded length.

    Returns:
        [B, T] bool, True on the first `lengths[b]` positions.
    """
    return jnp.arange(max_len)[None, :] < lengths[:, None]


def reverse_padded(x, lengths):
    """Reverses each sequence of x [B, T, ...] within its own length; padding stays in place."""
    t = jnp.arange(x.shape[1])[None, :]  # [1, T]
    idx = jnp.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)  # [B, T]
    idx = idx.reshape(idx.shape + (1,) * (x.ndim - 2))
    return jnp.take_along_axis(x, idx, axis=1)


class RNN(nn.Module):
    """One recurrent layer over [batch, time, features], scanned with `nn.scan`.

    With `lengths`, steps past a sequence's end leave its carry unchanged (so the final carry is
    the state at the last real token) and give zero outputs; `reverse=True` reads each sequence
    backwards within its own length, so padding is never read by either direction.
    """

    cell: str
    features: int
    reverse: bool = False
    unroll: int = 1
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, inputs, lengths=None, initial_carry: Carry | None = None):
        """Runs the layer over a batch.

        Args:
            inputs: [B, T, D].
            lengths: [B] int, or None (all T steps valid).
            initial_carry: A carry (`(h,)` or `(h, c)`, [B, features] each); None = zeros.

        Returns:
            (outputs [B, T, features], zero past each length; the final carry).
        """
        batch, steps = inputs.shape[:2]
        if lengths is None:
            lengths = jnp.full((batch,), steps, jnp.int32)
        cell = make_cell(self.cell, self.features, self.dtype, name="cell")
        if self.reverse:
            inputs = reverse_padded(inputs, lengths)
        xp = cell.project_inputs(inputs)  # [B, T, G*H], one matmul for all steps
        valid = valid_mask(lengths, steps)  # [B, T]
        carry = cell.initial_carry(batch) if initial_carry is None else initial_carry

        def body(cell, carry, xs):
            xp_t, valid_t = xs  # [B, G*H], [B]
            new = cell.step(carry, xp_t)
            keep = valid_t[:, None]
            new = tuple(jnp.where(keep, n, o) for n, o in zip(new, carry, strict=True))
            return new, jnp.where(keep, new[0], 0.0)

        scan = nn.scan(
            body,
            variable_broadcast="params",
            split_rngs={"params": False},
            in_axes=1,
            out_axes=1,
            unroll=self.unroll,
        )
        carry, outputs = scan(cell, carry, (xp, valid))  # outputs [B, T, H]
        if self.reverse:
            outputs = reverse_padded(outputs, lengths)
        return outputs, carry
