"""Parity with the PyTorch tutorial (benchmarks.torch_tutorial): the same weights, converted by
jaxattn.tools.torch_port, give the same log-probabilities, attention weights and hidden states
(float32,
atol 1e-6), teacher forced and greedy, and the same training loss, gradients and Adam step."""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxattn.errors import StateDictError
from jaxattn.model.encoders import Encoder
from jaxattn.model.seq2seq import build_model
from jaxattn.tools.torch_port import (
    convert_decoder_state_dict,
    convert_encoder_state_dict,
    convert_tutorial_state_dicts,
    tutorial_config,
)

torch = pytest.importorskip("torch")
from benchmarks import torch_tutorial as tt  # noqa: E402  (needs torch)

ATOL = 1e-6
V_SRC, V_TGT, H = 13, 11, 16
L = tt.MAX_LENGTH
# Four sentences as the tutorial's get_dataloader makes them: ids, EOS, zero padding.
SRC = tt.batch_ids([[2, 3, 4, 5, 6, 7, 8, 9, 10], [3, 4, 5, 6, 7], [8, 9], [12, 11, 10, 2]])
TGT = tt.batch_ids([[2, 3, 4, 5], [5, 6, 7, 8, 9, 10, 2, 3, 4], [10], [7, 7, 3]])
DECODERS = {
    "bahdanau": tt.AttnDecoderRNN,
    "plain": tt.DecoderRNN,
    "legacy": tt.LegacyAttnDecoderRNN,
}


@pytest.fixture(autouse=True)
def _full_precision():
    with jax.default_matmul_precision("highest"):  # no TF32 on GPUs
        yield


def close(actual, expected):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=0, atol=ATOL)


def torch_modules(kind, seed=0):
    torch.manual_seed(seed)
    return tt.EncoderRNN(V_SRC, H).eval(), DECODERS[kind](H, V_TGT).eval()  # eval: no dropout


def jax_run(model, params, src, tgt, greedy):
    """jaxattn's encoder outputs and final carries, log-probs [B, T, V], weights [B, T, S] and
    final decoder hidden [B, H] (through the decoder), and the public API's logits and weights."""

    def run(params, src, tgt):
        v = {"params": params}
        memory = model.apply(v, src, None, method="encode")
        force = jnp.zeros(tgt.shape, bool) if greedy else None
        targets = jnp.zeros_like(tgt) if greedy else tgt  # greedy: only the length counts
        logits, weights, state = model.apply(
            v,
            memory,
            targets,
            bos_id=tt.SOS_token,
            teacher_forcing=force,
            method=lambda m, mem, t, **kw: m.decoder(mem, t, **kw),
        )
        if greedy:
            api = model.apply(v, src, None, None, max_len=tgt.shape[1])
        else:
            api = model.apply(v, src, None, tgt)
        logp = jax.nn.log_softmax(logits)
        return memory.keys, memory.finals, logp, weights, state.rnn[0][0], api

    return jax.jit(run)(params, src, tgt)


@pytest.mark.parametrize("greedy", [False, True], ids=["teacher", "greedy"])
@pytest.mark.parametrize("kind", list(DECODERS))
def test_tutorial_model_parity(kind, greedy):
    encoder, decoder = torch_modules(kind)
    with torch.no_grad():
        enc_out, enc_hidden = encoder(SRC)
        logp, hidden, attn = decoder(enc_out, enc_hidden, None if greedy else TGT)
    model = build_model(tutorial_config(H, decoder=kind, max_length=L), V_SRC, V_TGT, tt.SOS_token)
    params = convert_tutorial_state_dicts(
        encoder.state_dict(),
        decoder.state_dict(),
        decoder=kind,
        like=jax.eval_shape(model.init, jax.random.key(0), SRC.numpy(), None, TGT.numpy()),
    )
    src, tgt = jnp.asarray(SRC.numpy(), jnp.int32), jnp.asarray(TGT.numpy(), jnp.int32)
    keys, finals, jax_logp, jax_attn, jax_hidden, (logits, weights) = jax_run(
        model, params, src, tgt, greedy
    )

    close(keys, enc_out)  # encoder outputs [B, S, H]
    close(finals[0][0], enc_hidden[0])  # encoder final hidden [B, H]
    close(jax_logp, logp)  # [B, MAX_LENGTH, V]
    close(jax_hidden, hidden[0])  # decoder final hidden [B, H]
    if kind == "plain":
        assert attn is None and not np.any(np.asarray(jax_attn))
    else:
        close(jax_attn, attn)  # [B, MAX_LENGTH, S]
    pred = np.asarray(jax_logp.argmax(-1))
    np.testing.assert_array_equal(pred, logp.argmax(-1).numpy())
    if greedy:  # the fed-back predictions are not the gold ids, so feedback was exercised
        assert not np.array_equal(pred[:, :-1], TGT.numpy()[:, :-1])
        np.testing.assert_array_equal(tt.evaluate(encoder, decoder, SRC)[0].numpy(), pred)
    close(jax.nn.log_softmax(logits), logp)  # the public API (Seq2Seq.__call__) agrees
    close(weights, jax_attn)


