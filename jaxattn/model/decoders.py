"""Decoders: one time step each (`step`), and a scanned loop over steps (`__call__`).

Every decoder exposes the same three methods, so training, greedy and beam search drive any
of them alike:

    cache  = decoder.precompute(keys)                    # per-sentence attention work
    state  = decoder.init_state(memory, steps)           # from the encoder's final carries
    state, logits, weights = decoder.step(memory, state, prev_tokens, t, train=...)

`memory` is a `Memory` and a state a `DecoderState` (typed pytrees, shapes below). Every array
in them has the batch first, so search code can tile and gather them. `steps` (the decoding
steps to come) sizes a fixed cache; the RNN decoders ignore it, `TransformerDecoder`
(jaxattn.model.transformer, registered here too) needs it for its key/value cache.

- `BahdanauDecoder`: the tutorial's AttnDecoderRNN. Query = previous hidden state; the RNN
  reads concat(embedding, context); logits = Linear(hidden state). Any attention plugs in.
- `LuongDecoder`: RNN first, attention on the new state, attentional vector
  tanh(W_c [context; h]), optional input feeding.
- `PlainDecoder`: the tutorial's DecoderRNN (Embedding -> ReLU -> GRU -> Linear), no attention.
- `LegacyDecoder`: the pre-2023 tutorial's AttnDecoderRNN: location attention over
  concat(embedding, hidden), attn_combine + ReLU before the RNN.

`DECODERS` registers them by name (`config.model.decoder`); each class builds itself and its
attention from a model config (`Decoder.from_config`), knowing its fields, its query size and
its conflicts, so a new decoder is its class plus one line there.
"""

from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from jaxattn.model import attention as attention_lib
from jaxattn.model.rnn import compute_dtype, make_cell
from jaxattn.model.transformer import TransformerDecoder

BRIDGES = ("copy", "dense", "zero")
# Teacher-forced loops whose per-step [B, S, D_enc]-sized residuals (attention energies) would
# total more than this are rematerialized in the backward pass (matmul results kept).
REMAT_BYTES = 32 * 2**20


@jax.custom_jvp
def _projection(x, kernel):
    """x [..., H] @ kernel [H, V], the output layer's matmul. Its JVP takes the kernel term
    through an explicitly transposed (small) x, so that the kernel gradient (its transpose) is
    x^T [H, N] @ g [N, V] as one plain GEMM: left to itself, XLA's CPU layout pass transposes
    the large g instead and runs a slower dot (~2.5 of 17.5 ms a tutorial-config training
    step). A JVP rule, not a VJP one, so forward-mode autodiff still works."""
    return jnp.matmul(x, kernel)


@_projection.defjvp
def _projection_jvp(primals, tangents):
    (x, kernel), (dx, dkernel) = primals, tangents
    out = jnp.matmul(x, kernel)  # [..., V]
    xt = jax.lax.optimization_barrier(x.reshape(-1, x.shape[-1]).T)  # [H, N], a residual
    dout = jnp.matmul(dx, kernel) + jnp.matmul(xt.T, dkernel).reshape(out.shape)
    return out, dout


def _projection_dot_general(x, kernel, dims, precision=None, preferred_element_type=None):
    """`nn.Dense`'s dot_general for the output layer: `_projection`."""
    del precision, preferred_element_type
    assert dims == (((x.ndim - 1,), (0,)), ((), ())), dims
    return _projection(x, kernel)


def _dense_part(dense: nn.Dense, x, start: int, stop: int | None, bias: bool):
    """x @ kernel[start:stop] (+ bias) for a bound `nn.Dense`: its output on a concatenated
    input is the sum of these parts over the pieces, so a piece known in advance (e.g. every
    step's embedding) can be projected outside a time loop. Accumulates in float32."""
    params = dense.variables["params"]
    kernel = params["kernel"][start:stop]
    x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=dense.dtype)
    y = jax.lax.dot_general(
        x,
        kernel,
        (((x.ndim - 1,), (0,)), ((), ())),
        precision=dense.precision,
        preferred_element_type=jnp.float32,
    )
    if bias and dense.use_bias:
        y = y + params["bias"].astype(jnp.float32)
    return y


