"""Luong et al. (2015, section 3.2) local attention: a scoring function over a window.

A member of the attention family (`jaxattn.model.attention` is its front door and registry, names
'local_m' and 'local_p'). It reuses a scoring attention from `jaxattn.model.attention_core` as its
`align`
submodule and the shared call of `scoring.Attention`; only the window and the Gaussian are
written here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxattn.model.attention_core import (
    AdditiveAttention,
    Array,
    Attention,
    AutoDense,
    DotAttention,
    Dtype,
    GeneralAttention,
    ScaledDotAttention,
    dense_kwargs,
    masked_softmax,
)


class LocalAttention(Attention):
    """Luong local attention, monotonic (local-m) or predictive (local-p).

    Aligned position p_t: local-m uses the decoder step (p_t = t, pass `step`); local-p
    predicts p_t = L * sigmoid(v_p^T tanh(W_p q)), L = source length (from the mask, else S).
    The base score (`score`: 'general', 'dot', 'scaled_dot' or 'additive') is softmaxed over
    the window [p_t - D, p_t + D] (intersected with the mask) and then multiplied by a Gaussian
    exp(-(s - p_t)^2 / (2 (D/2)^2)) centred on p_t. As in Luong et al. the weights therefore
    sum to at most 1 (not exactly 1). A window with no valid position (e.g. local-m past the
    end of the source) gives zero weights and a zero context, never NaN.

    Scores are computed for all positions and masked (cheap for sentence-length inputs).
    Fields: window D; hidden = width of W_p (None: the query size) and of the additive score
    (required there); query_dim and use_bias go to the base score (use_bias None: its default).
    Parameters: `align` (the base score module), and for local-p `position_proj` (W_p) and
    `position_energy` (v_p), both bias-free as in the paper.
    """

    window: int
    predictive: bool = False
    score: str = "general"
    hidden: int | None = None
    query_dim: int | None = None
    use_bias: bool | None = None
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @classmethod
    def config_fields(cls, c, query_dim):
        return {"window": c.attention_window, "query_dim": query_dim}

    def setup(self):
        if self.window < 1:
            raise ValueError(f"LocalAttention needs window >= 1, got {self.window}.")
        kw = dense_kwargs(self)
        if self.use_bias is not None:
            kw["use_bias"] = self.use_bias
        name = self.score.lower().replace("-", "_")
        if name in ("general", "luong"):
            self.align = GeneralAttention(query_dim=self.query_dim, **kw)
        elif name in ("additive", "bahdanau", "mlp"):
            if self.hidden is None:
                raise ValueError("LocalAttention with an additive score needs hidden=<int>.")
            self.align = AdditiveAttention(self.hidden, **kw)
        elif name == "dot":
            self.align = DotAttention()
        elif name == "scaled_dot":
            self.align = ScaledDotAttention()
        else:
            raise ValueError(
                f"Unknown local attention score {self.score!r}; "
                "use 'general', 'dot', 'scaled_dot' or 'additive'."
            )
        if self.predictive:
            plain = dense_kwargs(self, use_bias=False)  # bias-free, whatever use_bias says
            self.position_proj = AutoDense(self.hidden, **plain)  # W_p
            self.position_energy = AutoDense(1, **plain)  # v_p

    def precompute(self, keys):
        return self.align.precompute(keys)

    def aligned_position(self, query, src_len, mask, step):
        """p_t [B]: the step (local-m) or L * sigmoid(v_p^T tanh(W_p q)) (local-p)."""
        batch_shape = query.shape[:-1]
        if not self.predictive:
            if step is None:
                raise ValueError("Local-m attention needs the decoder time step: pass step=t.")
            return jnp.broadcast_to(jnp.asarray(step), batch_shape).astype(jnp.float32)
        length = (
            jnp.full(batch_shape, src_len, jnp.float32)
            if mask is None
            else jnp.asarray(mask, bool).sum(axis=-1).astype(jnp.float32)
        )  # [B]
        gate = self.position_energy(jnp.tanh(self.position_proj(query)))[..., 0]  # [B]
        return length * jax.nn.sigmoid(gate.astype(jnp.float32))

    def attention_weights(
        self, query: Array, keys: Array, mask: Array | None, *, step, cache
    ) -> Array:
        """Windowed softmax of the base score times a Gaussian centred on p_t: [B, S]."""
        src_len = keys.shape[-2]
        p_t = self.aligned_position(query, src_len, mask, step)  # [B]
        offset = jnp.arange(src_len, dtype=jnp.float32) - p_t[..., None]  # [B, S]
        valid = jnp.abs(offset) <= self.window  # [B, S]
        if mask is not None:
            valid = valid & jnp.asarray(mask, bool)
        scores = self.align.score(query, keys, cache)  # [B, S]
        sigma = self.window / 2
        gauss = jnp.exp(-(offset**2) / (2 * sigma**2))  # [B, S]
        return masked_softmax(scores, valid) * gauss.astype(scores.dtype)
