"""Tests for jaxattn.model.transformer: cached step-by-step decoding against the teacher-forced
parallel pass, nn.scan against the unrolled stack, beam and greedy search with the cache
against a decoder that recomputes its prefix, sinusoidal encoding against d2l's formula,
multi-head attention's weights and masks, mixed RNN/Transformer models, config rules, the
learned table's limits, scheduled sampling and jax.export (torch parity: test_transformer_parity).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxattn import search
from jaxattn.config import default_config, default_model_config, validate
from jaxattn.errors import ConfigError
from jaxattn.model.seq2seq import Seq2Seq, build_model
from jaxattn.model.transformer import MultiHeadAttention, sinusoidal_encoding
from jaxattn.search.options import DecodeOptions

SRC_V, TGT_V, BOS, EOS = 13, 11, 1, 2
B, S, T = 3, 6, 5
LENGTHS = np.array([6, 3, 1], np.int32)


@pytest.fixture(autouse=True)
def _full_precision():
    with jax.default_matmul_precision("highest"):  # no TF32 on GPUs
        yield


def small_config(**overrides):
    """A two-layer Transformer of width 8 (2 heads), or the mix `overrides` names."""
    c = default_model_config()
    c.encoder = c.decoder = "transformer"
    c.hidden, c.embed_dim, c.heads, c.ff_dim = 8, 6, 2, 16
    c.encoder_layers = c.decoder_layers = 2
    c.max_positions = 16
    for key, value in overrides.items():
        setattr(c, key, value)
    return c


def make_src(seed=0, width=S, lengths=LENGTHS):
    """Random ids at real positions, random junk on the padding (the model must not read it)."""
    rng = np.random.default_rng(seed)
    src = rng.integers(3, SRC_V, size=(len(lengths), width)).astype(np.int32)
    junk = rng.integers(0, SRC_V, size=src.shape).astype(np.int32)
    return jnp.asarray(np.where(np.arange(width)[None] < lengths[:, None], src, junk))


def make_targets(seed=0, steps=T):
    return jnp.asarray(np.random.default_rng(seed).integers(3, TGT_V, size=(B, steps)), jnp.int32)


def build(c, random_init, seed=0, src=None, targets=None):
    """(model, random variables) of model config c."""
    model = build_model(c, SRC_V, TGT_V, BOS)
    src = make_src() if src is None else src
    targets = make_targets() if targets is None else targets
    return model, random_init(model, src, jnp.asarray(LENGTHS), targets, seed=seed)


def parallel(model, variables, src, lengths, targets, sown=False):
    """The teacher-forced pass: (logits [B, T, V], weights [B, T, S]) (, the sown weights)."""

    def run(v, s, n, y):
        out, inter = model.apply(v, s, n, y, mutable="intermediates")
        return (*out, inter["intermediates"]) if sown else out

    return jax.jit(run)(variables, src, lengths, targets)


def stepwise(model, variables, src, lengths, targets, steps=None, t_array=False):
    """`encode`, `init_state(memory, steps)` and `decode_step` over the gold prefix (in a
    lax.scan): (logits [B, T, V], weights [B, T, S]); t a scalar, or a [B] array (t_array)."""
    batch, n = targets.shape

    def run(v, src, lengths, targets):
        memory = model.apply(v, src, lengths, method="encode")
        state = model.apply(v, memory, steps or n, method="init_state")
        inputs = jnp.concatenate([jnp.full((batch, 1), BOS, jnp.int32), targets[:, :-1]], 1)

        def body(state, xs):
            prev, t = xs
            t = jnp.full((batch,), t, jnp.int32) if t_array else t
            state, logits, weights = model.apply(v, memory, state, prev, t, method="decode_step")
            return state, (logits, weights)

        _, (logits, weights) = jax.lax.scan(body, state, (inputs.T, jnp.arange(n)))
        return logits.swapaxes(0, 1), weights.swapaxes(0, 1)

    return jax.jit(run)(variables, src, lengths, targets)


def on_padding(shape):
    """[B, T, S] bool: True on the source's padding (LENGTHS)."""
    return np.broadcast_to(np.arange(shape[-1])[None, None] >= LENGTHS[:, None, None], shape)


def close(actual, expected, atol=1e-5):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=0, atol=atol)


