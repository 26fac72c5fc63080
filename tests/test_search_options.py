"""Tests for the decoding options of jaxattn.search: ensembles, sampling (temperature, top-k,
top-p), the coverage penalty and forced decoding, on the table model (exact probabilities) and
on a small random Seq2Seq."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxattn.config import default_model_config
from jaxattn.model.seq2seq import build_model
from jaxattn.search import (
    Ensemble,
    beam_search,
    coverage_penalty,
    decode,
    force_decode,
    greedy_search,
    length_penalty,
    sample,
)

V, B, S, T = 11, 4, 5, 7
EOS = 2
LENGTHS = np.array([5, 3, 4, 1], np.int32)


def small_model(random_init, seed):
    c = default_model_config()
    c.hidden, c.embed_dim, c.dropout = 16, 8, 0.0
    model = build_model(c, V, V, bos_id=1)
    src = np.random.default_rng(0).integers(3, V, (B, S)).astype(np.int32)
    src[np.arange(S)[None] >= LENGTHS[:, None]] = 0
    variables = random_init(
        model,
        jnp.asarray(src),
        jnp.asarray(LENGTHS),
        jnp.zeros((B, T), jnp.int32),
        seed=seed,
        scale=0.5,
    )
    return model, variables, src


KW = dict(eos_id=EOS, max_len=T)


def assert_same(a, b, exact=("tokens", "lengths", "finished")):
    for name in a._fields:
        x, y = np.asarray(getattr(a, name)), np.asarray(getattr(b, name))
        if name in exact or name == "steps":
            np.testing.assert_array_equal(x, y, err_msg=name)
        else:
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6, err_msg=name)


# ------------------------------------------------------------------------------- ensembles
def test_ensemble_of_a_model_with_itself_is_the_model(random_init):
    model, variables, src = small_model(random_init, 0)
    both = Ensemble((model, model))
    assert_same(
        greedy_search(both, (variables, variables), src, LENGTHS, **KW),
        greedy_search(model, variables, src, LENGTHS, **KW),
    )
    kw = dict(beam_size=3, n_best=2, alpha=0.6, **KW)
    assert_same(
        beam_search(both, (variables, variables), src, LENGTHS, **kw),
        beam_search(model, variables, src, LENGTHS, **kw),
    )


def test_constraints_reach_an_ensemble(random_init):
    """min_len and no_repeat_ngram act on the ensemble's combined step: an ensemble of a model
    with itself decodes, with them, as the model does (greedy, beam, samples), and they do
    change its output."""
    model, variables, src = small_model(random_init, 0)
    both, pair = Ensemble((model, model)), (variables, variables)
    kw = dict(min_len=4, no_repeat_ngram=2, **KW)
    for opts in (
        dict(),
        dict(method="beam", beam_size=3, n_best=2, alpha=0.6),
        dict(method="sample", n_best=3, rng=jax.random.key(1)),
    ):
        constrained = decode(model, variables, src, LENGTHS, **opts, **kw)
        assert_same(decode(both, pair, src, LENGTHS, **opts, **kw), constrained)
        plain = decode(model, variables, src, LENGTHS, **opts, **KW)
        assert not np.array_equal(plain.tokens, constrained.tokens), opts
        assert (np.asarray(constrained.lengths) >= np.minimum(5, T)).all(), opts


def test_ensemble_probabilities_lie_between_its_members(random_init):
    """Forced decoding of one target: each token's ensemble probability is the mean of the two
    models' (so between them), and the attention is the mean of theirs."""
    (m, v1, src), (_, v2, _) = small_model(random_init, 1), small_model(random_init, 2)
    tgt = np.random.default_rng(3).integers(3, V, (B, T)).astype(np.int32)
    one, two = force_decode(m, v1, src, LENGTHS, tgt), force_decode(m, v2, src, LENGTHS, tgt)
    ens = force_decode(Ensemble((m, m)), (v1, v2), src, LENGTHS, tgt)
    np.testing.assert_allclose(
        np.exp(ens.token_log_probs),
        (np.exp(one.token_log_probs) + np.exp(two.token_log_probs)) / 2,
        rtol=1e-5,
    )
    lo = np.minimum(one.token_log_probs, two.token_log_probs)
    hi = np.maximum(one.token_log_probs, two.token_log_probs)
    assert np.all(lo - 1e-6 <= ens.token_log_probs) and np.all(ens.token_log_probs <= hi + 1e-6)
    assert not np.allclose(one.token_log_probs, two.token_log_probs)  # really two models
    np.testing.assert_allclose(ens.weights, (one.weights + two.weights) / 2, atol=1e-6)
    with pytest.raises(ValueError, match="tuple"):
        greedy_search(Ensemble((m, m)), v1, src, LENGTHS, **KW)


