"""Token batches (train.batch_tokens): the budget, the few shapes, every pair once an epoch,
less padding than sentence batches, equal shard shares, exact resume, and the checks."""

import functools

import jax
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from shared import synthetic_config

import jaxattn.data as data_lib
from jaxattn.config import default_data_config, validate
from jaxattn.data.batching import token_batches, token_rows
from jaxattn.errors import ConfigError, DataError
from jaxattn.inference import predict
from jaxattn.inference.translator import Translator
from jaxattn.model.seq2seq import build_model
from jaxattn.training import loop as train_lib


def skewed_config(**overrides):
    """Copy task, 1..24 symbols: target lengths 2..25 positions, padded to multiples of 4."""
    c = default_data_config()
    c.name, c.synthetic_task, c.synthetic_sizes = "synthetic", "copy", (400, 20, 20)
    c.synthetic_min_len, c.synthetic_max_len, c.pad_multiple, c.prefetch = 1, 24, 4, 0
    c.update(overrides)
    return c


@pytest.fixture(scope="module")
def skewed():
    data = data_lib.build(skewed_config())
    counts = data._train_counts[:, 1] + 1  # target positions, EOS included
    assert counts.min() <= 4 and counts.max() >= 24  # skewed: a few widths
    return data


def epoch(data, **kwargs):
    """One epoch's batches, seed 3 (kwargs: train_iterator's)."""
    tokens = {k: v for k, v in kwargs.items() if k in ("batch_tokens", "row_multiple")}
    steps = data.steps_per_epoch(32, kwargs.get("shard_count", 1), seed=3, **tokens)
    it = data.train_iterator(32, seed=3, **kwargs)
    return [next(it) for _ in range(steps)]


def padding_share(batches) -> float:
    """Padded target positions that are padding (filler rows included)."""
    padded = sum(b["tgt"].size for b in batches)
    return 1 - sum(int(b["tgt_len"].sum()) for b in batches) / padded