# ---------------------------------------------------------------------------------------------
# the cache: step by step = the parallel pass
# ---------------------------------------------------------------------------------------------


def cross_weights(sown, layer, num_layers):
    """The decoder's sown cross-attention weights of `layer` [B, h, T, S] (unrolled or
    scanned: then stacked on a leading layer axis)."""
    decoder = sown["decoder"]
    if "layers" in decoder:
        stacked = decoder["layers"]["cross_attn"]["weights"][0]  # [L, B, h, T, S]
        assert stacked.shape[0] == num_layers
        return stacked[layer]
    return decoder[f"layer_{layer % num_layers}"]["cross_attn"]["weights"][0]


@pytest.mark.parametrize(
    "norm_first, positional, scan_layers, tie, steps, t_array, alignment",
    [
        (False, "sinusoidal", False, False, T, False, (-1, -1)),
        (True, "learned", False, True, T + 3, True, (0, 1)),
        (False, "learned", True, False, T, True, (0, -1)),
        (True, "sinusoidal", True, True, T + 2, False, (-1, 0)),
    ],
)
def test_steps_match_the_parallel_pass(
    random_init, norm_first, positional, scan_layers, tie, steps, t_array, alignment
):
    """Cached steps (a cache of `steps` >= T positions; t a scalar or [B]) give the parallel
    pass's logits and alignments, on a padded batch; the alignment is the chosen layer's
    head (or heads' mean) of the cross-attention."""
    c = small_config(
        norm_first=norm_first,
        positional=positional,
        scan_layers=scan_layers,
        tie_embeddings=tie,
        alignment_layer=alignment[0],
        alignment_head=alignment[1],
    )
    model, v = build(c, random_init)
    params = v["params"]
    assert ("final_norm" in params["decoder"]) == norm_first
    assert ("final_norm" in params["encoder"]) == norm_first
    assert ("out" in params["decoder"]) != tie
    assert ("position" in params["decoder"]["embed"]) == (positional == "learned")
    assert ("layers" in params["decoder"]) == scan_layers
    src, lengths, targets = make_src(), jnp.asarray(LENGTHS), make_targets()
    logits, weights, sown = parallel(model, v, src, lengths, targets, sown=True)
    assert logits.shape == (B, T, TGT_V) and weights.shape == (B, T, S)
    step_logits, step_weights = stepwise(model, v, src, lengths, targets, steps, t_array)
    close(step_logits, logits)
    close(step_weights, weights)
    # padding gets no alignment; each step's alignment is a distribution over the real source
    assert not np.any(np.asarray(weights)[on_padding(weights.shape)])
    close(weights.sum(-1), np.ones((B, T)))
    cross = cross_weights(sown, alignment[0], c.decoder_layers)  # [B, h, T, S]
    close(weights, cross.mean(1) if alignment[1] < 0 else cross[:, alignment[1]], atol=1e-7)
    other = cross_weights(sown, alignment[0] + 1, c.decoder_layers)  # another layer
    assert float(jnp.abs(other - cross).max()) > 1e-3


# ---------------------------------------------------------------------------------------------
# nn.scan = the unrolled stack
# ---------------------------------------------------------------------------------------------


def stack_layers(tree, encoder_layers, decoder_layers):
    """Unrolled params (layer_i) -> scanned ones (layers, a leading layer axis)."""
    out = {}
    for part, n in (("encoder", encoder_layers), ("decoder", decoder_layers)):
        p = dict(tree[part])
        layers = [p.pop(f"layer_{i}") for i in range(n)]
        p["layers"] = jax.tree.map(lambda *a: jnp.stack(a), *layers)
        out[part] = p
    return out