# ------------------------------------------------------------------------ forced decoding
def test_force_decode_scores_the_greedy_output(random_init):
    model, variables, src = small_model(random_init, 4)
    g = greedy_search(model, variables, src, LENGTHS, **KW)
    f = force_decode(model, variables, src, LENGTHS, g.tokens, g.lengths)
    np.testing.assert_allclose(f.log_probs, g.log_probs, rtol=1e-5, atol=1e-6)
    past = np.arange(T)[None] >= np.asarray(g.lengths)[:, None]
    assert np.all(np.asarray(f.token_log_probs)[past] == 0)
    assert np.all(np.asarray(f.token_log_probs)[~past] < 0)
    np.testing.assert_allclose(
        np.asarray(f.weights)[~past], np.asarray(g.weights)[~past], atol=1e-6
    )


# -------------------------------------------------------------------------------- sampling
def test_sampling_at_temperature_zero_or_top_k_one_is_greedy(random_init):
    model, variables, src = small_model(random_init, 5)
    g = greedy_search(model, variables, src, LENGTHS, **KW)
    key = jax.random.key(0)
    for kw in (dict(temperature=0.0), dict(top_k=1), dict(temperature=1e-4)):
        s = sample(model, variables, src, LENGTHS, rng=key, num_samples=3, **kw, **KW)
        for j in range(3):
            np.testing.assert_array_equal(s.tokens[:, j], g.tokens, err_msg=str(kw))
            np.testing.assert_allclose(s.log_probs[:, j], g.log_probs, rtol=1e-5)


def test_samples_depend_on_the_key_only(random_init):
    model, variables, src = small_model(random_init, 6)
    a = sample(model, variables, src, LENGTHS, rng=jax.random.key(1), num_samples=4, **KW)
    b = sample(model, variables, src, LENGTHS, rng=jax.random.key(1), num_samples=4, **KW)
    c = sample(model, variables, src, LENGTHS, rng=jax.random.key(2), num_samples=4, **KW)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    assert not np.array_equal(a.tokens, c.tokens)
    f = force_decode(
        model,
        variables,
        src[:, None].repeat(4, 1).reshape(B * 4, S),
        LENGTHS.repeat(4),
        a.tokens.reshape(B * 4, T),
        a.lengths.reshape(-1),
    )
    np.testing.assert_allclose(f.log_probs.reshape(B, 4), a.log_probs, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("opts", [dict(temperature=2.0), dict(top_p=0.7), dict(top_p=0.2)])
def test_a_sentences_samples_ignore_the_rest_of_its_batch(random_init, opts):
    """Sentence b draws from its own key (fold_in(rng, b), or the b-th of per-row keys): the
    same sentence with the same key samples the same alone, in another batch, or padded wider
    (also when other rows' nucleus draws retry or fall back to the exact filter)."""
    model, variables, src = small_model(random_init, 6)
    kw = dict(num_samples=3, **opts, **KW)
    keys = jax.vmap(jax.random.fold_in, (None, 0))(jax.random.key(3), jnp.arange(B))
    whole = sample(model, variables, src, LENGTHS, rng=keys, **kw)
    np.testing.assert_array_equal(
        sample(model, variables, src, LENGTHS, rng=jax.random.key(3), **kw).tokens, whole.tokens
    )
    for b in range(B):
        alone = sample(
            model, variables, src[b : b + 1], LENGTHS[b : b + 1], rng=keys[b : b + 1], **kw
        )
        np.testing.assert_array_equal(alone.tokens[0], whole.tokens[b])
    rev = sample(model, variables, src[::-1], LENGTHS[::-1], rng=keys[::-1], **kw)
    np.testing.assert_array_equal(rev.tokens[::-1], whole.tokens)
    assert len({np.asarray(whole.tokens[b]).tobytes() for b in range(B)}) > 1
    raw = sample(model, variables, src, LENGTHS, rng=jax.random.key_data(keys), **kw)
    np.testing.assert_array_equal(raw.tokens, whole.tokens)
    for bad, match in ((keys[:2], "one per sentence"), (np.zeros((B, 3), np.float32), "PRNG key")):
        with pytest.raises(ValueError, match=match):
            sample(model, variables, src, LENGTHS, rng=bad, **kw)


def first_token_frequencies(model, variables, src, n, **kw):
    s = sample(
        model,
        variables,
        src[:1],
        LENGTHS[:1],
        rng=jax.random.key(7),
        num_samples=n,
        max_len=1,
        eos_id=EOS,
        **kw,
    )
    return np.bincount(np.asarray(s.tokens)[0, :, 0], minlength=V) / n


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"temperature": 0.7},
        {"top_k": 3},
        {"top_p": 0.6},
        {"top_p": 0.2},
        {"top_p": 0.8, "top_k": 4, "temperature": 1.5},
    ],
)
def test_sample_frequencies_match_the_filtered_softmax(random_init, kw):
    """4,000 first tokens: each frequency within 0.035 (5 standard deviations at most) of the
    probability the model and the filter give it. top_p 0.6 draws by rejection (some rows fall
    back to the exact filter after the tries), 0.2 by the exact filter only."""
    model, variables, src = small_model(random_init, 8)
    memory = model.apply(variables, src[:1], LENGTHS[:1], method="encode")
    state = model.apply(variables, memory, method="init_state")
    _, logits, _ = model.apply(variables, memory, state, jnp.array([1]), 0, method="decode_step")
    logits = np.asarray(logits[0], np.float64) / kw.get("temperature", 1.0)
    order = np.argsort(-logits)
    keep = np.ones(V, bool)
    if "top_k" in kw:
        keep[order[kw["top_k"] :]] = False
    if "top_p" in kw:
        p = np.where(keep, np.exp(logits - logits.max()), 0.0)  # top-p after top-k
        p = p[order] / p.sum()
        keep[order[(np.cumsum(p) - p) >= kw["top_p"]]] = False
    probs = np.where(keep, np.exp(logits - logits.max()), 0.0)
    probs /= probs.sum()
    freq = first_token_frequencies(model, variables, src, 4000, **kw)
    assert np.all(freq[~keep] == 0)
    np.testing.assert_allclose(freq, probs, atol=0.035)
    assert keep.sum() < V or not {"top_k", "top_p"} & kw.keys()  # the filters removed some


