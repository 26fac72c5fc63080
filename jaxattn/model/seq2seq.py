"""Seq2Seq: an encoder and a decoder, with the methods search code drives.

    memory = model.apply(v, src, src_len, method="encode")
    state = model.apply(v, memory, method="init_state")
    state, logits, weights = model.apply(v, memory, state, prev, t, method="decode_step")

`__call__` decodes a whole target sequence in one scanned loop: teacher forced (ratio 1.0, the
current tutorial), mixed (a per-step, per-sentence Bernoulli draw from an explicit PRNG key), or
free running greedy (ratio 0.0, or no targets).

Token ids outside the vocabulary (negative, or >= its size) raise ValueError naming the input
when the ids are concrete (`model.apply` called eagerly, `init`), with the search functions'
check (`jaxattn.search.core.check_ids`). Under `jax.jit` (the train step, the searches' loops)
the ids are tracers and cannot be checked: there an embedding lookup clamps or wraps them
silently, so check ids before jitting (the data pipeline and the search functions do).
"""

from __future__ import annotations

import numbers

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxattn.checks import attention_sizes
from jaxattn.config import default_model_config  # noqa: F401 - models.default_model_config
from jaxattn.model import attention as attention_lib
from jaxattn.model.decoders import DECODERS, DecoderState, Memory
from jaxattn.model.encoders import Encoder
from jaxattn.model.rnn import valid_mask
from jaxattn.search.core import check_ids, vocab_sizes


class Seq2Seq(nn.Module):
    """Encoder-decoder with attention.

    mask_attention=False and encoder_lengths=False reproduce two of the tutorial's faults
    (attention over padding; the encoder reading padding); the defaults are correct.

    Attributes:
        encoder: The `Encoder`.
        decoder: A decoder (`BahdanauDecoder`, `LuongDecoder`, `PlainDecoder`, `LegacyDecoder`).
        bos_id: The first decoder input (the tutorial's SOS).
        mask_attention: Mask padding out of the attention (False: the tutorial).
        encoder_lengths: Stop the encoder at each sentence's length (False: the tutorial).
    """

    encoder: Encoder
    decoder: nn.Module
    bos_id: int
    mask_attention: bool = True
    encoder_lengths: bool = True

    def encode(self, src, src_len=None, *, train: bool = False) -> Memory:
        """Runs the encoder once per sentence.

        Args:
            src: Source ids [B, S] int.
            src_len: Source lengths [B] int, or None (every position is real).
            train: Apply dropout (needs a 'dropout' rng).

        Returns:
            A `Memory`: keys [B, S, D_enc] (encoder outputs), mask [B, S] bool or None, finals
            (the encoder's final carries, one per layer) and cache (the attention's key-only
            work, see `precompute`).

        Raises:
            ValueError: For concrete source ids outside [0, source vocabulary size).
        """
        check_ids("src", src, vocab_sizes(self)[0], "source ids")
        lengths = src_len if self.encoder_lengths else None
        keys, finals = self.encoder(src, lengths, train=train)  # [B, S, D_enc]
        mask = None
        if self.mask_attention and src_len is not None:
            mask = valid_mask(src_len, src.shape[1])  # [B, S]
        cache = self.decoder.precompute(keys)
        return Memory(keys=keys, mask=mask, finals=tuple(finals), cache=cache)

    def init_state(self, memory: Memory) -> DecoderState:
        """The decoder's initial state from `encode`'s memory (rnn carries, [B, H] each)."""
        return self.decoder.init_state(memory)

    def decode_step(self, memory, state, prev_tokens, t, *, train: bool = False):
        """One decoder step, as search code drives it.

        Args:
            memory: `encode`'s output.
            state: The decoder state (`init_state`, then this method's).
            prev_tokens: The previous output ids [B] (BOS first).
            t: The step index (int or [B] int; local-m attention uses it).
            train: Apply dropout.

        Returns:
            (state, logits [B, V] float32, attention weights [B, S]).

        Raises:
            ValueError: For concrete `prev_tokens` outside [0, target vocabulary size).
        """
        check_ids("prev_tokens", prev_tokens, vocab_sizes(self)[1], "target ids")
        return self.decoder.step(memory, state, prev_tokens, t, train=train)

    def __call__(
        self,
        src,
        src_len=None,
        targets=None,
        *,
        teacher_forcing_ratio: float | jax.Array = 1.0,
        rng=None,
        max_len: int | None = None,
        train: bool = False,
    ):
        """Encodes and decodes a batch in one scanned loop.

        Args:
            src: Source ids [B, S] int.
            src_len: Source lengths [B] int, or None (every position is real).
            targets: Target ids [B, T] (EOS-terminated, no BOS), or None for free-running
                greedy decoding of `max_len` steps.
            teacher_forcing_ratio: 1.0 feeds the targets at every step; 0.0 feeds the model's
                own argmax; in between, a per-step, per-sentence coin drawn from `rng`. A
                scalar array (e.g. a schedule's value at a traced step) always draws coins.
            rng: A PRNG key, needed when 0 < teacher_forcing_ratio < 1 or it is an array.
            max_len: Steps to decode when targets is None.
            train: Apply dropout (pass ``rngs={'dropout': key}`` to `apply`).

        Returns:
            (logits [B, T, V] float32, attention weights [B, T, S]).

        Raises:
            ValueError: For concrete source or target ids outside their vocabulary (not under
                jit: see the module's doc).
        """
        if targets is not None:
            check_ids("targets", targets, vocab_sizes(self)[1], "target ids")
        memory = self.encode(src, src_len, train=train)
        batch = src.shape[0]
        if targets is None:
            if max_len is None:
                raise ValueError("Give either targets or max_len for free-running decoding.")
            targets = jnp.zeros((batch, max_len), src.dtype)
            teacher_forcing_ratio = 0.0
        # A Python number picks the path when tracing (1.0: the fast teacher-forced scan); an
        # array (a scheduled ratio, traced in the train step) always draws the coins, which
        # are all True at 1 and all False at 0 (bernoulli(p) is uniform[0, 1) < p).
        static = isinstance(teacher_forcing_ratio, numbers.Real)
        teacher_forcing = None  # always
        if static and teacher_forcing_ratio <= 0.0:
            teacher_forcing = jnp.zeros(targets.shape, bool)
        elif not static or teacher_forcing_ratio < 1.0:
            if rng is None:
                raise ValueError(
                    "teacher_forcing_ratio < 1 (or an array) draws coins: pass rng=<PRNG key>."
                )
            teacher_forcing = jax.random.bernoulli(rng, teacher_forcing_ratio, targets.shape)
        logits, weights, _ = self.decoder(
            memory, targets, bos_id=self.bos_id, teacher_forcing=teacher_forcing, train=train
        )
        return logits, weights


