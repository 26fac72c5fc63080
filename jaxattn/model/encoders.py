"""Encoders: embedding + dropout + stacked (bi)directional GRU/LSTM layers.

The tutorial's EncoderRNN is `Encoder(vocab_size, hidden, hidden)` with one GRU layer and
dropout 0.1. Unlike the tutorial, padding is never read when `lengths` are given: outputs at
valid positions and the final state do not depend on how much padding follows.

`ENCODERS` registers encoders by name (`config.model.encoder`). An encoder is a module called
as ``outputs, finals = encoder(src, lengths, train=...)`` (shapes in `Encoder.__call__`) with
an `output_dim` property (the outputs' last axis) and a `from_config(c, vocab_size)`
classmethod (optional: `config_conflict(c)` -> a message or None, `source_positions(c)` -> the
most source positions it reads, 0 = any; `embedding_width(c)` and an `embedding` field, a shared
`nn.Embed` table it reads instead of its own, to share its table with the decoder
(model.share_embeddings)); a new one is its class plus one line in `ENCODERS`.
`TransformerEncoder` (jaxattn.model.transformer) is one.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from jaxattn.model.rnn import RNN, compute_dtype, valid_mask
from jaxattn.model.transformer import TransformerEncoder


class Encoder(nn.Module):
    """Embeds source ids and runs `num_layers` recurrent layers over them.

    Returns `(outputs, finals)`: outputs `[batch, src_len, hidden * directions]` (zero on
    padding) from the top layer, and `finals`, a tuple with one carry per layer; a carry is
    `(h,)` for a GRU or `(h, c)` for an LSTM, forward and backward states concatenated on the
    last axis (`[batch, hidden * directions]`).
    """

    vocab_size: int
    embed_dim: int
    hidden: int
    cell: str = "gru"
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.1  # on the embeddings, as the tutorial
    rnn_dropout: float = 0.0  # between stacked layers, as torch.nn.GRU(dropout=...)
    unroll: int = 1
    dtype: jnp.dtype | None = None
    embedding: nn.Module | None = None  # a shared nn.Embed (share_embeddings); None: its own

    @classmethod
    def from_config(cls, c, vocab_size: int) -> Encoder:
        """The encoder model config c describes, for a source vocabulary of vocab_size."""
        return cls(
            vocab_size=vocab_size,
            embed_dim=c.embed_dim,
            hidden=c.hidden,
            cell=c.cell,
            num_layers=c.encoder_layers,
            bidirectional=c.bidirectional,
            dropout=c.dropout,
            rnn_dropout=c.rnn_dropout,
            unroll=c.unroll,
            dtype=compute_dtype(c),
        )

    @classmethod
    def config_conflict(cls, c) -> str | None:
        """Why model config c cannot build this encoder (a message), or None."""
        del c
        return None

    @classmethod
    def source_positions(cls, c) -> int:
        """Source positions it can read: 0 = any."""
        del c
        return 0

    @classmethod
    def embedding_width(cls, c) -> int:
        """Its embedding table's width (what a shared table must have)."""
        return c.embed_dim

    @nn.compact
    def __call__(self, src, lengths=None, *, train: bool = False):
        """Encodes a batch.

        Args:
            src: Source ids [B, S] int32.
            lengths: Lengths [B] int32, or None to read every position (the tutorial).
            train: Apply dropout (needs a 'dropout' rng).

        Returns:
            (outputs [B, S, hidden * directions], finals: one carry per layer).
        """
        embed = self.embedding
        if embed is None:
            embed = nn.Embed(self.vocab_size, self.embed_dim, name="embed")
        x = embed(src)  # [B, S, E]
        if self.dtype is not None:
            x = x.astype(self.dtype)
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        finals = []
        for layer in range(self.num_layers):
            if layer > 0:
                x = nn.Dropout(self.rnn_dropout, deterministic=not train)(x)
            fwd, fwd_carry = RNN(
                self.cell, self.hidden, unroll=self.unroll, dtype=self.dtype, name=f"fwd_{layer}"
            )(x, lengths)
            if self.bidirectional:
                bwd, bwd_carry = RNN(
                    self.cell,
                    self.hidden,
                    reverse=True,
                    unroll=self.unroll,
                    dtype=self.dtype,
                    name=f"bwd_{layer}",
                )(x, lengths)
                x = jnp.concatenate([fwd, bwd], axis=-1)  # [B, S, 2H]
                carry = tuple(
                    jnp.concatenate([f, b], axis=-1)
                    for f, b in zip(fwd_carry, bwd_carry, strict=True)
                )
            else:
                x, carry = fwd, fwd_carry  # [B, S, H]
            finals.append(carry)
        if lengths is not None:
            x = jnp.where(valid_mask(lengths, x.shape[1])[..., None], x, 0.0)
        if self.dtype is not None:  # the attention's keys and values: in the compute dtype
            x = x.astype(self.dtype)
        return x, tuple(finals)

    @property
    def output_dim(self) -> int:
        """The outputs' last axis (the decoder's keys): hidden * directions."""
        return self.hidden * (2 if self.bidirectional else 1)


# config.model.encoder -> its class: one line registers an encoder.
ENCODERS: dict[str, type[nn.Module]] = {"rnn": Encoder, "transformer": TransformerEncoder}