def test_sampling_rejects_bad_options(random_init):
    model, variables, src = small_model(random_init, 0)
    key = jax.random.key(0)
    for bad, match in (
        (dict(temperature=-1.0), "temperature"),
        (dict(top_k=-2), "top_k"),
        (dict(top_p=0.0), "top_p"),
        (dict(num_samples=0), "num_samples"),
    ):
        with pytest.raises(ValueError, match=match):
            sample(model, variables, src, LENGTHS, rng=key, **bad, **KW)
    with pytest.raises(ValueError, match="PRNG"):
        decode(model, variables, src, LENGTHS, method="sample", **KW)
    r = decode(model, variables, src, LENGTHS, method="sample", rng=key, n_best=2, **KW)
    assert r.tokens.shape == (B, 2, T)


# ------------------------------------------------------------------------ coverage penalty
def test_coverage_penalty_formula():
    w = np.zeros((2, 3, 4), np.float32)  # [B=2, T=3, S=4]
    w[0, :, 0] = [0.5, 0.3, 0.4]  # position 0 covered 1.2 -> min 1 -> log 1 = 0
    w[0, :, 1] = [0.5, 0.2, 0.1]  # 0.8
    w[0, :, 2] = [0.0, 0.5, 0.5]  # 1.0; position 3 is padding (src_len 3)
    w[1, 0, :] = 0.25
    got = coverage_penalty(jnp.asarray(w), jnp.array([3, 4]), 0.5)
    np.testing.assert_allclose(got, [0.5 * np.log(0.8), 0.5 * 4 * np.log(0.25)], rtol=1e-6)
    assert float(coverage_penalty(jnp.asarray(w), None, 0.0)[0]) == 0.0


@pytest.mark.parametrize("keep_greedy", [False, True])
def test_beam_scores_include_the_coverage_penalty(random_init, keep_greedy):
    """Every returned hypothesis scores log_prob / lp(len) + cp(its weights), and a large beta
    changes the ranking on some sentence while beta 0 is the plain beam."""
    model, variables, src = small_model(random_init, 9)
    kw = dict(beam_size=4, n_best=4, alpha=0.5, keep_greedy=keep_greedy, **KW)
    plain = beam_search(model, variables, src, LENGTHS, **kw)
    assert_same(beam_search(model, variables, src, LENGTHS, beta=0.0, **kw), plain)
    r = beam_search(model, variables, src, LENGTHS, beta=2.0, **kw)
    ok = np.isfinite(np.asarray(r.scores))
    want = np.asarray(r.log_probs) / np.asarray(length_penalty(r.lengths, 0.5)) + np.asarray(
        coverage_penalty(r.weights, LENGTHS[:, None], 2.0)
    )
    np.testing.assert_allclose(np.asarray(r.scores)[ok], want[ok], rtol=1e-4, atol=1e-5)
    for scores, finished in zip(np.asarray(r.scores), np.asarray(r.finished), strict=True):
        s = scores[finished]
        assert np.all(s[:-1] >= s[1:] - 1e-6)  # finished hypotheses ranked by the new score
    assert not np.array_equal(r.tokens, plain.tokens)  # the penalty changed a ranking
    with pytest.raises(ValueError, match="beta"):
        beam_search(model, variables, src, LENGTHS, beta=-1.0, **kw)


