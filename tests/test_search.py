"""Tests for jaxattn.search: greedy against a step-by-step loop and the model's own free-running
decoding, beam size 1 == greedy, beam >= greedy, exact n-best on a table model (length penalty
included), early stopping, padding invariance and jit caching."""

from __future__ import annotations

import functools
import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxattn.config import default_model_config
from jaxattn.model.seq2seq import build_model
from jaxattn.search import SearchResult, beam_search, core, greedy_search, length_penalty

BOS, EOS, PAD = 0, 1, -1  # target ids (PAD fills after EOS in most tests); the source pads with 0
V = 12  # both vocabularies; content ids 2..11
# One batch shape everywhere (batch, source length, max_len), so tests share compilations.
B, S, T = 8, 6, 10
LENGTHS = np.array([6, 3, 5, 1, 6, 2, 4, 6], np.int32)
KW = dict(eos_id=EOS, max_len=T, pad_id=PAD)


def make_config(**overrides):
    c = default_model_config()
    c.hidden, c.embed_dim, c.dropout = 16, 8, 0.0
    c.attention_max_length = S
    c.update(overrides)
    return c


def make_batch(seed=0, lengths=LENGTHS):
    rng = np.random.default_rng(seed)
    src = rng.integers(2, V, (len(lengths), S)).astype(np.int32)
    src[np.arange(S)[None, :] >= lengths[:, None]] = 0  # padding
    return src, lengths


def init_model(config, seed=0):
    """A model and random weights: normal / sqrt(fan-in), biases normal * 0.1. Drawn in NumPy
    from the parameter shapes, which is much quicker than compiling the initializers."""
    model = build_model(config, V, V, BOS)
    src, src_len = make_batch()
    shapes = jax.eval_shape(model.init, jax.random.key(0), src, src_len, np.ones((B, 3), np.int32))
    rng = np.random.default_rng(seed)

    def draw(x):
        scale = 1 / np.sqrt(x.shape[-2]) if x.ndim > 1 else 0.1
        return jnp.asarray(rng.normal(size=x.shape) * scale, x.dtype)

    return model, jax.tree.map(draw, shapes)