def test_scan_layers_equals_the_unrolled_stack(random_init, norm_first=True):
    c = small_config(norm_first=norm_first, decoder_layers=3)
    unrolled, v = build(c, random_init)
    scanned = build_model(small_config(norm_first=norm_first, decoder_layers=3, scan_layers=True),
                          SRC_V, TGT_V, BOS)  # fmt: skip
    src, lengths, targets = make_src(), jnp.asarray(LENGTHS), make_targets()
    params = v["params"]
    stacked = stack_layers(params, 2, 3)
    want = jax.eval_shape(scanned.init, jax.random.key(0), src, lengths, targets)["params"]
    assert jax.tree.structure(stacked) == jax.tree.structure(want)
    assert jax.tree.map(jnp.shape, stacked) == jax.tree.map(lambda s: s.shape, want)

    def loss(model):
        def f(p):
            logits, weights = model.apply({"params": p}, src, lengths, targets)
            logp = jax.nn.log_softmax(logits)
            nll = -jnp.take_along_axis(logp, targets[..., None], -1).mean()
            return nll + (weights**2).sum(), logits

        return jax.jit(jax.value_and_grad(f, has_aux=True))

    (l1, logits1), g1 = loss(unrolled)(params)
    (l2, logits2), g2 = loss(scanned)(stacked)
    close(logits2, logits1, atol=1e-6)
    close(l2, l1, atol=1e-6)
    jax.tree.map(lambda a, b: close(b, a, atol=1e-6), stack_layers(g1, 2, 3), g2)
    assert float(jnp.abs(g2["decoder"]["layers"]["cross_attn"]["key"]["kernel"]).max()) > 0


# ---------------------------------------------------------------------------------------------
# search with the cache = search recomputing the prefix
# ---------------------------------------------------------------------------------------------


class Recomputing(Seq2Seq):
    """The reference decoder: no cache; its state is the step inputs so far [B, T] (written
    at t) and each step runs the parallel pass over the whole prefix."""

    def init_state(self, memory, steps=None):
        return jnp.zeros((memory.keys.shape[0], steps), jnp.int32)  # [B, T]

    def decode_step(self, memory, state, prev_tokens, t, *, train=False):
        batch, steps = state.shape
        t = jnp.broadcast_to(jnp.asarray(t, jnp.int32), (batch,))  # [B]
        state = jnp.where(jnp.arange(steps) == t[:, None], prev_tokens[:, None], state)
        # the parallel pass feeds [BOS, targets[:, :-1]]: state[:, 0] is BOS
        targets = jnp.concatenate([state[:, 1:], state[:, :1]], axis=1)
        logits, weights, _ = self.decoder(memory, targets, bos_id=self.bos_id, train=train)

        def at_t(x):  # [B, T, ...] -> [B, ...]
            return jnp.take_along_axis(x, t.reshape(-1, 1, *([1] * (x.ndim - 2))), 1)[:, 0]

        return state, at_t(logits), at_t(weights)


def recomputing(model):
    fields = ("encoder", "decoder", "bos_id", "mask_attention", "encoder_lengths")
    return Recomputing(**{f: getattr(model, f) for f in fields})


def test_search_with_the_cache_equals_recomputing_the_prefix(random_init):
    """Beam search (its cache reordered each step) and greedy search decode the same tokens,
    scores and alignments as with a decoder that recomputes every prefix in full."""
    c = small_config(norm_first=True, tie_embeddings=True)
    model, v = build(c, random_init, seed=3)
    reference = recomputing(build_model(c, SRC_V, TGT_V, BOS))
    src, lengths = make_src(seed=4), jnp.asarray(LENGTHS)
    max_len = 7
    for options in (DecodeOptions(method="beam", beam_size=3), DecodeOptions(method="greedy")):
        ours, theirs = (
            search.decode(m, v, src, lengths, options=options, eos_id=EOS, max_len=max_len)
            for m in (model, reference)
        )
        np.testing.assert_array_equal(np.asarray(ours.tokens), np.asarray(theirs.tokens))
        np.testing.assert_array_equal(np.asarray(ours.lengths), np.asarray(theirs.lengths))
        close(ours.scores, theirs.scores)
        close(ours.weights, theirs.weights)
        assert ours.tokens.shape[-1] == max_len


# ---------------------------------------------------------------------------------------------
# the parts: positional encoding, multi-head attention
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [8, 32])
def test_sinusoidal_encoding_is_d2ls(width):
    steps = 50
    p = np.zeros((steps, width), np.float64)  # d2l 11.6's PositionalEncoding, in numpy
    x = np.arange(steps)[:, None] / np.power(10000, np.arange(0, width, 2) / width)
    p[:, 0::2], p[:, 1::2] = np.sin(x), np.cos(x)
    close(sinusoidal_encoding(jnp.arange(steps), width), p)
    batched = sinusoidal_encoding(jnp.asarray([[3, 0], [49, 7]]), width)  # any leading shape
    close(batched, p[[[3, 0], [49, 7]]])