@struct.dataclass
class Memory:
    """What the encoder hands the decoder (`Seq2Seq.encode`'s output)."""

    keys: jax.Array  # [B, S, D_enc] encoder outputs (zero on padding)
    mask: jax.Array | None  # [B, S] bool, True on real tokens; None: attend everywhere
    finals: tuple  # one final carry per encoder layer: (h [B, H_enc],) or LSTM (h, c)
    cache: Any = None  # the attention's key-only work (`precompute`), e.g. [B, S, A]; or None


@struct.dataclass
class DecoderState:
    """The decoder's recurrent state between steps."""

    rnn: tuple  # one carry per decoder layer: (h [B, H],) or LSTM (h [B, H], c [B, H])
    feed: jax.Array | None = None  # [B, H] Luong input feeding: the last attentional vector


class Decoder(nn.Module):
    """The shared fields and parts: RNN stack, bridge from the encoder, the scanned loop.

    A subclass provides `_features(memory, state, emb, t, *, train) -> (state, features [B, H],
    weights [B, S])`; it may override `_embed_tokens`, `_project_embedded` (the teacher-forced
    fast path) and `init_state` (extra state).
    """

    vocab_size: int  # target vocabulary (the logits' size)
    embed_dim: int
    hidden: int  # RNN size
    attention: nn.Module | None = None  # the scoring module; None: no attention (plain)
    cell: str = "gru"  # gru | lstm
    num_layers: int = 1
    dropout: float = 0.1  # on embeddings (and between RNN layers)
    bridge: str = "copy"  # copy | dense | zero: how the encoder's final state starts the RNN
    unroll: int = 1  # scan unroll factor
    dtype: jnp.dtype | None = None  # compute dtype (params stay float32)
    tie_embeddings: bool = False  # the output layer is the embedding table (transposed)
    embedding: nn.Module | None = None  # a shared nn.Embed (share_embeddings); None: its own
    needs_attention: ClassVar[bool] = True  # False: the subclass reads no `attention`
    # `__call__(..., project=False)` gives the features before the output layer (`_logits`).
    gives_features: ClassVar[bool] = True

    # ------------------------------------------------- the registry entry: from a model config
    @classmethod
    def query_size(cls, c) -> int:
        """The width of the query this decoder hands its attention, for model config c."""
        return c.hidden  # the top RNN state

    @classmethod
    def config_fields(cls, c) -> dict[str, Any]:
        """This decoder's fields from model config c (besides vocab_size, attention, dtype)."""
        return dict(
            embed_dim=c.embed_dim,
            hidden=c.hidden,
            cell=c.cell,
            num_layers=c.decoder_layers,
            dropout=c.dropout,
            bridge=c.bridge,
            unroll=c.unroll,
            tie_embeddings=c.tie_embeddings,
        )

    @classmethod
    def embedding_width(cls, c) -> int:
        """Its embedding table's width (what a shared table must have)."""
        return c.embed_dim

    @classmethod
    def config_conflict(cls, c, key_dim: int) -> str | None:
        """Why model config c cannot build this decoder over encoder outputs [B, S, key_dim]
        (a message), or None."""
        if c.tie_embeddings and c.hidden != c.embed_dim:
            # The output layer reads the top hidden state (Luong: the attentional vector),
            # [B, hidden]; tied, its kernel is the [V, embed_dim] table transposed.
            return (
                f"tie_embeddings: the output layer reads {c.hidden} features (model.hidden) "
                f"and the embedding table is {c.embed_dim} wide (model.embed_dim); set them "
                "equal, or tie_embeddings=False."
            )
        if not cls.needs_attention:
            return None
        return attention_lib.config_conflict(c, cls.query_size(c), key_dim)

    @classmethod
    def target_positions(cls, c) -> int:
        """Decoding steps it can take: 0 = any."""
        del c
        return 0

    @classmethod
    def from_config(cls, c, vocab_size: int, key_dim: int) -> Decoder:
        """The decoder model config c describes, with its attention (`c.attention`) over
        encoder outputs [B, S, key_dim], for a target vocabulary of vocab_size.

        Raises:
            ValueError: For an unknown attention, or sizes it cannot compare.
        """
        dtype = compute_dtype(c)
        attention = None
        if cls.needs_attention:
            attention = attention_lib.from_config(c, cls.query_size(c), key_dim, dtype=dtype)
        return cls(vocab_size=vocab_size, attention=attention, dtype=dtype, **cls.config_fields(c))

    def setup(self):
        if self.needs_attention and self.attention is None:
            raise ValueError(f"{type(self).__name__} needs an attention module.")
        if self.embedding is not None:
            self.embed = self.embedding
        else:
            self.embed = nn.Embed(self.vocab_size, self.embed_dim, dtype=self.dtype)
        self.cells = [
            make_cell(self.cell, self.hidden, self.dtype, name=f"rnn_{i}")
            for i in range(self.num_layers)
        ]
        if self.bridge not in BRIDGES:
            raise ValueError(f"Unknown bridge {self.bridge!r}; choose one of {BRIDGES}.")
        if self.bridge == "dense":
            self.bridge_proj = nn.Dense(self.hidden, dtype=self.dtype)
        if not self.tie_embeddings:
            self.out = nn.Dense(
                self.vocab_size,
                dtype=self.dtype,  # logits: cast to float32
                dot_general=_projection_dot_general,
            )
        self.drop = nn.Dropout(self.dropout)

    def precompute(self, keys):
        """Attention work that depends only on the keys (done once per sentence)."""
        return None if self.attention is None else self.attention.precompute(keys)

    def init_state(self, memory: Memory, steps: int | None = None) -> DecoderState:
        """Initial decoder state from the encoder's final carries (the 'bridge'); `steps`
        (the decoding steps to come, for a fixed-size cache) is not needed by an RNN."""
        del steps
        finals = memory.finals
        batch = memory.keys.shape[0]
        rnn = []
        for i, cell in enumerate(self.cells):
            zero = cell.initial_carry(batch)
            src = finals[i] if len(finals) == self.num_layers else finals[-1]
            if self.bridge == "zero":
                rnn.append(zero)
                continue
            if self.bridge == "dense":
                h = jnp.tanh(self.bridge_proj(finals[-1][0]))
            else:
                h = src[0]
                if h.shape[-1] != self.hidden:
                    raise ValueError(
                        f"bridge='copy' needs the encoder's final state size ({h.shape[-1]}) to "
                        f"equal the decoder's hidden size ({self.hidden}); use bridge='dense' "
                        "(e.g. for a bidirectional encoder) or match the sizes."
                    )
            carry = (h.astype(zero[0].dtype),)
            if len(zero) == 2:  # LSTM decoder: copy the encoder's cell state when it has one
                c = src[1] if (self.bridge == "copy" and len(src) == 2) else zero[1]
                carry = (carry[0], c)
            rnn.append(carry)
        return DecoderState(rnn=tuple(rnn))

    def _features(self, memory: Memory, state: DecoderState, emb, t, *, train: bool = False):
        """One step's (state, features [B, H] for the output layer, weights [B, S])."""
        raise NotImplementedError(f"{type(self).__name__} must define _features")

    def _run_rnn(self, rnn_state, x, train: bool, first_projected=None):
        """Runs the stacked cells one step; returns (new carries, top hidden state).

        first_projected: the first cell's projected input (`project_inputs(x)`), when the caller
        computed it (then x is not read by the first cell)."""
        new = []
        for i, cell in enumerate(self.cells):
            if i > 0:
                x = self.drop(x, deterministic=not train)
            if i == 0 and first_projected is not None:
                xp = first_projected
            else:
                xp = cell.project_inputs(x)
            carry = cell.step(rnn_state[i], xp)
            new.append(carry)
            x = carry[0]
        return tuple(new), x

    def _logits(self, h):
        if self.tie_embeddings:  # h [..., E] @ table^T, no bias
            return self.embed.attend(h).astype(jnp.float32)
        return self.out(h).astype(jnp.float32)  # [B, V] (or [B, T, V])

    def _lookup(self, tokens):
        """The embedding of tokens [B] or [B, T] -> [..., E], in the compute dtype (a shared
        table computes in float32)."""
        emb = self.embed(tokens)
        return emb if self.dtype is None else emb.astype(self.dtype)

    def _embed_tokens(self, tokens, *, train: bool):
        """The RNN's token input: dropout(embedding) ([B] or [B, T] ids -> [..., E])."""
        return self.drop(self._lookup(tokens), deterministic=not train)

    def _project_embedded(self, embedded):
        """Teacher-forced path: work on the embedded inputs of all steps [B, T, E] done before
        the loop; `_features(..., projected=True)` takes a step of the result. None: none."""
        return None

    def step(self, memory: Memory, state: DecoderState, prev_tokens, t, *, train: bool = False):
        """One step: (state, prev_tokens [B], t) -> (state, logits [B, V], weights [B, S])."""
        emb = self._embed_tokens(prev_tokens, train=train)
        state, features, weights = self._features(memory, state, emb, t, train=train)
        return state, self._logits(features), weights

    def __call__(
        self, memory, targets, *, bos_id: int, teacher_forcing=None, train=False, project=True
    ):
        """Decodes len(targets) steps in one scanned loop.

        targets [B, T]: gold ids ending in EOS (no BOS). The input at step 0 is BOS; at step t it
        is targets[:, t-1] where teacher_forcing[:, t] is True, else the previous step's argmax.
        teacher_forcing [B, T] bool or None (= always, the current tutorial).
        Returns logits [B, T, V], attention weights [B, T, S] and the final state; with
        project=False (always teacher forced only) the features [B, T, H] the output layer
        (`_logits`) reads instead of the logits, so that a loss can project only some rows.
        """
        batch, steps = targets.shape
        bos = jnp.full((batch, 1), bos_id, targets.dtype)
        gold_inputs = jnp.concatenate([bos, targets[:, :-1]], axis=1)  # [B, T]
        times = jnp.broadcast_to(jnp.arange(steps, dtype=jnp.int32), (batch, steps))
        scan_kw = dict(
            variable_broadcast="params",
            split_rngs={"params": False, "dropout": True},
            in_axes=1,
            out_axes=1,
            unroll=self.unroll,
        )
        state0 = self.init_state(memory)
        if teacher_forcing is None and not self.is_initializing():
            # Always teacher forced: no prediction is fed back, so the inputs of every step are
            # embedded (with their dropout) before the loop, the loop only produces each step's
            # features, and the output projection runs once on all of them after it ([B * T, H]
            # x [H, V], one large matmul instead of T small ones; no argmax).
            embedded = self._embed_tokens(gold_inputs, train=train)  # [B, T, E]
            projected = self._project_embedded(embedded)  # e.g. [B, T, G*H], or None
            kw = dict(train=train) if projected is None else dict(train=train, projected=True)
            embedded = embedded if projected is None else projected

            def forced(dec, state, xs):
                emb, t = xs  # [B, E] (or [B, G*H] projected), [B]
                state, features, weights = dec._features(memory, state, emb, t, **kw)
                return state, (features, weights)

            if steps * memory.keys.size * 4 > REMAT_BYTES:
                # Saving every step's attention energies ([B, S, D] each) for the backward pass
                # costs more memory traffic than recomputing them: keep only matmul results.
                forced = nn.remat(
                    forced, prevent_cse=False, policy=jax.checkpoint_policies.dots_saveable
                )
            state, (features, weights) = nn.scan(forced, **scan_kw)(self, state0, (embedded, times))
            return (self._logits(features) if project else features), weights, state
        if not project:
            raise ValueError("project=False needs teacher_forcing=None (always teacher forced).")
        if teacher_forcing is None:  # init: the per-step path, so params init as before
            teacher_forcing = jnp.ones((batch, steps), bool)
        return step_loop(self, memory, state0, gold_inputs, teacher_forcing, train=train)