def np_log_softmax(x):
    x = np.asarray(x, np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def assert_same(a: SearchResult, b: SearchResult):
    """Exactly equal search results (every field, bit for bit)."""
    for name, x, y in zip(a._fields, a, b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=name)


def best_of(r: SearchResult) -> SearchResult:
    """Beam result [B, N, ...] -> its best hypotheses [B, ...], shaped like greedy's."""
    return r._replace(**{f: getattr(r, f)[:, 0] for f in r._fields if f != "steps"})


# ---------------------------------------------------------------------------------------------
# Greedy == a step-by-step loop == the model's own free-running decoding; beam 1 == greedy
# ---------------------------------------------------------------------------------------------

CONFIGS = {
    "bahdanau_gru": {},  # also the trained and the untrained model below
    "luong_local_m_lstm_feed_2layers": dict(
        decoder="luong", attention="local_m", cell="lstm", encoder_layers=2, decoder_layers=2
    ),
    "plain_bidir_dense": dict(decoder="plain", bidirectional=True, bridge="dense"),
    "legacy_location": dict(decoder="legacy", attention="location"),
}


# EOS logit nudges that make each random model end some sentences early, at varied lengths (an
# untrained model never emits EOS by itself), so that stopping at EOS is exercised.
EOS_NUDGE = {
    "bahdanau_gru": 0.45,  # all end, after 1 or 2 tokens: the loop stops at step 2
    "luong_local_m_lstm_feed_2layers": 0.09,  # most end at once, two run to max_len
    "plain_bidir_dense": 0.35,  # all end, after 1 to 6 tokens
    "legacy_location": 0.7,  # lengths 1, 3 and 10
}


def nudge_eos(variables, amount):
    """`variables` with `amount` added to the output layer's EOS bias."""
    params = variables["params"]
    out = params["decoder"]["out"]
    out = {**out, "bias": out["bias"].at[EOS].add(amount)}
    return {"params": {**params, "decoder": {**params["decoder"], "out": out}}}


def python_greedy(model, variables, src, src_len, max_len):
    """Reference: one jitted decode_step per step, argmax in NumPy, until all emitted EOS."""
    memory = jax.jit(functools.partial(model.apply, method="encode"))(variables, src, src_len)
    state = jax.jit(functools.partial(model.apply, method="init_state"))(variables, memory)
    step = jax.jit(functools.partial(model.apply, method="decode_step"))
    prev, done = np.full(len(src), BOS, np.int32), np.zeros(len(src), bool)
    tokens, scores, weights = [], np.zeros(len(src)), []
    for t in range(max_len):
        state, logits, w = step(variables, memory, state, jnp.asarray(prev), jnp.int32(t))
        tok = np.asarray(logits).argmax(-1).astype(np.int32)
        logp = np_log_softmax(logits)[np.arange(len(src)), tok]
        scores += np.where(done, 0.0, logp)
        tokens.append(np.where(done, EOS, tok))
        weights.append(np.where(done[:, None], 0.0, np.asarray(w)))
        done |= tok == EOS
        prev = tok
        if done.all():
            break
    return np.stack(tokens, 1), scores, np.stack(weights, 1), done


@pytest.mark.parametrize("name", list(CONFIGS))
def test_greedy_matches_step_loop_and_free_running_and_beam1(name):
    model, variables = init_model(make_config(**CONFIGS[name]))
    variables = nudge_eos(variables, EOS_NUDGE[name])
    src, src_len = make_batch(1)
    g = greedy_search(model, variables, src, src_len, eos_id=EOS, max_len=T)
    assert g.tokens.shape == (B, T) and g.weights.shape == (B, T, S) and g.scores.shape == (B,)
    # the nudge works: sentences end at EOS, at more than one length
    assert g.finished.any() and len(set(np.asarray(g.lengths).tolist())) > 1

    # a plain Python loop over decode_step
    tokens, scores, weights, done = python_greedy(model, variables, src, src_len, T)
    steps = tokens.shape[1]
    assert int(g.steps) == steps
    np.testing.assert_array_equal(g.tokens[:, :steps], tokens)
    assert (np.asarray(g.tokens[:, steps:]) == EOS).all()  # pad_id defaults to eos_id
    np.testing.assert_allclose(g.scores, scores, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g.weights[:, :steps], weights, atol=1e-6)
    np.testing.assert_array_equal(g.finished, done)
    np.testing.assert_array_equal(g.lengths, np.where(done, (tokens == EOS).argmax(1) + 1, T))

    # the model's own free-running (argmax) decoding, up to the first EOS
    free_run = jax.jit(functools.partial(model.apply, max_len=T))
    logits, free_w = free_run(variables, src, src_len, None)
    free = np.asarray(logits).argmax(-1)
    for b in range(B):
        n = int(g.lengths[b])
        np.testing.assert_array_equal(g.tokens[b, :n], free[b, :n])
        np.testing.assert_allclose(g.weights[b, :n], free_w[b, :n], atol=1e-6)
        np.testing.assert_allclose(g.weights[b, n:], 0.0)

    # beam size 1 is greedy, bit for bit (tokens, lengths, scores, weights, steps)
    b1 = beam_search(model, variables, src, src_len, eos_id=EOS, max_len=T, beam_size=1)
    assert b1.tokens.shape == (B, 1, T) and b1.weights.shape == (B, 1, T, S)
    assert_same(best_of(b1), g)


# ---------------------------------------------------------------------------------------------
# A briefly trained model (reverse the source) and an untrained one
# ---------------------------------------------------------------------------------------------


def reverse_batch(rng, batch):
    lengths = rng.integers(1, S + 1, batch).astype(np.int32)
    src, _ = make_batch(rng.integers(1 << 30), lengths)
    tgt = np.full((batch, S + 1), EOS, np.int32)
    for b, n in enumerate(lengths):
        tgt[b, :n] = src[b, :n][::-1]
    return src, lengths, tgt


@pytest.fixture(scope="module")
def trained():
    """The bahdanau_gru model after 300 Adam steps on reversing 1-6 random tokens (seconds)."""
    model, variables = init_model(make_config())
    opt = optax.adam(1e-2)
    opt_state = opt.init(variables)

    @jax.jit
    def train_step(variables, opt_state, src, src_len, tgt):
        def loss_fn(v):
            logits, _ = model.apply(v, src, src_len, tgt)
            mask = jnp.arange(tgt.shape[1])[None, :] <= src_len[:, None]  # up to EOS
            nll = optax.softmax_cross_entropy_with_integer_labels(logits, tgt)
            return (nll * mask).sum() / mask.sum()

        loss, grads = jax.value_and_grad(loss_fn)(variables)
        updates, opt_state = opt.update(grads, opt_state)
        return optax.apply_updates(variables, updates), opt_state, loss

    rng = np.random.default_rng(0)
    for _ in range(300):
        variables, opt_state, loss = train_step(variables, opt_state, *reverse_batch(rng, 64))
    assert loss < 0.2, f"the tiny model did not learn to reverse (loss {loss:.3f})"
    return model, variables


def check_beam_not_worse(model, variables, src, src_len, **kw):
    """Beam (k=4) vs greedy: finished beats cut off; among equals, the model log-prob is at
    least greedy's. Returns greedy's result and the beam's best."""
    g = greedy_search(model, variables, src, src_len, **KW)
    best = best_of(beam_search(model, variables, src, src_len, beam_size=4, **KW, **kw))
    assert (best.finished >= g.finished).all()
    same = np.asarray(best.finished == g.finished)
    assert (np.asarray(best.log_probs)[same] >= np.asarray(g.log_probs)[same] - 1e-5).all()
    return g, best


@pytest.mark.slow
def test_trained_model(trained):
    model, variables = trained
    rng = np.random.default_rng(1)
    correct = []
    for _ in range(4):  # 32 sentences
        src, src_len, tgt = reverse_batch(rng, B)
        g = greedy_search(model, variables, src, src_len, **KW)
        assert g.finished.all()
        # early stop: the loop ends when the longest sentence has emitted EOS, before max_len
        assert int(g.steps) == int(g.lengths.max()) < T
        correct += [
            np.array_equal(g.tokens[b, : n + 1], tgt[b, : n + 1]) for b, n in enumerate(src_len)
        ]

        for keep_greedy in (False, True):  # textbook beam search; with the greedy guarantee
            _, best = check_beam_not_worse(model, variables, src, src_len, keep_greedy=keep_greedy)
            assert best.finished.all()

        # n-best lists: sorted by score, distinct, ending in one EOS, padded with PAD,
        # attention rows of emitted tokens sum to 1 over the real source positions
        r = beam_search(model, variables, src, src_len, beam_size=4, n_best=4, alpha=0.6, **KW)
        assert int(r.steps) < T and r.finished.all()
        assert (np.diff(np.asarray(r.scores), axis=1) <= 0).all()
        np.testing.assert_allclose(
            r.scores, r.log_probs / length_penalty(r.lengths, 0.6), rtol=1e-6
        )
        emitted = np.arange(T) < np.asarray(r.lengths)[..., None]  # [B, N, T]
        assert (np.asarray(r.tokens)[~emitted] == PAD).all()
        w = np.asarray(r.weights)  # [B, N, T, S]
        np.testing.assert_allclose(w.sum(-1)[emitted], 1.0, atol=1e-5)
        assert (w[~emitted] == 0).all()
        for i in range(B):
            hyps = {tuple(r.tokens[i, j, : r.lengths[i, j]].tolist()) for j in range(4)}
            assert len(hyps) == 4
            assert all(h[-1] == EOS and EOS not in h[:-1] for h in hyps)
            assert (w[i, ..., src_len[i] :] == 0).all()
    assert np.mean(correct) > 0.8  # it did learn to reverse


def test_untrained_model_beam_not_worse():
    """Random weights, EOS logit nudged up so that sentences end at varied lengths: beam and
    greedy disagree often here. (Textbook beam search, keep_greedy=False, can end worse than
    greedy, see test_keep_greedy_fixes_a_search_error; the default keep_greedy=True cannot.)"""
    model, variables = init_model(make_config(), seed=1)
    variables = nudge_eos(variables, 0.35)
    rng, differs = np.random.default_rng(2), 0
    for seed in range(8):  # 64 sentences
        src, src_len = make_batch(seed, rng.integers(1, S + 1, B).astype(np.int32))
        g, best = check_beam_not_worse(model, variables, src, src_len)
        differs += (np.asarray(best.log_probs) != np.asarray(g.log_probs)).sum()
    assert differs >= 20


@pytest.mark.slow
def test_padding_invariance(trained):
    """Sentences decoded without padding (src_len None) == the same ones in a padded batch."""
    model, variables = trained
    src, src_len, _ = reverse_batch(np.random.default_rng(3), B)
    rows, n = [0, 3, 5], 3
    src[rows], src_len[rows] = 0, n
    src[rows, :n] = np.random.default_rng(4).integers(2, V, (3, n))
    for search in (greedy_search, functools.partial(beam_search, beam_size=4, n_best=4, alpha=0.6)):
        batch = search(model, variables, src, src_len, **KW)
        alone = search(model, variables, src[rows, :n], None, **KW)
        for a, i in enumerate(rows):
            np.testing.assert_array_equal(alone.tokens[a], batch.tokens[i])
            np.testing.assert_array_equal(alone.lengths[a], batch.lengths[i])
            np.testing.assert_allclose(alone.scores[a], batch.scores[i], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(alone.weights[a], batch.weights[i][..., :n], atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Exact n-best on a table model, length penalty
# ---------------------------------------------------------------------------------------------


class TableModel(nn.Module):
    """A toy model with the search interface: logits = table[t, prev] + bias[src[:, 0]], and
    attention weights softmax(att[t, prev]). Variables are given by hand (no init)."""

    bos_id: int = BOS

    def encode(self, src, src_len=None):
        return {"bias": self.get_variable("params", "bias")[src[:, 0]]}  # [B, V]

    def init_state(self, memory):
        return {"n": jnp.zeros(memory["bias"].shape[0], jnp.int32)}

    def decode_step(self, memory, state, prev, t):
        logits = self.get_variable("params", "table")[t, prev] + memory["bias"]  # [B, V]
        weights = jax.nn.softmax(self.get_variable("params", "att")[t, prev])  # [B, S]
        return {"n": state["n"] + 1}, logits, weights


def table_variables(table, src_steps, seed=0, bias_scale=1.0):
    steps, vocab, _ = table.shape
    rng = np.random.default_rng(seed)
    params = {
        "table": table,
        "bias": bias_scale * rng.normal(size=(vocab, vocab)),
        "att": rng.normal(size=(steps, vocab, src_steps)),
    }
    return {"params": {k: jnp.asarray(v, jnp.float32) for k, v in params.items()}}


def exhaustive(variables, src0, max_len, alpha, n_best):
    """Every hypothesis up to max_len, ranked as beam_search does: finished first, by score."""
    p = {k: np.asarray(v, np.float64) for k, v in variables["params"].items()}
    content = [v for v in range(p["table"].shape[1]) if v != EOS]
    hyps = []
    for n in range(max_len + 1):
        for prefix in itertools.product(content, repeat=n):
            seq = prefix + (EOS,) if n < max_len else prefix  # finished, or cut at max_len
            prev = (BOS,) + seq[:-1]
            logp = sum(
                np_log_softmax(p["table"][t, prev[t]] + p["bias"][src0])[seq[t]]
                for t in range(len(seq))
            )
            score = logp / ((5 + len(seq)) / 6) ** alpha
            hyps.append((seq[-1] == EOS, score, logp, seq))
    hyps.sort(key=lambda h: (h[0], h[1]), reverse=True)
    return hyps[:n_best], p["att"]


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.5])
def test_exact_nbest_on_table_model(alpha):
    """A beam wide enough to keep every candidate (3^3 * 4 at the last step) is exact search:
    the n-best list equals exhaustive enumeration, so early stopping lost nothing."""
    vocab, max_len, n_best = 4, 4, 6
    table = np.random.default_rng(1).normal(size=(max_len, vocab, vocab)) * 1.5
    table[:, :, EOS] += 0.5  # end often
    src = np.array([[0, 2, 2], [1, 3, 3], [2, 2, 2], [3, 0, 0]], np.int32)
    variables = table_variables(table, src.shape[1])
    for keep_greedy in (False, True):
        r = beam_search(
            TableModel(),
            variables,
            src,
            None,
            eos_id=EOS,
            max_len=max_len,
            beam_size=108,
            n_best=n_best,
            alpha=alpha,
            keep_greedy=keep_greedy,
        )
        for b in range(len(src)):
            ref, att = exhaustive(variables, src[b, 0], max_len, alpha, n_best)
            for j, (finished, score, logp, seq) in enumerate(ref):
                n = len(seq)
                assert bool(r.finished[b, j]) == finished and int(r.lengths[b, j]) == n
                np.testing.assert_array_equal(r.tokens[b, j, :n], seq)
                np.testing.assert_allclose(r.scores[b, j], score, rtol=1e-5)
                np.testing.assert_allclose(r.log_probs[b, j], logp, rtol=1e-5)
                w = np.exp(att[np.arange(n), (BOS,) + seq[:-1]])
                np.testing.assert_allclose(
                    r.weights[b, j, :n], w / w.sum(-1, keepdims=True), rtol=1e-5
                )


def test_length_penalty_changes_ranking():
    """P(EOS) = 0.4 first, else 2 2 2 EOS with total log-prob log(0.3 * 0.97^3) = -1.29: best
    unnormalized is [EOS] (-0.92), best with alpha = 1 is [2 2 2 EOS] (-1.29 / 1.5 = -0.86)."""
    vocab, max_len = 4, 4
    probs = np.full((max_len, vocab, vocab), 0.25)
    probs[0, BOS] = [0.15, 0.4, 0.3, 0.15]
    probs[1:3, 2] = [0.01, 0.01, 0.97, 0.01]
    probs[3, 2] = [0.01, 0.97, 0.01, 0.01]
    src = np.zeros((1, 3), np.int32)
    variables = table_variables(np.log(probs), src.shape[1], bias_scale=0.0)
    kw = dict(eos_id=EOS, max_len=max_len, beam_size=2, n_best=2)
    g = greedy_search(TableModel(), variables, src, eos_id=EOS, max_len=max_len)
    plain = beam_search(TableModel(), variables, src, **kw)
    penalized = beam_search(TableModel(), variables, src, alpha=1.0, **kw)
    assert g.tokens[0, : g.lengths[0]].tolist() == [EOS]
    assert plain.tokens[0, 0, : plain.lengths[0, 0]].tolist() == [EOS]
    assert penalized.tokens[0, 0, : penalized.lengths[0, 0]].tolist() == [2, 2, 2, EOS]
    assert penalized.tokens[0, 1, : penalized.lengths[0, 1]].tolist() == [EOS]
    np.testing.assert_allclose(penalized.log_probs[0, 0], np.log(0.3 * 0.97**3), rtol=1e-5)
    np.testing.assert_allclose(penalized.scores[0, 0], np.log(0.3 * 0.97**3) / 1.5, rtol=1e-5)


def test_decode_passes_search_options():
    """search.decode (validation, Translator, benchmarks) on the table of
    test_length_penalty_changes_ranking: the method, beam_size and alpha reach the search,
    greedy gets the n_best axis too, and `top()` drops it."""
    from jaxattn.search import decode

    probs = np.full((4, 4, 4), 0.25)
    probs[0, BOS] = [0.15, 0.4, 0.3, 0.15]
    probs[1:3, 2] = [0.01, 0.01, 0.97, 0.01]
    probs[3, 2] = [0.01, 0.97, 0.01, 0.01]
    variables = table_variables(np.log(probs), 3, bias_scale=0.0)
    src = np.zeros((3, 3), np.int32)
    kw = dict(eos_id=EOS, max_len=4)
    greedy = decode(TableModel(), variables, src, **kw)
    beam = decode(TableModel(), variables, src, method="beam", beam_size=2, alpha=1.0, **kw)
    two = decode(TableModel(), variables, src, method="beam", beam_size=2, n_best=2, **kw)
    assert greedy.tokens.shape == (3, 1, 4) and greedy.weights.shape == (3, 1, 4, 3)
    assert two.tokens.shape == (3, 2, 4) and two.scores.shape == (3, 2)
    g, b = greedy.top(), beam.top()
    assert g.tokens.shape == (3, 4) and b.lengths.shape == (3,)
    for i in range(3):
        assert g.tokens[i, : g.lengths[i]].tolist() == [EOS]
        assert b.tokens[i, : b.lengths[i]].tolist() == [2, 2, 2, EOS]
    np.testing.assert_allclose(g.scores, np.log(0.4), rtol=1e-5)
    np.testing.assert_allclose(b.scores, np.log(0.3 * 0.97**3) / 1.5, rtol=1e-5)
    ref = greedy_search(TableModel(), variables, src, **kw)
    for x, y in zip(g, ref, strict=True):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="method"):
        decode(TableModel(), variables, src, method="nucleus", **kw)
    with pytest.raises(ValueError, match="beam"):
        decode(TableModel(), variables, src, beam_size=2, **kw)