# ------------------------------------------------------------------ the table of options
def test_the_flags_are_the_table(monkeypatch):
    """cli.define_decoding_flags defines one flag per row of OPTIONS, with its help and type,
    unset by default; DecodeOptions has one field per row, with its default."""
    from absl import flags

    from jaxattn.search import options as opts
    from jaxattn.tools import cli

    values = flags.FlagValues()
    monkeypatch.setattr(cli, "FLAGS", values)
    cli.define_decoding_flags()
    assert cli.search_flags() == list(opts.OPTIONS)
    fields = {f.name: f for f in dataclasses.fields(opts.DecodeOptions)}
    assert list(fields) == list(opts.OPTIONS)
    kinds = {int: "int", float: "float", str: "string enum"}
    for o in opts.OPTIONS.values():
        flag = values[o.name]
        assert flag.help.endswith(o.help) and flag.default is None, o.name  # enum: '<a|b>: '
        assert flag.flag_type() == kinds[o.kind], o.name
        assert fields[o.name].default == o.default, o.name
    assert values["method"].parser.enum_values == list(opts.METHODS)


def test_a_new_option_is_checked_and_offered_as_a_flag(monkeypatch):
    """One row added to OPTIONS (here a throwaway 'warmth' for sampling) is a checked field of
    DecodeOptions, a keyword of search.decode (checked before any model is touched) and a
    --warmth flag that the scripts check and read back; nothing else changes."""
    from absl import flags

    from jaxattn import search
    from jaxattn.errors import OptionError
    from jaxattn.search import options as opts
    from jaxattn.tools import cli

    row = opts.Option("warmth", float, 0.5, "How warm; default 0.5.", ("sample",), low=0, high=1)
    monkeypatch.setitem(opts.OPTIONS, "warmth", row)
    with_warmth = opts._dataclass(opts.OPTIONS)
    monkeypatch.setattr(opts, "DecodeOptions", with_warmth)  # as at import, with the row
    monkeypatch.setattr(search, "DecodeOptions", with_warmth)

    assert with_warmth(method="sample", warmth=0.25).warmth == 0.25
    assert with_warmth().warmth == 0.5
    with pytest.raises(OptionError, match=r"warmth must be in \[0, 1\], got 2.0"):
        with_warmth(method="sample", warmth=2.0)
    with pytest.raises(OptionError, match="warmth=0.25 is for method='sample'; method='beam'"):
        with_warmth(beam_size=3, warmth=0.25)
    with pytest.raises(OptionError, match="warmth must be in"):
        search.decode(None, None, None, method="sample", warmth=-1.0, eos_id=EOS, max_len=T)

    values = flags.FlagValues()
    monkeypatch.setattr(cli, "FLAGS", values)
    cli.define_decoding_flags()
    assert values["warmth"].help == "How warm; default 0.5." and values["warmth"].default is None
    values(["prog", "--method=sample", "--warmth=0.75"])
    cli.check_decoding_flags()
    assert cli.decoding_options(1)["options"].warmth == 0.75
    values["warmth"].value = 3.0
    with pytest.raises(OptionError, match=r"--warmth must be in \[0, 1\], got 3.0"):
        cli.check_decoding_flags()


def test_flag_ranges_are_checked_before_any_work(monkeypatch):
    from absl import flags

    from jaxattn.errors import OptionError, UsageError
    from jaxattn.tools import cli

    values = flags.FlagValues()
    monkeypatch.setattr(cli, "FLAGS", values)
    cli.define_decoding_flags()
    for args, message in (
        (["--beam_size=0"], "--beam_size must be >= 1, got 0."),
        (["--alpha=nan"], r"--alpha \(the length penalty exponent\) must be a finite number"),
        (["--seed=-3"], r"--seed must be >= 0 and < 2\*\*32, got -3."),
        (["--top_p=0"], r"--top_p must be in \(0, 1\], got 0.0."),
        (["--no_repeat_ngram=1"], r"--no_repeat_ngram must be 0 \(off\) or >= 2, got 1."),
        (["--min_len=-1"], r"--min_len must be >= 0, got -1."),
    ):
        values.unparse_flags()
        values(["prog", *args])
        with pytest.raises(OptionError, match=message):
            cli.check_decoding_flags()
    values.unparse_flags()
    values(["prog", "--max_len=0"])
    with pytest.raises(UsageError, match="--max_len must be >= 1"):
        cli.check_decoding_flags()
    values.unparse_flags()
    values(["prog", "--n_best=3"])  # a combination: checked with the run's defaults known
    cli.check_decoding_flags()
    assert cli.decoding_options(4)["options"].method == "beam"
    with pytest.raises(OptionError, match="n_best=3 > beam_size=2"):
        cli.decoding_options(2)
