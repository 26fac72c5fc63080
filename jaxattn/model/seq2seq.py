"""Seq2Seq: an encoder and a decoder, with the methods search code drives.

    memory = model.apply(v, src, src_len, method="encode")
    state = model.apply(v, memory, max_len, method="init_state")
    state, logits, weights = model.apply(v, memory, state, prev, t, method="decode_step")

`__call__` decodes a whole target sequence in one scanned loop: teacher forced (ratio 1.0, the
current tutorial), mixed (a per-step, per-sentence Bernoulli draw from an explicit PRNG key), or
free running greedy (ratio 0.0, or no targets).

`attention_views` gives every attention's weights of one teacher-forced pass, per layer and
head (`AttentionViews`): the Transformer parts' self- and cross-attention, an RNN decoder's
attention as one layer of one head, and the alignment the decode steps report.

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
from flax import struct

from jaxattn.model.attention import source_positions as attention_source_positions
from jaxattn.model.decoders import DECODERS, Memory
from jaxattn.model.encoders import ENCODERS
from jaxattn.model.rnn import valid_mask
from jaxattn.search.core import check_ids, vocab_sizes


@struct.dataclass
class AttentionViews:
    """Every attention of one teacher-forced pass (`Seq2Seq.attention_views`), per layer and
    head; rows are query positions, columns key positions (rows sum to 1 on real positions).

    `alignment` is what each decode step reports (and search results, heatmaps, coverage and
    unknown-word replacement use): the Transformer decoder's cross-attention of layer
    config.model.alignment_layer (-1: the last), the mean of its heads or head
    config.model.alignment_head; an RNN decoder's attention.
    """

    encoder_self: jax.Array | None  # [B, L_enc, h, S, S]; None: an RNN encoder
    decoder_self: jax.Array | None  # [B, L_dec, h, T, T]; None: an RNN decoder
    cross: jax.Array  # [B, L_dec, h, T, S]; an RNN decoder: [B, 1, 1, T, S]
    alignment: jax.Array  # [B, T, S]


def sown_weights(intermediates: dict, stack: str, attention: str) -> jax.Array | None:
    """The attention weights the layers of `stack` ('encoder' | 'decoder') sowed from their
    `attention` ('self_attn' | 'cross_attn') in an 'intermediates' collection, as [B, L, h, T,
    S]; None if none did (an RNN part). Reads both stack layouts: modules `layer_{i}` (each
    [B, h, T, S]) and one scanned `layers` module (the layer axis first: [L, B, h, T, S])."""
    tree = intermediates.get(stack, {})
    if "layers" in tree:  # scan_layers
        return jnp.moveaxis(tree["layers"][attention]["weights"][-1], 0, 1)  # [B, L, h, T, S]
    names = sorted(
        (k for k in tree if k.startswith("layer_") and attention in tree[k]),
        key=lambda k: int(k[len("layer_") :]),
    )
    if not names:
        return None
    return jnp.stack([tree[k][attention]["weights"][-1] for k in names], axis=1)  # [B, L, h, T, S]


class Seq2Seq(nn.Module):
    """Encoder-decoder with attention.

    mask_attention=False and encoder_lengths=False reproduce two of the tutorial's faults
    (attention over padding; the encoder reading padding); the defaults are correct.

    Attributes:
        encoder: An encoder (`ENCODERS`: the RNN `Encoder`).
        decoder: A decoder (`BahdanauDecoder`, `LuongDecoder`, `PlainDecoder`, `LegacyDecoder`).
        bos_id: The first decoder input (the tutorial's SOS).
        mask_attention: Mask padding out of the attention (False: the tutorial).
        encoder_lengths: Stop the encoder at each sentence's length (False: the tutorial).
    """

    encoder: nn.Module
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

    def init_state(self, memory: Memory, steps: int | None = None):
        """The decoder's initial state from `encode`'s memory: a `DecoderState` (RNN carries,
        [B, H] each) or a `TransformerState` (a key/value cache of `steps` positions; search
        code passes its max_len)."""
        return self.decoder.init_state(memory, steps)

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

    def features(self, src, src_len, targets, *, train: bool = False):
        """The teacher-forced decoder's features [B, T, H] before the output layer (for a
        decoder whose class has `gives_features`): `output_logits` of them are `__call__`'s
        logits at teacher_forcing_ratio=1.0, so that a loss can project only the real target
        positions (`training.losses.masked_loss_sum`)."""
        check_ids("targets", targets, vocab_sizes(self)[1], "target ids")
        memory = self.encode(src, src_len, train=train)
        features, _, _ = self.decoder(
            memory, targets, bos_id=self.bos_id, train=train, project=False
        )
        return features

    def output_logits(self, features):
        """The output layer: features [..., H] -> logits [..., V] float32."""
        return self.decoder._logits(features)

    def attention_views(self, src, src_len, targets) -> AttentionViews:
        """Every attention's weights, per layer and head, of one teacher-forced pass over
        `targets` (train=False); see `AttentionViews`::

            views = model.apply(variables, src, src_len, tgt, method="attention_views")

        Args:
            src: Source ids [B, S] int.
            src_len: Source lengths [B] int, or None (every position is real).
            targets: Target ids [B, T] (EOS-terminated, no BOS): row t of a view is the step
                that emits targets[:, t].

        Returns:
            `AttentionViews` (float32).
        """
        # A pass of its own with 'intermediates' mutable (where the Transformer's attentions
        # sow their weights), whatever the caller's `apply` made mutable.
        module, variables = self.unbind()
        variables = {k: v for k, v in variables.items() if k != "intermediates"}
        (_, alignment), sown = module.apply(
            variables, src, src_len, targets, mutable="intermediates"
        )  # alignment [B, T, S]
        sown = sown.get("intermediates", {})
        cross = sown_weights(sown, "decoder", "cross_attn")  # [B, L_dec, h, T, S] or None
        return AttentionViews(
            encoder_self=sown_weights(sown, "encoder", "self_attn"),
            decoder_self=sown_weights(sown, "decoder", "self_attn"),
            cross=alignment[:, None, None] if cross is None else cross,
            alignment=alignment,
        )


def _optional(cls, method: str, default):
    """cls.method, or a function of the config giving `default` for a registered class that
    does not define it (the optional parts of the encoder and decoder protocols)."""
    return getattr(cls, method, lambda c: default)


def _registered(registry: dict, kind: str, name: str):
    """registry[name]; ValueError naming the choices for an unknown name."""
    if name not in registry:
        raise ValueError(f"Unknown {kind} {name!r}; choose one of {sorted(registry)}.")
    return registry[name]


def config_conflict(c: ml_collections.ConfigDict) -> str | None:
    """The first rule between model config c's fields that it breaks (a message), or None.

    Asked of the classes c names, so it holds no names: the decoder checks its attention's
    query size against the encoder's output size (e.g. dot-like attentions need them equal).
    """
    # An unbound module is only its fields: building it just reads the output size.
    encoder_class = _registered(ENCODERS, "encoder", c.encoder)
    decoder_class = _registered(DECODERS, "decoder", c.decoder)
    why = _optional(encoder_class, "config_conflict", None)(c)
    if not why:
        key_dim = encoder_class.from_config(c, vocab_size=1).output_dim
        why = decoder_class.config_conflict(c, key_dim)
    if not why and c.share_embeddings:
        why = _sharing_conflict(c, encoder_class, decoder_class)
    return f"config.model: {why}" if why else None


def _sharing_conflict(c: ml_collections.ConfigDict, encoder_class, decoder_class) -> str | None:
    """Why model config c's encoder and decoder cannot share one embedding table
    (share_embeddings): a class without `embedding_width`, or tables of two widths."""
    widths = {}
    for part, cls in (("encoder", encoder_class), ("decoder", decoder_class)):
        width = _optional(cls, "embedding_width", 0)(c)
        if not width:
            return f"share_embeddings: the {part} {cls.__name__} has no table to share."
        widths[part] = width
    if widths["encoder"] != widths["decoder"]:
        return (
            f"share_embeddings needs one table width, but the {c.encoder} encoder's is "
            f"{widths['encoder']} and the {c.decoder} decoder's {widths['decoder']} (an RNN "
            "part's is model.embed_dim, a Transformer's model.hidden): set them equal."
        )
    return None


def position_limits(c: ml_collections.ConfigDict) -> list[tuple[str, int, str]]:
    """(side, most positions, the config field that sets it) of each fixed limit of model
    config c's model on source or target positions (EOS included): a learned positional
    table (model.max_positions), location attention (model.attention_max_length)."""
    encoder = _registered(ENCODERS, "encoder", c.encoder)
    decoder = _registered(DECODERS, "decoder", c.decoder)
    limits = [
        ("source", _optional(encoder, "source_positions", 0)(c), "model.max_positions"),
        ("target", _optional(decoder, "target_positions", 0)(c), "model.max_positions"),
    ]
    if getattr(decoder, "needs_attention", False):
        limits.append(("source", attention_source_positions(c), "model.attention_max_length"))
    return [x for x in limits if x[1]]


def source_positions(c: ml_collections.ConfigDict) -> int:
    """Source positions (EOS included) model config c's model can read; 0 = any."""
    return min((n for side, n, _ in position_limits(c) if side == "source"), default=0)