def step_loop(dec, memory, state0, gold_inputs, teacher_forcing, *, train: bool = False):
    """Decodes step by step in one scanned loop (any decoder of the protocol): the input at
    step t is gold_inputs[:, t] where teacher_forcing[:, t], else step t-1's argmax (BOS, in
    gold_inputs[:, 0], first). gold_inputs, teacher_forcing [B, T].
    Returns (logits [B, T, V], weights [B, T, S], the final state)."""
    batch, steps = gold_inputs.shape
    times = jnp.broadcast_to(jnp.arange(steps, dtype=jnp.int32), (batch, steps))

    def body(dec, carry, xs):
        state, prev_pred = carry
        gold, force, t = xs  # each [B]
        tokens = jnp.where(force, gold, prev_pred)
        state, logits, weights = dec.step(memory, state, tokens, t, train=train)
        pred = jnp.argmax(logits, axis=-1).astype(gold_inputs.dtype)
        return (state, pred), (logits, weights)

    scan = nn.scan(
        body,
        variable_broadcast="params",
        split_rngs={"params": False, "dropout": True},
        in_axes=1,
        out_axes=1,
        unroll=getattr(dec, "unroll", 1),
    )
    (state, _), (logits, weights) = scan(
        dec, (state0, gold_inputs[:, 0]), (gold_inputs, teacher_forcing, times)
    )
    return logits, weights, state