def test_multi_head_attention_weights_and_masks(random_init):
    heads, width, tq, sk = 2, 8, 4, 5
    mha = MultiHeadAttention(heads, width, dropout=0.5)
    rng = np.random.default_rng(0)
    q = jnp.asarray(rng.standard_normal((B, tq, width)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((B, sk, 6)), jnp.float32)  # keys of another width
    v = random_init(mha, q, k, scale=0.5)
    assert v["params"]["key"]["kernel"].shape == (6, width)
    context, weights = mha.apply(v, q, k)
    assert context.shape == (B, tq, width) and weights.shape == (B, heads, tq, sk)
    close(weights.sum(-1), np.ones((B, heads, tq)))
    assert float(jnp.abs(weights[:, 0] - weights[:, 1]).max()) > 1e-3  # two different heads

    key_len = np.array([5, 2, 1])
    key_mask = jnp.arange(sk)[None] < key_len[:, None]  # [B, S] key padding
    _, masked = mha.apply(v, q, k, mask=key_mask)
    w = np.asarray(masked)
    assert np.all(w[np.broadcast_to(~np.asarray(key_mask)[:, None, None], w.shape)] == 0.0)
    close(w.sum(-1), np.ones((B, heads, tq)))

    x = q  # self-attention under a causal mask [B, T, T]
    causal = jnp.broadcast_to(jnp.tril(jnp.ones((tq, tq), bool)), (B, tq, tq))
    vs = random_init(mha, x, x, scale=0.5)
    _, w_self = mha.apply(vs, x, x, mask=causal)
    upper = np.triu(np.ones((tq, tq), bool), 1)
    assert np.all(np.asarray(w_self)[..., upper] == 0.0)
    close(w_self.sum(-1), np.ones((B, heads, tq)))
    assert np.all(np.asarray(w_self)[..., ~upper] > 0)
    # a later position does not change an earlier one's output under the causal mask
    x2 = x.at[:, -1].set(7.0)
    c1, _ = mha.apply(vs, x, x, mask=causal)
    c2, _ = mha.apply(vs, x2, x2, mask=causal)
    close(c2[:, :-1], c1[:, :-1], atol=1e-6)

    # dropout on the weights: only with train=True (the returned weights are before dropout)
    eval_ctx, _ = mha.apply(v, q, k, mask=key_mask, rngs={"dropout": jax.random.key(1)})
    ctx, _ = mha.apply(v, q, k, mask=key_mask)
    close(eval_ctx, ctx, atol=0)
    train_ctx, train_w = mha.apply(
        v, q, k, mask=key_mask, train=True, rngs={"dropout": jax.random.key(1)}
    )
    close(train_w, masked, atol=1e-7)
    assert float(jnp.abs(train_ctx - ctx).max()) > 1e-3
    with pytest.raises(ValueError, match="heads \\(3\\) must divide the width \\(8\\)"):
        MultiHeadAttention(3, 8).init(jax.random.key(0), q, k)


# ---------------------------------------------------------------------------------------------
# mixed models
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"decoder": "bahdanau"},
        {"decoder": "luong", "attention": "general"},
        {"encoder": "rnn", "bidirectional": True, "cell": "lstm"},
    ],
    ids=["transformer-bahdanau", "transformer-luong", "birnn-transformer"],
)
def test_mixed_models(random_init, overrides):
    c = small_config(**overrides)
    validate_model(c)
    model, v = build(c, random_init)
    src, lengths, targets = make_src(), jnp.asarray(LENGTHS), make_targets()
    logits, weights = parallel(model, v, src, lengths, targets)
    assert logits.shape == (B, T, TGT_V) and weights.shape == (B, T, S)
    assert np.all(np.isfinite(np.asarray(logits)))
    close(weights.sum(-1), np.ones((B, T)))
    assert not np.any(np.asarray(weights)[on_padding(weights.shape)])
    r = search.decode(model, v, src, lengths, eos_id=EOS, max_len=6).top()
    assert r.tokens.shape == (B, 6) and np.all(np.asarray(r.lengths) >= 1)
    if c.decoder == "transformer":  # the cache over an RNN encoder's memory
        close(stepwise(model, v, src, lengths, targets)[0], logits)