def test_length_penalty_does_not_stop_early():
    """With alpha = 3, [EOS] (0.4, score -0.92) is finished at step 0 and the alive [2] (0.22)
    scores only -1.51 / lp(2) = -0.95 at the next length, yet [2 2 2 EOS] ends at
    -1.61 / lp(4) = -0.48: early stopping must bound an alive hypothesis by its best score at
    any length to come (here the longest), not just the next one."""
    probs = np.full((4, 4, 4), 0.25)
    probs[0, BOS] = [0.2, 0.4, 0.22, 0.18]
    probs[1:3, 2] = [0.01, 0.01, 0.97, 0.01]
    probs[3, 2] = [0.01, 0.97, 0.01, 0.01]
    variables = table_variables(np.log(probs), 3, bias_scale=0.0)
    r = beam_search(
        TableModel(),
        variables,
        np.zeros((1, 3), np.int32),
        eos_id=EOS,
        max_len=4,
        beam_size=2,
        n_best=1,
        alpha=3.0,
    )  # n_best 1: the pool is full at once
    assert r.tokens[0, 0, : r.lengths[0, 0]].tolist() == [2, 2, 2, EOS]
    np.testing.assert_allclose(r.scores[0, 0], np.log(0.22 * 0.97**3) / 1.5**3, rtol=1e-5)