def _attend(attention, query, memory: Memory, t):
    """(context [B, D_enc], weights [B, S] float32) of `attention` for query [B, Q] at step t;
    the query in the keys' (compute) dtype, so that every attention matmul runs in it."""
    query = query.astype(memory.keys.dtype)
    return attention(query, memory.keys, mask=memory.mask, step=t, cache=memory.cache)


class BahdanauDecoder(Decoder):
    """The tutorial's AttnDecoderRNN with a pluggable scoring function.

    Query = the previous top hidden state; the first RNN layer reads [embedding; context] (in
    this order: the teacher-forced fast path splits the layer's kernel rows by it).
    """

    def _input_rows(self, context_dim: int):
        """The first cell's input projection and its kernel rows for the embedding ([:E]) and
        the context ([E:]); checks the layout the fast path relies on."""
        dense = self.cells[0].input_proj
        rows = dense.variables["params"]["kernel"].shape[0]
        if rows != self.embed_dim + context_dim:
            raise AssertionError(
                f"the first RNN layer reads {rows} inputs, not "
                f"[embedding {self.embed_dim}; context {context_dim}]"
            )
        return dense

    def _project_embedded(self, embedded):
        # Every step's embedding part of the first cell's input projection at once
        # ([B * T, E] x [E, G*H], bias included); the loop adds the context part.
        return _dense_part(self.cells[0].input_proj, embedded, 0, self.embed_dim, bias=True)

    def _features(self, memory, state, emb, t, *, train: bool = False, projected=False):
        # emb [B, E] embedded previous tokens (projected: [B, G*H], `_project_embedded`'s);
        # t [B] or scalar int step index
        query = state.rnn[-1][0]  # [B, H] previous top hidden state
        context, weights = _attend(self.attention, query, memory, t)  # [B, D_enc], [B, S]
        if projected:
            dense = self._input_rows(context.shape[-1])
            xp = emb + _dense_part(dense, context, self.embed_dim, None, bias=False)
            dtype = dense.dtype or jnp.result_type(context, dense.variables["params"]["kernel"])
            rnn, h = self._run_rnn(state.rnn, None, train, first_projected=xp.astype(dtype))
        else:
            x = jnp.concatenate([emb.astype(context.dtype), context], axis=-1)  # [B, E + D_enc]
            rnn, h = self._run_rnn(state.rnn, x, train)
        return state.replace(rnn=rnn), h, weights


