"""Quality against wall time: trains the base config (configs/base.py) and the PyTorch tutorial
on the same training split for --epochs epochs, scores greedy translations of the held-out split
with sacreBLEU every --eval-every epochs, and reports the training time jaxattn needs to reach
the tutorial's final BLEU. Evaluation time is not counted as training time.
"""

from __future__ import annotations

import functools
import itertools
import time

import jax
import torch

from benchmarks import common
from benchmarks import torch_tutorial as tt
from jaxattn import metrics as metrics_lib
from jaxattn.inference import predict
from jaxattn.model.seq2seq import build_model
from jaxattn.training import loop as train_lib
from jaxattn.training.optim import make_optimizer


def train_with_evaluations(args, steps_per_epoch: int, step, bleu, label: str) -> list[dict]:
    """Runs `step(n)` (n training steps) for --epochs epochs; after every --eval-every epochs
    (and the last) records {'epoch', 'train_wall_s', 'bleu', 'load'} with BLEU from `bleu()`."""
    curve, train_s, t0 = [], 0.0, time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        step(steps_per_epoch)
        if epoch % args.eval_every == 0 or epoch == args.epochs:
            train_s = time.perf_counter() - t0
            curve.append(
                {"epoch": epoch, "train_wall_s": train_s, "bleu": bleu(), "load": common.load()}
            )
            common.log(f"quality/{label}", curve[-1])
            t0 = time.perf_counter() - train_s  # evaluation time is not training time
    return curve


def jax_curve(args, config, data, steps_per_epoch: int) -> list[dict]:
    """jaxattn: the base config's model, optimizer and train_step; greedy BLEU of the split."""
    tc, split = config.train, args.decode_split
    model = build_model(
        config.model, len(data.src_vocab), len(data.tgt_vocab), bos_id=data.tgt_vocab.bos_id
    )
    tx = make_optimizer(tc, args.epochs * steps_per_epoch)
    it = data.train_iterator(tc.batch_size, seed=config.seed)
    first = next(it)
    init_key, base_key = jax.random.split(jax.random.PRNGKey(config.seed))
    state = train_lib.create_train_state(model, tx, init_key, first)
    batches = itertools.chain([first], it)
    train_step = jax.jit(
        functools.partial(train_lib.train_step, model=model, tc=tc), donate_argnums=0
    )
    references = data.references(split)
    sources = predict.source_rows(data.eval_batches(split, config.eval.batch_size))

    def step(n):
        nonlocal state
        for _ in range(n):
            state, metrics = train_step(state, next(batches), base_key)
        jax.block_until_ready(metrics)

    def bleu():  # validation's greedy translations (the prediction path of Translator)
        hyps = predict.greedy_texts(
            model,
            {"params": state.params},
            sources,
            tgt_vocab=data.tgt_vocab,
            tgt_tokenizer=data.tgt_tokenizer,
            src_pad_id=data.src_vocab.pad_id,
            batch_size=config.eval.batch_size,
            padded_len=predict.source_width(config),
            max_len=config.eval.max_decode_len,
        )
        return metrics_lib.corpus_scores(hyps, references)["bleu"]

    return train_with_evaluations(args, steps_per_epoch, step, bleu, "jax")


def torch_curve(args, config, data, steps_per_epoch: int) -> list[dict]:
    """The PyTorch tutorial on the same training pairs (jaxattn's ids; padding 0 is also its
    SOS, as in the tutorial): its train_step, and its `evaluate` one sentence at a time."""
    batch, split, max_len = config.train.batch_size, args.decode_split, config.eval.max_decode_len
    vocab = len(data.src_vocab), len(data.tgt_vocab)
    torch.manual_seed(config.seed)
    encoder, decoder = common.make_torch_models(*vocab, 128, False, max_len)
    optimizers = tt.make_optimizers(encoder, decoder)
    criterion = torch.nn.NLLLoss()
    it = data.train_iterator(batch, seed=config.seed)
    probe = None
    if args.torch_threads == "auto":  # timed on a second model, on a batch of another seed
        b = common.torch_batch(next(iter(data.train_iterator(batch, seed=config.seed + 1))))
        p_enc, p_dec = common.make_torch_models(*vocab, 128, False, max_len)
        p_opt = tt.make_optimizers(p_enc, p_dec)
        probe = lambda: tt.train_step(*b, p_enc, p_dec, *p_opt, criterion)
        probe()
    common.torch_threads(args.torch_threads, probe)
    sources = [data.encode_source(s) for s in data.sources(split)]
    references = data.references(split)

    def step(n):
        for _ in range(n):
            tt.train_step(*common.torch_batch(next(it)), encoder, decoder, *optimizers, criterion)

    def bleu():
        encoder.eval(), decoder.eval()
        hyps = []
        for s in sources:
            ids, _ = tt.evaluate(encoder, decoder, torch.tensor([s], dtype=torch.long))
            hyps.append(data.decode_target(ids[0].tolist()))  # cut at EOS
        encoder.train(), decoder.train()
        return metrics_lib.corpus_scores(hyps, references)["bleu"]

    return train_with_evaluations(args, steps_per_epoch, step, bleu, "torch")


def bench_quality(args, data) -> dict:
    """Both curves, and jaxattn's time (and epochs) to the tutorial's final BLEU."""
    config = common.base_config(args.data_path)
    steps_per_epoch = data.steps_per_epoch(config.train.batch_size)
    result = {
        "split": args.decode_split,
        "epochs": args.epochs,
        "steps_per_epoch": steps_per_epoch,
        "batch": config.train.batch_size,
        "eval_every_epochs": args.eval_every,
    }
    result["jax"] = {"curve": jax_curve(args, config, data, steps_per_epoch)}
    curve = torch_curve(args, config, data, steps_per_epoch)
    result["torch"] = {"curve": curve, "threads": torch.get_num_threads()}
    target = curve[-1]["bleu"]
    reached = next((p for p in result["jax"]["curve"] if p["bleu"] >= target), None)
    result["tutorial_bleu"] = target
    result["jax_time_to_tutorial_bleu_s"] = reached["train_wall_s"] if reached else None
    result["jax_epochs_to_tutorial_bleu"] = reached["epoch"] if reached else None
    result["torch_time_to_its_bleu_s"] = curve[-1]["train_wall_s"]
    return result