def test_finished_rank_before_cut_off_greedy():
    """Greedy never emits EOS here (token 2 at 0.9 each step), so its hypothesis is cut at
    max_len with a far better log-prob (-0.42) than any finished one; kept alongside the beam
    (keep_greedy), it still ranks after the finished hypotheses."""
    probs = np.tile(np.array([0.025, 0.05, 0.9, 0.025]), (4, 4, 1))
    variables = table_variables(np.log(probs), 3, bias_scale=0.0)
    src = np.zeros((1, 3), np.int32)
    g = greedy_search(TableModel(), variables, src, eos_id=EOS, max_len=4)
    assert not g.finished[0] and g.tokens[0].tolist() == [2, 2, 2, 2]
    r = beam_search(TableModel(), variables, src, eos_id=EOS, max_len=4, beam_size=2, n_best=2)
    assert r.finished[0].all()
    assert r.tokens[0, 0, : r.lengths[0, 0]].tolist() == [EOS]
    assert (np.asarray(r.log_probs[0]) < float(g.log_probs[0]) - 1).all()


def test_keep_greedy_fixes_a_search_error():
    """Greedy: 2 EOS, log(0.4 * 0.34) = -2.00. Beam (k=2) prefers the prefixes 3 2 and 3 3
    (-1.65, -1.89) to 2 EOS, which falls out of the beam; both then continue badly, so textbook
    beam search ends worse than greedy (3 2 EOS, -3.03). keep_greedy=True returns greedy's."""
    vocab, max_len = 4, 4
    probs = np.full((max_len, vocab, vocab), 0.25)
    probs[0, BOS] = [0.2, 0.05, 0.4, 0.35]
    probs[1, 2] = [0.22, 0.34, 0.22, 0.22]
    probs[1, 3] = [0.01, 0.01, 0.55, 0.43]
    src = np.zeros((1, 3), np.int32)
    variables = table_variables(np.log(probs), src.shape[1], bias_scale=0.0)
    kw = dict(eos_id=EOS, max_len=max_len, beam_size=2, n_best=2)
    g = greedy_search(TableModel(), variables, src, eos_id=EOS, max_len=max_len)
    textbook = beam_search(TableModel(), variables, src, keep_greedy=False, **kw)
    kept = beam_search(TableModel(), variables, src, **kw)
    assert g.tokens[0, : g.lengths[0]].tolist() == [2, EOS]
    assert textbook.tokens[0, 0, : textbook.lengths[0, 0]].tolist() == [3, 2, EOS]
    assert textbook.log_probs[0, 0] < g.log_probs[0] - 1.0
    assert_same(best_of(kept), g._replace(steps=kept.steps))  # all but the step count
    assert kept.tokens[0, 1, : kept.lengths[0, 1]].tolist() == [3, 2, EOS]  # then the beam's