class LuongDecoder(Decoder):
    """Luong et al. (2015): attention on the new state, tanh(W_c [c; h]), input feeding."""

    input_feeding: bool = True  # the RNN also reads the previous attentional vector

    @classmethod
    def config_fields(cls, c):
        return {**super().config_fields(c), "input_feeding": c.input_feeding}

    def setup(self):
        super().setup()
        self.combine = nn.Dense(self.hidden, use_bias=False, dtype=self.dtype)  # W_c

    def init_state(self, memory: Memory, steps: int | None = None) -> DecoderState:
        state = super().init_state(memory)
        if not self.input_feeding:
            return state
        return state.replace(feed=jnp.zeros((memory.keys.shape[0], self.hidden), jnp.float32))

    def _features(self, memory, state, emb, t, *, train: bool = False):
        x = jnp.concatenate([emb, state.feed], axis=-1) if self.input_feeding else emb
        rnn, h = self._run_rnn(state.rnn, x, train)  # h [B, H]
        context, weights = _attend(self.attention, h, memory, t)
        attentional = jnp.tanh(self.combine(jnp.concatenate([context, h], axis=-1)))  # [B, H]
        attentional = self.drop(attentional, deterministic=not train)
        feed = attentional.astype(state.feed.dtype) if self.input_feeding else None
        return state.replace(rnn=rnn, feed=feed), attentional, weights