def validate_model(c):
    config = default_config()
    config.model = c
    validate(config)


def test_transformer_encoder_padding_invariance(random_init):
    c = small_config(positional="learned", norm_first=True)
    model, v = build(c, random_init)
    lengths, targets = jnp.asarray(LENGTHS), make_targets()
    src = make_src()
    wider = jnp.concatenate([src, make_src(seed=5)[:, :4]], axis=1)  # 4 more junk columns

    @jax.jit
    def run(v, s):  # (memory, (logits, weights))
        return model.apply(v, s, lengths, method="encode"), model.apply(v, s, lengths, targets)

    (m1, (l1, w1)), (m2, (l2, w2)) = run(v, src), run(v, wider)
    real = np.arange(S)[None] < LENGTHS[:, None]
    close(np.asarray(m2.keys)[:, :S][real], np.asarray(m1.keys)[real], atol=1e-6)
    assert not np.any(np.asarray(m1.keys)[~real]) and not np.any(np.asarray(m2.keys)[:, S:])
    close(m2.finals[0][0], m1.finals[0][0], atol=1e-6)
    close(l2, l1, atol=1e-6)
    close(w2[..., :S], w1, atol=1e-6)
    assert not np.any(np.asarray(w2)[..., S:])
    # the outputs do depend on the real tokens
    changed = src.at[0, 0].set((src[0, 0] + 1) % SRC_V)
    assert float(jnp.abs(run(v, changed)[0].keys[0] - m1.keys[0]).max()) > 1e-3


# ---------------------------------------------------------------------------------------------
# config rules and the learned table's limits
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, says",
    [
        ({"heads": 3}, "heads \\(3\\) must divide hidden \\(8\\)"),
        ({"alignment_layer": 2}, "alignment_layer 2 is not a layer"),
        ({"alignment_layer": -3}, "config.model.alignment_layer=-3 must be >= -1"),
        ({"alignment_head": 2}, "alignment_head 2 is not one of the 2 heads"),
        ({"alignment_head": -2}, "config.model.alignment_head"),
        ({"decoder": "bahdanau", "tie_embeddings": True}, "tie_embeddings: the output layer"),
        ({"positional": "rotary"}, "config.model.positional"),
        ({"encoder": "transformer", "decoder": "luong", "heads": 5}, "heads \\(5\\)"),
    ],
)
def test_config_rules(overrides, says):
    validate_model(small_config())  # the base is valid
    with pytest.raises(ConfigError, match=says):
        validate_model(small_config(**overrides))


def test_learned_positions_limit_sources_and_steps(random_init):
    c = small_config(positional="learned", max_positions=5)
    src4, lengths = make_src(width=4, lengths=np.array([4, 3, 1])), jnp.asarray([4, 3, 1])
    model, v = build(c, random_init, src=src4, targets=make_targets(steps=4))
    assert v["params"]["encoder"]["embed"]["position"]["embedding"].shape == (5, 8)
    memory = model.apply(v, src4, lengths, method="encode")
    model.apply(v, memory, 5, method="init_state")  # 5 steps fit
    with pytest.raises(ValueError, match="max_positions"):
        model.apply(v, make_src(width=6), jnp.asarray(LENGTHS), method="encode")
    with pytest.raises(ValueError, match="max_positions"):
        model.apply(v, memory, 6, method="init_state")
    with pytest.raises(ValueError, match="max_positions"):
        model.apply(v, src4, lengths, make_targets(steps=6))
    with pytest.raises(ValueError, match="max_positions"):
        search.decode(model, v, src4, lengths, eos_id=EOS, max_len=6)
    with pytest.raises(ValueError, match="init_state\\(memory, steps\\)"):
        model.apply(v, memory, method="init_state")


# ---------------------------------------------------------------------------------------------
# scheduled sampling: the step loop with the cache
# ---------------------------------------------------------------------------------------------