# ---------------------------------------------------------------------------------------------
# Compilation and arguments
# ---------------------------------------------------------------------------------------------


def test_compiles_once_per_shape():
    """New inputs, weights or alpha of the same shapes reuse the compiled search."""
    from jaxattn.search import beam, greedy

    model, variables = init_model(make_config())
    _, other = init_model(make_config(), seed=7)
    greedy_search(model, variables, *make_batch(0), **KW)
    beam_search(model, variables, *make_batch(0), beam_size=4, **KW)
    sizes = greedy._greedy._cache_size(), beam._beam._cache_size()
    for i, v in enumerate([variables, other, variables]):
        src, src_len = make_batch(10 + i)
        greedy_search(model, v, src, src_len, **KW)
        beam_search(model, v, src, src_len, beam_size=4, alpha=0.3 * i, **KW)  # alpha is traced
    assert (greedy._greedy._cache_size(), beam._beam._cache_size()) == sizes


def test_rejects_bad_n_best():
    model, variables = init_model(make_config())
    src, src_len = make_batch()
    with pytest.raises(ValueError, match="n_best"):
        beam_search(model, variables, src, src_len, beam_size=2, n_best=3, **KW)


# ---------------------------------------------------------------------------------------------
# Decoding constraints: min_len and no_repeat_ngram (search.Constraints)
# ---------------------------------------------------------------------------------------------

REPEAT_V, REPEAT_T = 5, 5  # content ids 2, 3, 4: every sequence can be enumerated


def repeating_variables():
    """A table model whose greedy output repeats a bigram and stops early: 2 3 2 3 EOS, and
    likes 4 4 4 too (noise elsewhere, so that the constrained searches have real choices)."""
    table = np.random.default_rng(5).normal(size=(REPEAT_T, REPEAT_V, REPEAT_V))
    table[0, BOS, 2] += 4.0
    table[:, 2, 3] += 4.0
    table[:, 3, 2] += 3.0
    table[4, 3, EOS] += 8.0
    table[0, BOS, 4] += 2.0  # and 4 4 4 ...: a bigram repeated overlapping itself
    table[:, 4, 4] += 3.0
    table[:, :, EOS] += 0.5  # every length ends with a fair chance
    return table_variables(table, 3, seed=5, bias_scale=0.3)


def repeats(seq, n):
    """Whether the content tokens of seq (EOS dropped) hold one n-gram twice."""
    content = [x for x in seq if x != EOS]
    grams = [tuple(content[i : i + n]) for i in range(len(content) - n + 1)]
    return n > 0 and len(grams) != len(set(grams))


def python_constrained_greedy(variables, src0, max_len, min_len, n):
    """Reference: argmax of the table model's log-probs over the tokens the rules allow."""
    p = {k: np.asarray(v, np.float64) for k, v in variables["params"].items()}
    seq = []
    for t in range(max_len):
        logp = np_log_softmax(p["table"][t, ([BOS] + seq)[-1]] + p["bias"][src0])
        allowed = [
            w
            for w in range(len(logp))
            if not (w == EOS and t < min_len) and not (w != EOS and repeats(seq + [w], n))
        ]
        seq.append(max(allowed, key=lambda w: logp[w]))
        if seq[-1] == EOS:
            break
    return seq


