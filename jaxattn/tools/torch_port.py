"""Load the PyTorch tutorial's weights into jaxattn.

    params = convert_tutorial_state_dicts(encoder.state_dict(), decoder.state_dict())
    model = build_model(tutorial_config(128), src_vocab, tgt_vocab, bos_id=0)
    logits, weights = model.apply({"params": params}, src, None, targets)

Works with the tutorial's EncoderRNN, AttnDecoderRNN ('bahdanau'), DecoderRNN ('plain') and the
pre-2023 AttnDecoderRNN ('legacy'), and with GRU or LSTM, multi-layer and bidirectional torch
RNNs in the encoder. Values may be torch tensors or NumPy arrays; torch is never imported.
Layouts: torch Linear weight [out, in] -> Dense kernel [in, out]; RNN weight_ih_l{k} [G*H, in]
-> input_proj kernel, weight_hh_l{k} -> hidden_proj kernel (same gate order, separate biases);
`_reverse` weights -> the bwd_{k} layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ml_collections
import numpy as np

from jaxattn.config import default_model_config
from jaxattn.errors import StateDictError

DECODER_KINDS = ("bahdanau", "plain", "legacy")


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch.Tensor (duck-typed, so torch is not imported)
        x = x.detach().cpu().float().numpy()
    return np.asarray(x, dtype=np.float32)


class _Reader:
    """Takes tensors out of a state dict, checking shapes and tracking what was used."""

    def __init__(self, state_dict: Mapping[str, Any], what: str):
        self.sd, self.what, self.used = dict(state_dict), what, set()

    def shape(self, key: str) -> tuple[int, ...]:
        if key not in self.sd:
            raise StateDictError(f"{self.what} state dict: missing key {key!r}.")
        return tuple(self.sd[key].shape)

    def get(self, key: str, shape: tuple[int, ...], transpose: bool = False) -> np.ndarray:
        if key not in self.sd:
            raise StateDictError(
                f"{self.what} state dict: missing key {key!r} (expected shape {shape})."
            )
        value = _to_numpy(self.sd[key])
        if value.shape != tuple(shape):
            raise StateDictError(
                f"{self.what} state dict: {key!r} has shape {value.shape}, expected {shape}."
            )
        self.used.add(key)
        return value.T if transpose else value

    def linear(self, name: str, in_dim: int, out_dim: int) -> dict:
        """torch Linear(in_dim, out_dim) `name` -> Dense params."""
        return {
            "kernel": self.get(f"{name}.weight", (out_dim, in_dim), transpose=True),
            "bias": self.get(f"{name}.bias", (out_dim,)),
        }

    def finish(self) -> None:
        unexpected = sorted(set(self.sd) - self.used)
        if unexpected:
            raise StateDictError(f"{self.what} state dict: unexpected keys {unexpected}.")


def _rnn_name(r: _Reader) -> str:
    names = [k[: -len(".weight_hh_l0")] for k in r.sd if k.endswith(".weight_hh_l0")]
    if len(names) != 1:
        raise StateDictError(
            f"{r.what} state dict: expected exactly one RNN (a key '<name>.weight_hh_l0'), "
            f"found {names or 'none'}."
        )
    return names[0]


def _rnn(r: _Reader, input_size: int) -> dict:
    """The one torch GRU/LSTM in r -> {(layer, 'fwd'|'bwd'): cell params}."""
    p = _rnn_name(r)
    gates_hidden, hidden = r.shape(f"{p}.weight_hh_l0")
    if gates_hidden not in (3 * hidden, 4 * hidden):
        raise StateDictError(
            f"{r.what} state dict: {p}.weight_hh_l0 has shape {(gates_hidden, hidden)}; "
            f"expected (3*H, H) for a GRU or (4*H, H) for an LSTM."
        )
    num_layers = 1
    while f"{p}.weight_ih_l{num_layers}" in r.sd:
        num_layers += 1
    bidirectional = f"{p}.weight_ih_l0_reverse" in r.sd
    directions = (("", "fwd"), ("_reverse", "bwd")) if bidirectional else (("", "fwd"),)
    cells = {}
    for k in range(num_layers):
        in_dim = input_size if k == 0 else hidden * len(directions)
        for suffix, direction in directions:
            tail = f"_l{k}{suffix}"  # weight_ih_l1_reverse etc.
            cells[k, direction] = {
                "input_proj": {
                    "kernel": r.get(f"{p}.weight_ih{tail}", (gates_hidden, in_dim), transpose=True),
                    "bias": r.get(f"{p}.bias_ih{tail}", (gates_hidden,)),
                },
                "hidden_proj": {
                    "kernel": r.get(f"{p}.weight_hh{tail}", (gates_hidden, hidden), transpose=True),
                    "bias": r.get(f"{p}.bias_hh{tail}", (gates_hidden,)),
                },
            }
    return cells


def convert_encoder_state_dict(state_dict: Mapping[str, Any]) -> dict:
    """Converts a tutorial EncoderRNN state dict into `Encoder` params.

    Args:
        state_dict: ``embedding.weight`` [V, E] and one torch GRU/LSTM (any name, layers,
            directions); torch tensors or NumPy arrays.

    Returns:
        `Encoder` params (float32 NumPy arrays).

    Raises:
        StateDictError: On a missing or unexpected key or a wrong shape.
    """
    r = _Reader(state_dict, "encoder")
    vocab, embed_dim = r.shape("embedding.weight")
    params = {"embed": {"embedding": r.get("embedding.weight", (vocab, embed_dim))}}
    for (k, direction), cell in _rnn(r, embed_dim).items():
        params[f"{direction}_{k}"] = {"cell": cell}
    r.finish()
    return params


def convert_decoder_state_dict(state_dict: Mapping[str, Any], *, decoder: str = "bahdanau") -> dict:
    """Converts a tutorial decoder's state dict into jaxattn decoder params.

    Args:
        state_dict: The decoder's state dict (torch tensors or NumPy arrays).
        decoder: 'bahdanau' (AttnDecoderRNN -> BahdanauDecoder with AdditiveAttention),
            'plain' (DecoderRNN -> PlainDecoder) or 'legacy' (the pre-2023 AttnDecoderRNN ->
            LegacyDecoder with LocationAttention).

    Returns:
        The decoder's params (float32 NumPy arrays).

    Raises:
        StateDictError: On a missing or unexpected key or a wrong shape.
    """
    if decoder not in DECODER_KINDS:
        raise ValueError(f"Unknown decoder {decoder!r}; choose one of {DECODER_KINDS}.")
    r = _Reader(state_dict, f"{decoder} decoder")
    vocab, embed_dim = r.shape("embedding.weight")
    params = {"embed": {"embedding": r.get("embedding.weight", (vocab, embed_dim))}}
    hidden = r.shape(f"{_rnn_name(r)}.weight_hh_l0")[1]
    if decoder == "bahdanau":
        attn_dim, key_dim = r.shape("attention.Ua.weight")
        params["attention"] = {
            "query_proj": r.linear("attention.Wa", hidden, attn_dim),
            "key_proj": r.linear("attention.Ua", key_dim, attn_dim),
            "energy": r.linear("attention.Va", attn_dim, 1),
        }
        rnn_input = embed_dim + key_dim
    elif decoder == "legacy":
        max_length = r.shape("attn.weight")[0]
        key_dim = r.shape("attn_combine.weight")[1] - embed_dim
        params["attention"] = {"attn": r.linear("attn", embed_dim + hidden, max_length)}
        params["attn_combine"] = r.linear("attn_combine", embed_dim + key_dim, hidden)
        rnn_input = hidden
    else:
        rnn_input = embed_dim
    for (k, direction), cell in _rnn(r, rnn_input).items():
        if direction == "bwd":
            raise StateDictError(f"{r.what} state dict: a decoder RNN cannot be bidirectional.")
        params[f"rnn_{k}"] = cell
    params["out"] = r.linear("out", hidden, vocab)
    r.finish()
    return params


def convert_tutorial_state_dicts(
    encoder_sd: Mapping[str, Any],
    decoder_sd: Mapping[str, Any],
    *,
    decoder: str = "bahdanau",
    like: Mapping | None = None,
) -> dict:
    """Converts the tutorial's two state dicts into `Seq2Seq` params.

    Args:
        encoder_sd: ``encoder.state_dict()`` of the tutorial's EncoderRNN.
        decoder_sd: ``decoder.state_dict()`` of its decoder.
        decoder: The decoder kind, see `convert_decoder_state_dict`.
        like: Optional params (or variables) of the target model, e.g. from `model.init` or
            `jax.eval_shape`; the result is checked against its tree and shapes.

    Returns:
        {'encoder': ..., 'decoder': ...} (float32 NumPy arrays; apply with
        ``{'params': params}``).

    Raises:
        StateDictError: On a key or shape that does not fit (naming the path).
    """
    params = {
        "encoder": convert_encoder_state_dict(encoder_sd),
        "decoder": convert_decoder_state_dict(decoder_sd, decoder=decoder),
    }
    if like is not None:
        check_params_like(params, like)
    return params


def _flatten(tree: Mapping, prefix: str = "") -> dict[str, tuple[int, ...]]:
    flat = {}
    for key, value in tree.items():
        path = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(_flatten(value, path))
        else:
            flat[path] = tuple(np.shape(value))  # also ShapeDtypeStructs (jax.eval_shape)
    return flat


def check_params_like(params: Mapping, like: Mapping) -> None:
    """Raises StateDictError unless params has exactly like's tree and shapes."""
    like = like.get("params", like)  # variables or params
    got, want = _flatten(params), _flatten(like)
    missing = sorted(set(want) - set(got))
    if missing:
        raise StateDictError(
            "converted params lack " + ", ".join(f"{p} {want[p]}" for p in missing) + "."
        )
    extra = sorted(set(got) - set(want))
    if extra:
        raise StateDictError(f"converted params have paths the model lacks: {extra}.")
    for path in sorted(want):
        if got[path] != want[path]:
            raise StateDictError(f"converted {path} has shape {got[path]}, expected {want[path]}.")


def tutorial_config(
    hidden_size: int = 128, *, decoder: str = "bahdanau", max_length: int = 10
) -> ml_collections.ConfigDict:
    """A model config that builds the tutorial's model.

    Args:
        hidden_size: The tutorial's hidden_size (embedding = GRU size).
        decoder: 'bahdanau', 'plain' or 'legacy' (location attention).
        max_length: The legacy decoder's attention length (the tutorial's MAX_LENGTH).

    Returns:
        `default_model_config` with embed = hidden = hidden_size, no attention mask and an
        encoder that reads padding (pass src_len=None), as the tutorial.
    """
    if decoder not in DECODER_KINDS:
        raise ValueError(f"Unknown decoder {decoder!r}; choose one of {DECODER_KINDS}.")
    c = default_model_config()
    c.embed_dim = c.hidden = hidden_size
    c.decoder = decoder
    c.mask_attention = False
    c.encoder_lengths = False
    if decoder == "legacy":
        c.attention = "location"
        c.attention_max_length = max_length
    return c