@pytest.mark.parametrize(
    "cell,layers,bidirectional", [("gru", 2, True), ("lstm", 2, True), ("lstm", 1, False)]
)
def test_encoder_parity(cell, layers, bidirectional):
    torch.manual_seed(1)
    encoder = tt.RNNEncoder(V_SRC, 12, H, cell, layers, bidirectional).eval()
    with torch.no_grad():
        outputs, finals = encoder(SRC)
    finals = finals if cell == "lstm" else (finals,)  # (h_n, c_n) or (h_n,)
    jax_encoder = Encoder(V_SRC, 12, H, cell=cell, num_layers=layers, bidirectional=bidirectional)
    params = convert_encoder_state_dict(encoder.state_dict())
    apply = jax.jit(lambda p, src: jax_encoder.apply({"params": p}, src, None))
    jax_outputs, jax_finals = apply(params, jnp.asarray(SRC.numpy(), jnp.int32))
    close(jax_outputs, outputs)  # [B, S, H * directions], [fwd; bwd]
    dirs = 2 if bidirectional else 1
    assert len(jax_finals) == layers
    for k, carry in enumerate(jax_finals):  # per layer: (h,) or (h, c), [fwd; bwd]
        assert len(carry) == len(finals)
        for jax_state, state in zip(carry, finals, strict=True):
            close(jax_state, torch.cat(list(state[k * dirs : (k + 1) * dirs]), dim=-1))


def test_training_step_parity():
    """One tutorial train step (two Adams, NLLLoss over all positions, padding included) against
    optax cross-entropy over all positions and optax.adam: loss, gradients, loss after the step."""
    encoder, decoder = torch_modules("bahdanau", seed=2)  # eval(): dropout off, grads still on
    params = convert_tutorial_state_dicts(
        {k: v.clone() for k, v in encoder.state_dict().items()},
        {k: v.clone() for k, v in decoder.state_dict().items()},
    )
    enc_opt, dec_opt = tt.make_optimizers(encoder, decoder, learning_rate=0.001)
    loss = tt.train_step(SRC, TGT, encoder, decoder, enc_opt, dec_opt, torch.nn.NLLLoss())
    torch_grads = convert_tutorial_state_dicts(
        {k: p.grad for k, p in encoder.named_parameters()},
        {k: p.grad for k, p in decoder.named_parameters()},
    )
    with torch.no_grad():
        logp_after, _, _ = decoder(*encoder(SRC), TGT)
        loss_after = torch.nn.NLLLoss()(logp_after.reshape(-1, V_TGT), TGT.reshape(-1)).item()

    model = build_model(tutorial_config(H), V_SRC, V_TGT, tt.SOS_token)
    src, tgt = jnp.asarray(SRC.numpy(), jnp.int32), jnp.asarray(TGT.numpy(), jnp.int32)

    def loss_fn(p):
        logits, _ = model.apply({"params": p}, src, None, tgt)
        return optax.softmax_cross_entropy_with_integer_labels(logits, tgt).mean()

    value_and_grad = jax.jit(jax.value_and_grad(loss_fn))
    jax_loss, grads = value_and_grad(params)
    opt = optax.adam(0.001)
    adam_step = jax.jit(lambda p, g: optax.apply_updates(p, opt.update(g, opt.init(p), p)[0]))
    jax_loss_after, _ = value_and_grad(adam_step(params, grads))

    close(jax_loss, loss)
    jax.tree_util.tree_map(close, grads, torch_grads)
    close(jax_loss_after, loss_after)
    assert loss_after < loss


def test_conversion_errors():
    encoder, decoder = torch_modules("bahdanau")
    enc_sd, dec_sd = encoder.state_dict(), decoder.state_dict()
    with pytest.raises(StateDictError, match=r"missing key 'attention.Va.bias' .*\(1,\)"):
        convert_decoder_state_dict({k: v for k, v in dec_sd.items() if k != "attention.Va.bias"})
    with pytest.raises(StateDictError, match=r"unexpected keys \['extra.weight'\]"):
        convert_encoder_state_dict({**enc_sd, "extra.weight": torch.zeros(2)})
    with pytest.raises(StateDictError, match=r"'out.weight' has shape \(3, 16\), expected"):
        convert_decoder_state_dict({**dec_sd, "out.weight": torch.zeros(3, H)})
    with pytest.raises(StateDictError, match="missing key 'attention.Ua.weight'"):
        convert_decoder_state_dict(torch_modules("plain")[1].state_dict(), decoder="bahdanau")
    with pytest.raises(StateDictError, match=r"'gru.weight_ih_l0' has shape \(48, 32\)"):
        convert_decoder_state_dict(dec_sd, decoder="plain")  # GRU input is E + H, not E
    model = build_model(tutorial_config(2 * H), V_SRC, V_TGT, tt.SOS_token)
    like = jax.eval_shape(model.init, jax.random.key(0), SRC.numpy(), None, TGT.numpy())
    with pytest.raises(StateDictError, match=r"decoder/attention/energy/kernel has shape"):
        convert_tutorial_state_dicts(enc_sd, dec_sd, like=like)
    # NumPy arrays work as well as tensors.
    params = convert_encoder_state_dict({k: v.numpy() for k, v in enc_sd.items()})
    assert params["fwd_0"]["cell"]["input_proj"]["kernel"].dtype == np.float32


@pytest.mark.slow
def test_torch_port_does_not_import_torch():
    code = "import sys, jaxattn.tools.torch_port; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