def hypotheses(r: SearchResult):
    """Every hypothesis of a result [B, N, ...] as a tuple of its emitted tokens."""
    lengths = np.asarray(r.lengths)
    return [
        tuple(np.asarray(r.tokens)[b, j, : lengths[b, j]].tolist())
        for b in range(lengths.shape[0])
        for j in range(lengths.shape[1])
        if r.scores[b, j] > -np.inf
    ]


def test_repeating_table_model_unconstrained():
    """The toy model repeats the bigram (2, 3) and ends after 4 tokens, and an explicit 0 for
    both options is the search without them, bit for bit."""
    variables = repeating_variables()
    src = np.array([[0, 0, 0], [2, 0, 0]], np.int32)
    kw = dict(eos_id=EOS, max_len=REPEAT_T)
    g = greedy_search(TableModel(), variables, src, **kw)
    assert [g.tokens[b, : g.lengths[b]].tolist() for b in range(2)] == [[2, 3, 2, 3, EOS]] * 2
    assert_same(g, greedy_search(TableModel(), variables, src, min_len=0, no_repeat_ngram=0, **kw))
    kw.update(beam_size=4, n_best=3)
    assert_same(
        beam_search(TableModel(), variables, src, **kw),
        beam_search(TableModel(), variables, src, min_len=0, no_repeat_ngram=0, **kw),
    )


@pytest.mark.parametrize(
    "min_len, n, alpha", [(0, 2, 0.0), (0, 3, 1.0), (4, 0, 0.0), (2, 0, 1.0), (1, 2, 0.0)]
)
def test_constrained_search_is_exact_on_the_repeating_model(min_len, n, alpha):
    """Beam search wide enough to keep every candidate (3^4 * 5) == enumeration of every
    sequence the rules allow (no output shorter than min_len tokens, no n-gram twice),
    ranked by the model's own log-probabilities; greedy == argmax over the allowed tokens."""
    variables = repeating_variables()
    src = np.array([[0, 0, 0], [2, 0, 0], [4, 0, 0]], np.int32)
    kw = dict(eos_id=EOS, max_len=REPEAT_T, min_len=min_len, no_repeat_ngram=n)
    n_best = 8
    g = greedy_search(TableModel(), variables, src, **kw)
    r = beam_search(TableModel(), variables, src, beam_size=405, n_best=n_best, alpha=alpha, **kw)
    for b in range(len(src)):
        seq = python_constrained_greedy(variables, src[b, 0], REPEAT_T, min_len, n)
        assert g.tokens[b, : g.lengths[b]].tolist() == seq
        ref, _ = exhaustive(variables, src[b, 0], REPEAT_T, alpha, 10**6)
        ref = [h for h in ref if not repeats(h[3], n) and (not h[0] or len(h[3]) - 1 >= min_len)][
            :n_best
        ]
        assert len(ref) == n_best
        for j, (finished, score, logp, seq) in enumerate(ref):
            assert bool(r.finished[b, j]) == finished and int(r.lengths[b, j]) == len(seq)
            np.testing.assert_array_equal(r.tokens[b, j, : len(seq)], seq)
            np.testing.assert_allclose(r.scores[b, j], score, rtol=1e-5)
            np.testing.assert_allclose(r.log_probs[b, j], logp, rtol=1e-5)


def check_constrained(r: SearchResult, min_len, n, finished_too=True):
    """Every hypothesis of r [B, N, ...] holds min_len tokens before its EOS and no n-gram
    twice; returns them."""
    hyps = hypotheses(r)
    assert hyps
    for h in hyps:
        assert not repeats(h, n), h
        if h[-1] == EOS:
            assert len(h) - 1 >= min_len, h
    return hyps


def test_constraints_hold_in_every_method_on_random_models():
    """Two random GRU seq2seq models (V = 12): one repeats a token to max_len, one ends at
    once. With no_repeat_ngram=2 no hypothesis (greedy, every one of a 4-best beam, 6 samples
    a sentence) repeats a bigram, with min_len=6 none ends before 6 tokens, and both hold
    together."""
    from jaxattn.search import decode, sample

    src, src_len = make_batch(4)

    def runs(model, variables):
        return dict(
            greedy=lambda **kw: decode(model, variables, src, src_len, **KW, **kw),
            beam=lambda **kw: beam_search(
                model, variables, src, src_len, beam_size=4, n_best=4, **KW, **kw
            ),
            sample=lambda **kw: sample(
                model, variables, src, src_len, rng=jax.random.key(0), num_samples=6, **KW, **kw
            ),
        )

    repeating, short = init_model(make_config(), seed=0), init_model(make_config(), seed=3)
    for name, run in runs(*repeating).items():
        assert any(repeats(h, 2) for h in hypotheses(run())), name  # work for the constraint
        check_constrained(run(no_repeat_ngram=2), 0, 2)
        check_constrained(run(min_len=3, no_repeat_ngram=3), 3, 3)
    for name, run in runs(*short).items():
        assert any(h[-1] == EOS and len(h) - 1 < 6 for h in hypotheses(run())), name
        check_constrained(run(min_len=6), 6, 0)
        check_constrained(run(min_len=6, no_repeat_ngram=2), 6, 2)