def test_scheduled_sampling(random_init):
    c = small_config(norm_first=True, dropout=0.2)
    model, v = build(c, random_init, seed=6)
    src, lengths, targets = make_src(), jnp.asarray(LENGTHS), make_targets(steps=8)
    logits, _ = parallel(model, v, src, lengths, targets)
    key = jax.random.key(3)

    @jax.jit
    def sampled(v, ratio, dropout_key=None):  # a dropout key: train=True
        train = dict(train=True, rngs={"dropout": dropout_key}) if dropout_key is not None else {}
        return model.apply(v, src, lengths, targets, teacher_forcing_ratio=ratio, rng=key, **train)

    forced, _ = sampled(v, jnp.asarray(1.0))  # an array ratio: coins drawn, all heads
    close(forced, logits)
    mixed, _ = sampled(v, jnp.asarray(0.5))
    coins = np.asarray(jax.random.bernoulli(key, 0.5, targets.shape))
    prefix_gold = np.cumprod(coins[:, 1:], axis=1).astype(bool)  # inputs 1..t all gold
    prefix_gold = np.concatenate([np.ones((B, 1), bool), prefix_gold], axis=1)
    close(np.asarray(mixed)[prefix_gold], np.asarray(logits)[prefix_gold])
    assert not prefix_gold.all()  # some predictions were fed back, and changed the logits
    assert np.abs(np.asarray(mixed) - np.asarray(logits))[~prefix_gold].max() > 1e-3
    # training (the train step's path): dropout in the step loop differs from the eval pass
    train, _ = sampled(v, jnp.asarray(0.5), jax.random.key(9))
    assert np.all(np.isfinite(np.asarray(train)))
    assert np.abs(np.asarray(train) - np.asarray(mixed)).max() > 1e-3


# ---------------------------------------------------------------------------------------------
# jax.export (as tests/test_export.py, for a Transformer with learned positions)
# ---------------------------------------------------------------------------------------------

EXPORT_BEAM, EXPORT_MAX_SOURCE_LEN = 3, 6


@pytest.fixture(scope="module")
def transformer_export(tmp_path_factory, synthetic_config):
    """(export directory, Translator) of a tiny Transformer run (30 training steps)."""
    from jaxattn.inference import exported
    from jaxattn.inference.translator import Translator
    from jaxattn.training.loop import train_and_evaluate

    config = synthetic_config()
    m = config.model
    m.encoder = m.decoder = "transformer"
    m.hidden = m.embed_dim = 16
    m.heads, m.ff_dim, m.encoder_layers, m.decoder_layers = 2, 32, 1, 1
    m.positional, m.max_positions, m.norm_first = "learned", 64, True
    config.data.synthetic_sizes = (300, 20, 20)
    t = config.train
    t.num_train_steps, t.eval_every, t.checkpoint_every, t.progress_bar = 30, 30, 30, False
    run = str(tmp_path_factory.mktemp("transformer_run"))
    train_and_evaluate(config, run)
    out = str(tmp_path_factory.mktemp("transformer_exports") / "export")
    exported.export_workdir(run, out, beam_size=EXPORT_BEAM, max_source_len=EXPORT_MAX_SOURCE_LEN)
    return out, Translator.from_workdir(run, max_input_len=EXPORT_MAX_SOURCE_LEN)


@pytest.mark.slow  # trains a run
@pytest.mark.parametrize("beam_size", [1, EXPORT_BEAM])
def test_exported_transformer_translates_as_translator(transformer_export, beam_size):
    from jaxattn.inference import exported

    out, translator = transformer_export
    rng = np.random.default_rng(beam_size)
    symbols = [str(i) for i in range(12)]
    sentences = [" ".join(rng.choice(symbols, rng.integers(1, 6))) for _ in range(10)]
    sentences += ["", "1 zz 2"]  # empty, unknown
    loaded = exported.load(out)
    assert loaded.translator.config.model.decoder == "transformer"
    assert "encoder/embed/position/embedding" in np.load(f"{out}/params.npz").files
    ours = loaded.translate(sentences, beam_size=beam_size)
    theirs = translator.translate(sentences, beam_size=beam_size)
    for a, b in zip(ours, theirs, strict=True):
        assert (a.tokens, a.text, a.finished, a.input_tokens, a.unknown) == (
            b.tokens,
            b.text,
            b.finished,
            b.input_tokens,
            b.unknown,
        )
        np.testing.assert_allclose(a.score, b.score, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(a.weights, b.weights, atol=1e-5)
    assert any(t.tokens for t in theirs)  # something was decoded