class PlainDecoder(Decoder):
    """The tutorial's DecoderRNN: Embedding -> ReLU -> RNN -> Linear; weights are all zero."""

    dropout: float = 0.0  # the tutorial's DecoderRNN has none (used between layers only)
    needs_attention: ClassVar[bool] = False

    @classmethod
    def config_fields(cls, c):
        fields = super().config_fields(c)
        del fields["dropout"]  # config.model.dropout is not the tutorial's: keep 0
        return fields

    def _embed_tokens(self, tokens, *, train: bool):
        return jax.nn.relu(self._lookup(tokens))  # no dropout

    def _features(self, memory, state, emb, t, *, train: bool = False):
        rnn, h = self._run_rnn(state.rnn, emb, train)
        weights = jnp.zeros(memory.keys.shape[:2], jnp.float32)  # [B, S]
        return state.replace(rnn=rnn), h, weights


class LegacyDecoder(Decoder):
    """The pre-June-2023 tutorial's AttnDecoderRNN ("location" attention).

    weights = softmax(Linear(E+H -> max_length)([embedded; hidden])); context = weights @ keys;
    RNN input = ReLU(attn_combine([embedded; context])). Use with `LocationAttention`.
    """

    @classmethod
    def query_size(cls, c):
        return c.embed_dim + c.hidden  # [embedded; hidden]

    def setup(self):
        super().setup()
        self.attn_combine = nn.Dense(self.hidden, dtype=self.dtype)

    def _features(self, memory, state, emb, t, *, train: bool = False):
        query = jnp.concatenate([emb, state.rnn[-1][0]], axis=-1)  # [B, E + H]
        context, weights = _attend(self.attention, query, memory, t)
        x = jax.nn.relu(self.attn_combine(jnp.concatenate([emb, context], axis=-1)))  # [B, H]
        rnn, h = self._run_rnn(state.rnn, x, train)
        return state.replace(rnn=rnn), h, weights


# config.model.decoder -> its class: one line registers a decoder.
DECODERS: dict[str, type[nn.Module]] = {
    "bahdanau": BahdanauDecoder,
    "luong": LuongDecoder,
    "plain": PlainDecoder,
    "legacy": LegacyDecoder,
    "transformer": TransformerDecoder,
}