def test_min_len_falls_back_to_eos_when_nothing_else_is_allowed():
    """Two content tokens, no_repeat_ngram=2 and min_len=6: after 2 3 3 2 2 both content
    tokens complete a bigram already out, so EOS is allowed (the one rule that yields), in
    greedy and beam search alike."""
    probs = np.full((7, 4, 4), 0.01)
    probs[0, BOS, 2] = probs[1, 2, 3] = probs[2, 3, 3] = probs[3, 3, 2] = probs[4, 2, 2] = 0.9
    probs[..., BOS] = 0.0  # never emitted (log-prob -inf): the content tokens are 2 and 3
    logits = np.where(probs > 0, np.log(np.where(probs > 0, probs, 1.0)), -np.inf)
    variables = table_variables(logits, 3, bias_scale=0.0)
    p = probs / probs.sum(-1, keepdims=True)
    src = np.zeros((1, 3), np.int32)
    kw = dict(eos_id=EOS, max_len=7, min_len=6, no_repeat_ngram=2)
    g = greedy_search(TableModel(), variables, src, **kw)
    assert g.tokens[0, : g.lengths[0]].tolist() == [2, 3, 3, 2, 2, EOS]
    want = np.log(p[0, BOS, 2] * p[1, 2, 3] * p[2, 3, 3] * p[3, 3, 2] * p[4, 2, 2] * p[5, 2, EOS])
    np.testing.assert_allclose(g.log_probs[0], want, rtol=1e-5)
    b = beam_search(TableModel(), variables, src, beam_size=3, **kw)
    assert b.tokens[0, 0, : b.lengths[0, 0]].tolist() == [2, 3, 3, 2, 2, EOS]


@pytest.mark.parametrize(
    "kw, says",
    [
        (dict(min_len=-1), r"min_len must be an integer >= 0, got -1"),
        (dict(min_len=2.5), r"min_len must be an integer >= 0, got 2.5"),
        (dict(no_repeat_ngram=1), r"no_repeat_ngram must be 0 \(off\) or an integer >= 2, got 1"),
        (dict(no_repeat_ngram=-2), r"no_repeat_ngram must be 0 \(off\) or an integer >= 2"),
        (dict(no_repeat_ngram="2"), r"no_repeat_ngram must be 0 \(off\) or an integer >= 2"),
        (dict(min_len=T), rf"min_len={T} needs max_len >= {T + 1} .*got max_len={T}"),
    ],
)
def test_bad_constraints_are_refused(kw, says):
    from jaxattn.errors import OptionError
    from jaxattn.search import DecodeOptions, decode, sample

    model, variables = init_model(make_config())
    src, src_len = make_batch()
    calls = [
        lambda: greedy_search(model, variables, src, src_len, **KW, **kw),
        lambda: beam_search(model, variables, src, src_len, beam_size=2, **KW, **kw),
        lambda: sample(model, variables, src, src_len, rng=jax.random.key(0), **KW, **kw),
        lambda: decode(model, variables, src, src_len, method="beam", beam_size=2, **KW, **kw),
    ]
    if "max_len" not in says:  # a range: DecodeOptions refuses it too
        calls.append(lambda: DecodeOptions(**kw))
    for call in calls:
        with pytest.raises(OptionError, match=says):
            call()


# ---------------------------------------------------------------------------------------------
# The blocked top-k of beam search == lax.top_k
# ---------------------------------------------------------------------------------------------


def test_blocked_top_k_equals_lax_top_k():
    """core.top_k gives lax.top_k's values and indices on random rows with many ties (a few
    integer values), -inf (banned tokens, empty beams), rows all -inf, NaN, and lengths with a
    short last block: the order of equal values (the lower index first) included."""
    from jax import lax

    from jaxattn.search.core import top_k

    # a later block with the higher max, and a tie between the two blocks: read in rank order,
    # the tie would go to the later block's 0 (position 3), not lax.top_k's (position 0)
    x = np.full((1, 12), -np.inf, np.float32)
    x[0, :5] = [0, 1, -np.inf, 0, 2]
    values, indices = top_k(jnp.asarray(x), 3, 3)
    assert indices.tolist() == [[4, 1, 0]] and values.tolist() == [[2, 1, 0]]
    rng = np.random.default_rng(0)
    for trial in range(48):  # a few shapes (each compiles), short last blocks among them
        rows, length = 4, int(rng.choice([20, 131, 517, 1499]))
        k, block = int(rng.choice([1, 3, 6])), int(rng.choice([3, 16, 128]))
        x = rng.integers(-3, 3, (rows, length)).astype(np.float32)  # ties everywhere
        x[rng.random((rows, length)) < 0.3] = -np.inf
        if trial % 4 == 0:
            x[0] = -np.inf  # a row with nothing allowed
        if trial % 5 == 0:
            x[rng.random((rows, length)) < 0.01] = np.nan
        if trial % 7 == 0:
            x = rng.normal(size=(rows, length)).astype(np.float32)
        want = lax.top_k(jnp.asarray(x), k)
        got = top_k(jnp.asarray(x), k, block)
        np.testing.assert_array_equal(got[1], want[1], err_msg=f"indices, trial {trial}")
        np.testing.assert_array_equal(got[0], want[0], err_msg=f"values, trial {trial}")


def test_beam_with_blocked_top_k_equals_full_top_k(monkeypatch):
    """A beam search whose candidates [B, K x V] span many blocks (V = 700: 10 blocks a beam of
    128) gives bit for bit what it gives with lax.top_k over all candidates."""
    from jax import lax

    from jaxattn.search import beam
    from jaxattn.search.core import start

    vocab, k = 700, 3
    model = build_model(make_config(), V, vocab, BOS)
    src, src_len = make_batch(3)
    shapes = jax.eval_shape(model.init, jax.random.key(0), src, src_len, np.ones((B, 3), np.int32))
    rng = np.random.default_rng(5)
    variables = jax.tree.map(
        lambda x: jnp.asarray(rng.normal(size=x.shape) * (0.5 if x.ndim > 1 else 0.1), x.dtype),
        shapes,
    )
    variables = nudge_eos(variables, 3.0)  # some hypotheses end: the finished pool is used

    def search():  # a fresh trace each call: it sees the top_k patched in or not
        @jax.jit
        def run(variables, src, src_len):
            memory, state = start(model, variables, src, src_len, T)
            ids = dict(bos_id=BOS, eos_id=EOS, pad_id=PAD, max_len=T, beam_size=k, n_best=2)
            return beam.beam_loop(
                model, variables, memory, state, S, jnp.float32(0.6), None, src_len, **ids
            )[0]

        return run(variables, src, src_len)

    blocked = search()
    monkeypatch.setattr(beam, "top_k", lax.top_k)
    full = search()
    assert_same(blocked, full)
    assert blocked.finished.any() and len(np.unique(blocked.lengths)) > 1  # the pool ranked