def target_positions(c: ml_collections.ConfigDict) -> int:
    """Decoding steps model config c's decoder can take; 0 = any (a learned positional table
    limits the Transformer's)."""
    return min((n for side, n, _ in position_limits(c) if side == "target"), default=0)


def self_attention(c: ml_collections.ConfigDict) -> dict[str, bool]:
    """{'encoder': bool, 'decoder': bool}: which parts of model config c's model have
    self-attention layers (Transformer parts: `AttentionViews.encoder_self`, `decoder_self`
    are given), asked of the classes it names."""
    return {
        "encoder": getattr(_registered(ENCODERS, "encoder", c.encoder), "self_attention", False),
        "decoder": getattr(_registered(DECODERS, "decoder", c.decoder), "self_attention", False),
    }


def build_model(
    c: ml_collections.ConfigDict, src_vocab_size: int, tgt_vocab_size: int, bos_id: int
) -> Seq2Seq:
    """Builds a Seq2Seq from a model config: the encoder and decoder classes it names
    (`ENCODERS`, `DECODERS`) build themselves from it, the decoder its attention too.

    Args:
        c: A model config (see `jaxattn.config.default_model_config`).
        src_vocab_size: Source vocabulary size.
        tgt_vocab_size: Target vocabulary size (the logits' last axis).
        bos_id: The decoder's first input id.

    Returns:
        The `Seq2Seq` module (initialise it with ``model.init(key, src, src_len, tgt)``).

    With c.share_embeddings the encoder's embedding table is the decoder's: one parameter,
    params['encoder']['embedding']['embedding'] [V, width], which needs one vocabulary.

    Raises:
        ValueError: For an unknown encoder, decoder or attention, sizes that cannot match, or
            two vocabulary sizes with share_embeddings.
    """
    encoder_class = _registered(ENCODERS, "encoder", c.encoder)
    encoder = encoder_class.from_config(c, src_vocab_size)
    decoder = _registered(DECODERS, "decoder", c.decoder).from_config(
        c, tgt_vocab_size, encoder.output_dim
    )
    if c.share_embeddings:
        if src_vocab_size != tgt_vocab_size:
            raise ValueError(
                f"share_embeddings needs one vocabulary for both sides, but the source has "
                f"{src_vocab_size} ids and the target {tgt_vocab_size} (use data.sp_joint)."
            )
        # One unbound module in both: Flax adopts it once (in the encoder, the first field
        # of Seq2Seq) and the decoder reads the same parameter, ['encoder']['embedding'].
        table = nn.Embed(src_vocab_size, encoder_class.embedding_width(c))
        encoder, decoder = encoder.clone(embedding=table), decoder.clone(embedding=table)
    return Seq2Seq(
        encoder=encoder,
        decoder=decoder,
        bos_id=bos_id,
        mask_attention=c.mask_attention,
        encoder_lengths=c.encoder_lengths,
    )


def describe(c: ml_collections.ConfigDict) -> str:
    """A short name of model config c's architecture, for tables: 'gru bahdanau/additive' for
    an RNN model (the decoder and its attention), 'transformer 3+3x256/4h' for a Transformer,
    'transformer 3x256/4h -> gru luong/general' for a mixed one."""
    tf = f"{c.hidden}/{c.heads}h"
    if c.encoder == c.decoder == "transformer":
        return f"transformer {c.encoder_layers}+{c.decoder_layers}x{tf}"
    if c.decoder == "transformer":
        decoder = f"transformer {c.decoder_layers}x{tf}"
    else:
        decoder = f"{c.cell} {c.decoder}" + ("" if c.decoder == "plain" else f"/{c.attention}")
    if c.encoder == "transformer":
        return f"transformer {c.encoder_layers}x{tf} -> {decoder}"
    return decoder if c.decoder != "transformer" else f"{c.cell} -> {decoder}"