def compute_dtype(c: ml_collections.ConfigDict):
    """config.model.dtype as the modules' `dtype` field: None for float32 (the default)."""
    return jnp.dtype(c.dtype) if c.dtype != "float32" else None


def _attention_from_config(c, query_dim: int, key_dim: int) -> nn.Module:
    name = c.attention
    kwargs = {}
    if name in ("additive", "bahdanau", "mlp"):
        kwargs = {"hidden": c.hidden, "use_bias": c.attention_bias}
    elif name in ("general", "luong"):
        kwargs = {"use_bias": False, "query_dim": query_dim}
    elif name == "location":
        kwargs = {"max_length": c.attention_max_length, "use_bias": c.attention_bias}
    elif name in ("local_m", "local_p"):
        kwargs = {"window": c.attention_window, "query_dim": query_dim}
    elif name == "kernel":
        kwargs = {"kernel": c.kernel}
    why = attention_sizes(name, query_dim, key_dim)
    if why:
        raise ValueError(why)
    return attention_lib.make_attention(name, dtype=compute_dtype(c), **kwargs)


def build_model(
    c: ml_collections.ConfigDict, src_vocab_size: int, tgt_vocab_size: int, bos_id: int
) -> Seq2Seq:
    """Builds a Seq2Seq from a model config.

    Args:
        c: A model config (see `default_model_config`).
        src_vocab_size: Source vocabulary size.
        tgt_vocab_size: Target vocabulary size (the logits' last axis).
        bos_id: The decoder's first input id.

    Returns:
        The `Seq2Seq` module (initialise it with ``model.init(key, src, src_len, tgt)``).

    Raises:
        ValueError: For an unknown decoder or attention, or sizes that cannot match.
    """
    dtype = compute_dtype(c)
    shared = dict(embed_dim=c.embed_dim, hidden=c.hidden, cell=c.cell, unroll=c.unroll, dtype=dtype)
    encoder = Encoder(
        vocab_size=src_vocab_size,
        num_layers=c.encoder_layers,
        bidirectional=c.bidirectional,
        dropout=c.dropout,
        rnn_dropout=c.rnn_dropout,
        **shared,
    )
    if c.decoder not in DECODERS:
        raise ValueError(f"Unknown decoder {c.decoder!r}; choose one of {sorted(DECODERS)}.")
    common = dict(vocab_size=tgt_vocab_size, num_layers=c.decoder_layers, bridge=c.bridge, **shared)
    key_dim = encoder.output_dim
    if c.decoder == "plain":
        decoder = DECODERS["plain"](**common)
    else:
        query_dim = c.hidden + (c.embed_dim if c.decoder == "legacy" else 0)
        attn = _attention_from_config(c, query_dim, key_dim)
        extra = {"input_feeding": c.input_feeding} if c.decoder == "luong" else {}
        decoder = DECODERS[c.decoder](attention=attn, dropout=c.dropout, **common, **extra)
    return Seq2Seq(
        encoder=encoder,
        decoder=decoder,
        bos_id=bos_id,
        mask_attention=c.mask_attention,
        encoder_lengths=c.encoder_lengths,
    )