# ---------------------------------------------------------------------------------------------
# Stages that drop finished sentences (core.staged_loop); keep_greedy in the beam's rows
# ---------------------------------------------------------------------------------------------


def test_staged_loop_drops_finished_sentences_in_order(monkeypatch):
    """Sentence i of 16 (2 rows each) needs need[i] steps, a permutation of 1..16. Staged
    (FEW_ROWS 4: stages of 16 and 8 sentences) the loop's results equal one loop's, in the
    batch's order, and it steps fewer rows (`work`, a shared scalar, adds each step's rows)."""
    monkeypatch.setattr(core, "FEW_ROWS", 4)
    assert core.stages(16, 2) == [16, 8] and core.stages(7, 2) == [7, 3]
    assert core.stages(3, 2) == [3] and core.stages(3, 4) == [3, 1]
    need = np.random.default_rng(0).permutation(16) + 1
    init = dict(
        t=jnp.int32(0),
        work=jnp.int32(0),
        need=jnp.asarray(need, jnp.int32),  # [B]
        steps=jnp.zeros(16, jnp.int32),  # [B]
        rows=jnp.zeros(32, jnp.float32),  # [B * 2]: each row adds its id each live step
        state=jnp.zeros((32, 3)),  # dropped by keep
    )
    row_ids = jnp.arange(32, dtype=jnp.float32)  # consts: reordered with the rows

    def live(c):
        return c["steps"] < c["need"]

    def cond(c):
        return jnp.any(live(c)) & (c["t"] < 100)

    def body(c, row_ids):
        on = live(c)  # [B']
        return dict(
            t=c["t"] + 1,
            work=c["work"] + c["rows"].shape[0],
            need=c["need"],
            steps=c["steps"] + on,
            rows=c["rows"] + jnp.where(jnp.repeat(on, 2), row_ids, 0.0),
            state=c["state"] + 1,
        )

    keep = lambda c: {**c, "state": None}  # noqa: E731
    one = jax.jit(lambda c, k: keep(jax.lax.while_loop(cond, lambda c: body(c, k), c)))
    staged = jax.jit(
        lambda c, k: core.staged_loop(cond, body, c, k, batch=16, rows=2, live=live, keep=keep)
    )
    a, b = one(init, row_ids), staged(init, row_ids)
    np.testing.assert_array_equal(b["steps"], need)
    np.testing.assert_array_equal(b["rows"], np.repeat(need, 2) * np.arange(32))
    for k in ("t", "need", "steps", "rows"):
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert b["state"] is None
    # one loop: 16 steps of 32 rows; staged: 8 steps of 32 rows (until 8 are live), 8 of 16
    assert (int(a["work"]), int(b["work"])) == (16 * 32, 8 * 32 + 8 * 16)


@pytest.mark.parametrize("kind", ["rnn", "transformer"])
def test_searches_in_stages_equal_one_loop(monkeypatch, kind):
    """Greedy, beam search (keep_greedy on and off) and sampling give the same outputs in
    stages (FEW_ROWS 2: a batch of 8 goes on as 4 once at most 4 are left) as in one
    loop (FEW_ROWS huge), and beam search's greedy hypothesis in the beam's rows (one loop)
    equals its own loop (stages); so does the beam loop with greedy's rows, staged. Scores up
    to float rounding (matmuls of other row counts)."""
    from jaxattn.search import beam, sample
    from jaxattn.search.core import start

    overrides = {} if kind == "rnn" else dict(encoder="transformer", decoder="transformer")
    config = make_config(**overrides)
    if kind == "transformer":
        config.heads, config.ff_dim, config.max_positions = 2, 16, max(S, T)
    seed, nudge = (5, -0.15) if kind == "rnn" else (3, 0.2)  # lengths 2-10 / 4 and 10
    model, variables = init_model(config, seed=seed)
    variables = nudge_eos(variables, nudge)
    src, src_len = make_batch(3)

    @jax.jit
    def folded(variables, src, src_len):  # the beam loop with greedy's rows, staged or not
        memory, state = start(model, variables, src, src_len, T)
        ids = dict(bos_id=BOS, eos_id=EOS, pad_id=PAD, max_len=T, beam_size=3, n_best=2)
        args = (model, variables, memory, state, S, jnp.float32(0.6), None, src_len)
        return beam.beam_loop(*args, keep_greedy=True, **ids)

    def run(few_rows):
        monkeypatch.setattr(core, "FEW_ROWS", few_rows)
        jax.clear_caches()  # the searches are traced again with this FEW_ROWS
        kw = dict(beam_size=3, n_best=2, alpha=0.6, **KW)
        return [
            greedy_search(model, variables, src, src_len, **KW),
            beam_search(model, variables, src, src_len, **kw),
            beam_search(model, variables, src, src_len, keep_greedy=False, **kw),
            sample(model, variables, src, src_len, rng=jax.random.key(4), num_samples=2, **KW),
            *folded(variables, src, src_len),
        ]

    one, staged = run(10**9), run(2)
    assert len(np.unique(one[0].lengths)) >= 2  # sentences end at different steps
    for a, b in zip(one, staged, strict=True):
        for name in ("tokens", "lengths", "finished", "steps"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
        for name in ("scores", "log_probs", "weights"):
            np.testing.assert_allclose(
                getattr(a, name), getattr(b, name), rtol=1e-5, atol=1e-6, err_msg=name
            )