def test_token_batches_cuts_within_budget_on_few_row_counts():
    widths = np.repeat([4, 8, 12, 24], [37, 50, 9, 20])
    cuts = token_batches(widths, 96, 2)
    assert [a for a, _, _ in cuts] == [0] + [b for _, b, _ in cuts[:-1]]  # contiguous
    assert cuts[-1][1] == len(widths)
    for a, b, rows in cuts:
        assert rows % 2 == 0 and b - a <= rows and rows * widths[b - 1] <= 96
        assert rows == token_rows(b - a, 96 // widths[b - 1] // 2 * 2, 2)
    # full batches at each width (24 rows of 4, 12 of 8, ...) but for the cut where it grows
    assert [b - a for a, b, _ in cuts[:3]] == [24, 13, 12] and cuts[1][2] == 16
    assert token_rows(5, 24, 2) == 8 and token_rows(20, 24, 2) == 24 and token_rows(1, 4, 4) == 4
    with pytest.raises(ValueError, match="2 row\\(s\\) of 24 target positions need 48"):
        token_batches(widths, 40, 2)


def test_every_batch_within_budget_every_pair_once_an_epoch(skewed):
    budget, multiple = 160, 4
    plan = skewed._token_batches(budget, multiple, seed=3)
    for e in range(2):
        pairs = np.concatenate([p for p, _ in plan.plan(e)])
        np.testing.assert_array_equal(np.sort(pairs), np.arange(skewed.num_examples("train")))
    assert [len(p) for p, _ in plan.plan(0)] != [len(p) for p, _ in plan.plan(1)]  # reshuffled
    batches = epoch(skewed, batch_tokens=budget, row_multiple=multiple)
    shapes = set()
    for b in batches:
        rows, width = b["tgt"].shape
        assert rows * width <= budget and rows % multiple == 0
        real = b["tgt_len"] > 0
        assert real.sum() > rows // 2 or rows == multiple  # rounded up to at most twice
        assert not real[real.argmin() :].any() or real.all()  # empty rows last
        assert (b["src_len"][~real] == 0).all() and (b["tgt"][~real] == 0).all()  # pad id 0
        assert b["tgt_len"].max() > width - 4  # padded to the multiple of its longest
        shapes.add((rows,) + b["src"].shape[1:] + (width,))
    lengths = np.sort(np.concatenate([b["tgt_len"][b["tgt_len"] > 0] for b in batches]))
    np.testing.assert_array_equal(lengths, np.sort(skewed._train_counts[:, 1] + 1))
    assert len(shapes) <= 12, shapes  # copy task: S = T; 6 widths x at most 2 row counts
    largest = skewed.largest_batch_shape(32, batch_tokens=budget, row_multiple=multiple, seed=3)
    assert largest[1:] == (28, 28)
    assert largest[0] == max(b["tgt"].size for b in batches) // 28  # the most positions


def test_token_batches_pad_less_than_sentence_batches(skewed):
    sentences = epoch(skewed)
    mean_tokens = np.mean([b["tgt"].size for b in sentences])  # about 32 x 28
    tokens = epoch(skewed, batch_tokens=int(mean_tokens))
    assert padding_share(tokens) < 0.5 * padding_share(sentences)
    assert padding_share(tokens) < 0.2 < padding_share(sentences)


def test_shards_get_equal_shares_of_each_global_batch(skewed):
    kw = dict(batch_tokens=192, row_multiple=2)
    whole = epoch(skewed, **kw, shard_count=1)
    shards = [epoch(skewed, **kw, shard_index=i, shard_count=2) for i in range(2)]
    assert len(whole) == len(shards[0]) == len(shards[1])
    for g, a, b in zip(whole, *shards, strict=True):
        assert a["tgt"].shape == b["tgt"].shape and 2 * len(a["tgt"]) == len(g["tgt"])
        for k in g:
            np.testing.assert_array_equal(g[k], np.concatenate([a[k], b[k]]))


@pytest.mark.parametrize("pool", [0, 3])  # one pool an epoch; pools of ~3 batches
def test_restored_iterator_yields_the_same_batches(pool):
    data = data_lib.build(skewed_config(bucket_pool=pool))
    kw = dict(seed=5, batch_tokens=128, row_multiple=2)
    per_epoch = data.steps_per_epoch(0, **{k: kw[k] for k in kw})
    it = data.train_iterator(32, **kw)
    for _ in range(per_epoch - 2):
        next(it)
    state = it.get_state()
    ahead = [next(it) for _ in range(5)]  # crosses into the second epoch
    again = data.train_iterator(32, **kw)
    again.set_state(state)
    for a, b in zip(ahead, [next(again) for _ in range(5)], strict=True):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    finite = list(data.train_iterator(32, **kw, num_epochs=2))
    plan = data._token_batches(128, 2, seed=5)
    assert len(finite) == plan.epoch_batches(0) + plan.epoch_batches(1)
    if pool:  # pools of about 3 batches: more cuts than one sorted epoch
        whole = data_lib.build(skewed_config())._token_batches(128, 2, seed=5)
        assert plan.epoch_batches(0) > whole.epoch_batches(0)


def test_a_pair_wider_than_the_budget_fails_before_anything_is_written(tmp_path):
    config = synthetic_config({"train.batch_tokens": 8, "train.num_train_steps": 2})
    with pytest.raises(DataError, match="padded to 16.*needs 16 target positions.*at least 16"):
        train_lib.train_and_evaluate(config, str(tmp_path / "w"))
    assert [p.name for p in (tmp_path / "w").iterdir()] == [".lock"]  # no file of the run


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"train.batch_tokens": -1}, "batch_tokens=-1 must be >= 0"),
        (
            {"train.batch_tokens": 512, "train.loss_over_padding": True},
            "loss_over_padding=True would train token batches on their empty filler rows",
        ),
        (
            {"train.batch_tokens": 30, "data.pad_to": 10},
            "batch_tokens=30 is less than one row of data.pad_to=10 positions on each of the 4",
        ),
    ],
)
def test_bad_batch_tokens_fail_in_validate(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(synthetic_config(overrides), device_count=4)


def test_batch_size_is_unused_with_batch_tokens():
    validate(synthetic_config({"train.batch_tokens": 512, "train.batch_size": 30}), device_count=4)
    with pytest.raises(ConfigError, match="batch_size=30 must divide evenly"):
        validate(synthetic_config({"train.batch_size": 30}), device_count=4)


# ------------------------------------------------------------------------- eval.batch_tokens
def test_plan_decoding_batches_by_source_tokens():
    lengths = [1, 5, 9, 3, 17, 9, 2, 50, 6, 9, 12]  # 1: EOS alone, not decoded
    batches = predict.plan(lengths, 128, lambda n: -(-n // 4) * 4, lambda w: w, batch_tokens=48)
    assert sorted(i for b in batches for i in b.idx) == [i for i, n in enumerate(lengths) if n > 1]
    for b in batches:
        assert b.padded_len >= max(lengths[i] for i in b.idx)
        assert b.rows * b.padded_len <= 48 or b.idx == [7]  # 52 positions: alone, over budget
        assert len(b.idx) <= b.rows and (b.rows & (b.rows - 1) == 0 or b.rows == 48 // b.padded_len)
    # widths 4 4 8 8 | 12 12 12 12 | 20 | 52: 12, 6, 4, 2 rows fit at 4, 8, 12, 20
    assert [(len(b.idx), b.rows, b.padded_len) for b in batches] == [
        (4, 4, 8),
        (4, 4, 12),
        (1, 1, 20),
        (1, 1, 52),
    ]


def test_eval_token_batches_give_the_same_loss_and_translations():
    config = synthetic_config(
        {
            "model.hidden": 16,
            "model.embed_dim": 16,
            "data.synthetic_sizes": (200, 60, 10),
            "data.synthetic_max_len": 14,
            "data.pad_multiple": 4,
        }
    )
    data = data_lib.build(config.data)
    model = build_model(config.model, len(data.src_vocab), len(data.tgt_vocab), bos_id=1)
    params = train_lib.create_train_state(
        model, optax.adam(1e-3), jax.random.PRNGKey(0), data.example_batch(2)
    ).params
    p_eval_step = jax.jit(
        functools.partial(train_lib.eval_step, model=model, loss_over_padding=False)
    )
    replicated = NamedSharding(train_lib.make_mesh(), P())
    scores = {}
    for budget in (0, 64):
        config.eval.batch_tokens = budget
        scores[budget] = train_lib.validation_scores(
            model,
            params,
            data,
            "validation",
            config=config,
            p_eval_step=p_eval_step,
            replicated=replicated,
        )
    assert scores[0]["loss"] == pytest.approx(scores[64]["loss"], rel=1e-5)
    assert scores[0]["bleu"] == scores[64]["bleu"] and scores[0]["chrf"] == scores[64]["chrf"]
    batches = data.eval_batches("validation", 128, batch_tokens=64)
    assert len(batches) > 4  # not one batch of 60
    for b in batches:
        rows, width = b["tgt"].shape
        assert rows * width <= 64 and rows == len(b["src"]) and b["tgt_len"].max() > width - 4
    lengths = np.concatenate([b["tgt_len"][b["tgt_len"] > 0] for b in batches])
    in_order = np.concatenate([b["tgt_len"] for b in data.eval_batches("validation", 128)])
    np.testing.assert_array_equal(np.sort(lengths), np.sort(in_order))


@pytest.mark.parametrize("accumulate", [1, 4])
def test_the_loop_plans_with_the_token_batches(tmp_path, monkeypatch, accumulate):
    """Steps per epoch, the step count and the shape the position and memory checks get come
    from the token-batch plan, not from batch_size; with train.accumulate, every batch's rows
    split into that many micro-batches."""
    config = synthetic_config(
        {
            "train.batch_tokens": 256,
            "train.batch_size": 2,  # unused: 5000 / 2 steps an epoch if it were not
            "train.num_train_steps": -1,
            "train.num_epochs": 3,
            "train.accumulate": accumulate,
            "data.synthetic_max_len": 12,
        }
    )
    checked = {}
    monkeypatch.setattr(
        train_lib, "check_memory", lambda s, shape, v, a: checked.update(mem=shape, acc=a)
    )
    monkeypatch.setattr(train_lib, "check_positions", lambda c, shape: checked.update(pos=shape))
    run = train_lib._prepare(config, str(tmp_path / "w"))
    data = run["data"]
    plan = data._token_batches(256, 1, seed=config.seed)
    assert run["steps_per_epoch"] == plan.epoch_batches(0) < 5000 // 16
    assert run["total_steps"] == 3 * plan.epoch_batches(0) == plan.batches(3)
    # widths 8 and 16 (13 positions at most): 32 or 16 rows, 256 positions at the widest
    assert checked["mem"] == checked["pos"] == (16, 16, 16)
    assert max(rows for _, rows in plan.plan(0)) == 32
    assert run["tokens"]["row_multiple"] == accumulate and checked["acc"] == accumulate
    it = data.train_iterator(2, seed=config.seed, **run["tokens"])
    assert all(len(next(it)["src"]) % accumulate == 0 for _ in range(plan.epoch_batches(0)))


@pytest.mark.slow
def test_translator_decodes_by_eval_batch_tokens(tiny_run, monkeypatch):
    """Translator.translate without batch_size plans batches of config.eval.batch_tokens source
    positions (an explicit batch_size wins), and translates exactly as with sentence batches."""
    tr = Translator.from_workdir(tiny_run.workdir, 150)  # half-trained: mistakes to tell apart
    sources = data_lib.build(tr.config.data, vocab_dir=tiny_run.workdir).sources("validation")
    want = [t.text for t in tr.translate(sources)]
    planned = []
    real_plan = predict.plan
    monkeypatch.setattr(predict, "plan", lambda *a: planned.append(a[4]) or real_plan(*a))
    tr.config.eval.batch_tokens = 64
    assert [t.text for t in tr.translate(sources)] == want
    assert [t.text for t in tr.translate(sources, batch_size=16)] == want
    assert planned == [64, 0]
