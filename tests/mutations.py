"""Mutation check of the test suite: one-line breaking changes that some test must catch.

    python tests/mutations.py                 # every mutation, one at a time
    python tests/mutations.py --only NAME ... # some (a NAME ending in '*' is a prefix)
    python tests/mutations.py --baseline      # the selections must pass unmutated
    python tests/mutations.py --list          # with 'stale' beside the entries to update
    python tests/mutations.py --tests tests/test_rnn.py ...  # those whose selection runs these
    python tests/mutations.py --sample 4 --seed 1  # 4 of the selected, drawn at random (CI)
    python tests/mutations.py --rev HEAD      # mutate a git revision, not the working tree

The repository is copied once to a temporary directory (without .venv, .git, runs, caches);
each mutation is applied there, its test selection runs with cwd and PYTHONPATH = the copy (so
the copy's `jaxattn` is imported, not the editable install), and the file is restored. A
mutation is caught when the selection fails (pytest exit 1); 'stale' means its snippet is not
exactly once in the file (update the entry), 'error' a pytest usage/collection error or an
empty selection. The repository itself is never modified. Not collected by pytest (no test_
prefix). Exit status 0 only if every mutation run was caught.
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from typing import NamedTuple

from shared import ROOT

IGNORE = shutil.ignore_patterns(
    ".venv",
    "venv",
    ".git",
    "runs",
    "workdirs",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    "*.egg-info",
    "build",
    "dist",
)


class Mutation(NamedTuple):
    name: str
    file: str  # relative to the repository root
    old: str  # exact snippet, found exactly once
    new: str
    select: str  # pytest arguments (shlex-split) that must fail


M = Mutation
TS = "tests/test_train_step.py"
MUTATIONS = [
    # ---------------------------------------------------------- issue 17's five named changes
    M(
        "train_loss_over_padding",
        "jaxattn/training/loop.py",
        "mask = loss_mask(batch, tc.loss_over_padding)\n    denom",
        "mask = loss_mask(batch, True)\n    denom",
        f"{TS} -k masked_mean",
    ),
    M(
        "no_grad_clip",
        "jaxattn/training/optim.py",
        "opt = optax.chain(optax.clip_by_global_norm(tc.grad_clip), opt)",
        "opt = optax.chain(opt)",
        f"{TS} -k grad_clip",
    ),
    M(
        "metrics_bleu_swapped",
        "jaxattn/metrics.py",
        "b = bleu.corpus_score(hypotheses, [references])",
        "b = bleu.corpus_score(references, [hypotheses])",
        "tests/test_metrics.py -k asymmetric",
    ),
    M(
        "luong_feed_zeros",
        "jaxattn/model/decoders.py",
        "x = jnp.concatenate([emb, state.feed], axis=-1)",
        "x = jnp.concatenate([emb, jnp.zeros_like(state.feed)], axis=-1)",
        "tests/test_decoders.py -k luong_fed",
    ),
    M(
        "greedy_no_eos_stop",
        "jaxattn/search/greedy.py",
        "done=c.done | (tok == eos_id),",
        "done=c.done,",
        "tests/test_search.py -k greedy_matches",
    ),
    # ------------------------------------------------------------------ masking and lengths
    M(
        "valid_mask_off_by_one",
        "jaxattn/model/rnn.py",
        "return jnp.arange(max_len)[None, :] < lengths[:, None]",
        "return jnp.arange(max_len)[None, :] <= lengths[:, None]",
        "tests/test_rnn.py -k valid_mask",
    ),
    M(
        "attention_mask_dropped",
        "jaxattn/model/seq2seq.py",
        "mask = valid_mask(src_len, src.shape[1])  # [B, S]",
        "mask = None",
        "tests/test_models.py -k masking_and_padding",
    ),
    M(
        "encoder_reads_padding",
        "jaxattn/model/seq2seq.py",
        "lengths = src_len if self.encoder_lengths else None",
        "lengths = None",
        "tests/test_models.py -k masking_and_padding",
    ),
    M(
        "masked_softmax_unmasked",
        "jaxattn/model/attention_core.py",
        "weights = jax.nn.softmax(jnp.where(mask, scores, fill).astype(jnp.float32), axis=axis)",
        "weights = jax.nn.softmax(scores.astype(jnp.float32), axis=axis)",
        "tests/test_attention.py -k masked_softmax",
    ),
    M(
        "pipeline_no_eos",
        "jaxattn/data/batching.py",
        "    ids.append(eos_id)\n    return ids",
        "    return ids",
        "tests/test_data_pipeline.py -k shapes_padding",
    ),
    M(
        "pipeline_lengths_short",
        "jaxattn/data/batching.py",
        "lens = np.fromiter(map(len, rows), np.int32, len(rows))",
        "lens = np.fromiter((len(r) - 1 for r in rows), np.int32, len(rows))",
        "tests/test_data_pipeline.py -k shapes_padding",
    ),
    M(
        "eval_cut_drops_eos",
        "jaxattn/data/batching.py",
        "del ids[max_positions - 1 :]",
        "del ids[max_positions :]",
        "tests/test_data_eval_cut.py",
    ),
    M(
        "prepared_rows_one_id_too_many",
        "jaxattn/data/prepared.py",
        "out.append(ids[a:b].tolist())",
        "out.append(ids[a : b + 1].tolist())",
        "tests/test_prepared.py -k encoded_text",
    ),
    M(
        "tfds_keys_not_spread_over_the_buckets",
        "jaxattn/data/builders.py",
        'shift = 128 - max(counts.get("lines", 1), 1).bit_length()',
        "shift = 0",
        "tests/test_data_builders.py -k spills",
    ),
    M(
        "tfds_buffer_not_lowered",
        "jaxattn/data/builders.py",
        "shuffle.MAX_MEM_BUFFER_SIZE = SPILL_BUFFER if buffer is None else buffer",
        "shuffle.MAX_MEM_BUFFER_SIZE = saved_buffer",
        "tests/test_data_builders.py -k spills",
    ),
    M(
        "fast_text_reader_wrong_feature",
        "jaxattn/data/builders.py",
        "return [parse(r).features.feature[key].bytes_list.value[0] for r in records]",
        'return [parse(r).features.feature["src"].bytes_list.value[0] for r in records]',
        "tests/test_data_builders.py -k spills",
    ),
    M(
        "counts_uint8_overflow",
        "jaxattn/data/prepared.py",
        "return np.uint8 if top < 255 else",
        "return np.uint8 if top < 256 else",
        "tests/test_prepared.py -k small",
    ),
    M(
        "file_array_reads_from_the_header",
        "jaxattn/data/prepared.py",
        "data = os.pread(self._fd, count * size, self.start + start * size)",
        "data = os.pread(self._fd, count * size, start * size)",
        "tests/test_prepared.py -k small",
    ),
    M(
        "stale_folders_of_live_processes_deleted",
        "jaxattn/data/prepared.py",
        "            continue  # alive: it may be writing now",
        "            pass",
        "tests/test_prepared.py -k killed",
    ),
    M(
        "prepared_key_ignores_the_vocabularies",
        "jaxattn/data/prepared.py",
        'vocabs=[_sha("\\n".join(v.tokens).encode()) for v in (tp.src_vocab, tp.tgt_vocab)],',
        "vocabs=[],",
        "tests/test_prepared.py -k new_entry",
    ),
    M(
        "prepared_entry_kept_after_a_failure",
        "jaxattn/data/prepared.py",
        "    except BaseException:\n        shutil.rmtree(tmp, ignore_errors=True)",
        "    except BaseException:\n        os.rename(tmp, directory)",
        "tests/test_prepared.py -k interrupted",
    ),
    M(
        "vocab_entry_key_ignores_the_vocab_fields",
        "jaxattn/data/prepared.py",
        'if k.startswith(("vocab_", "sp_")) or k in ("lowercase", "tutorial_ids")',
        'if k.startswith(("sp_",)) or k in ("lowercase", "tutorial_ids")',
        "tests/test_prepared.py -k keyed_by",
    ),
    M(
        "streamed_split_counts_left_out",
        "jaxattn/data/builders.py",
        "        _add(self.info.metadata, counts)\n",
        "",
        "tests/test_prepared.py -k streaming_builder",
    ),
    M(
        "token_batch_over_budget",
        "jaxattn/data/batching.py",
        'end = min(int(np.searchsorted(widths, w, "right")), start + capacity(w))',
        'end = min(int(np.searchsorted(widths, w, "right")), start + capacity(w) + multiple)',
        "tests/test_token_batches.py -k within_budget",
    ),
    M(
        "token_batch_shards_overlap",
        "jaxattn/data/pipeline.py",
        "mine = d._train_rows[pairs[self.shard_index * share : (self.shard_index + 1) * share]]",
        "mine = d._train_rows[pairs[:share]]",
        "tests/test_token_batches.py -k shards",
    ),
    M(
        "eval_token_batches_drop_last",
        "jaxattn/inference/predict.py",
        "chunks = [(order[a:b], rows) for a, b, rows in cuts]",
        "chunks = [(order[a : b - 1] or order[a:b], rows) for a, b, rows in cuts]",
        "tests/test_token_batches.py -k plan_decoding",
    ),
    M(
        "reverse_padded_moves_padding",
        "jaxattn/model/rnn.py",
        "idx = jnp.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)  # [B, T]",
        "idx = x.shape[1] - 1 - t + 0 * lengths[:, None]  # [B, T]",
        "tests/test_rnn.py -k valid_mask_and_reverse_padded",
    ),
    # ------------------------------------------------------------------------------ losses
    M(
        "loss_mask_drops_eos",
        "jaxattn/training/losses.py",
        'return valid_mask(batch["tgt_len"], tgt.shape[1]).astype(jnp.float32)',
        'return valid_mask(batch["tgt_len"] - 1, tgt.shape[1]).astype(jnp.float32)',
        "tests/test_train.py -k loss_mask_and_label_smoothing",
    ),
    M(
        "train_step_no_label_smoothing",
        "jaxattn/training/loop.py",
        'losses = token_losses(logits, batch["tgt"], tc.label_smoothing) * mask',
        'losses = token_losses(logits, batch["tgt"]) * mask',
        f"{TS} -k label_smoothing_and_free_running",
    ),
    M(
        "label_smoothing_off",
        "jaxattn/training/losses.py",
        "    if eps:\n        loss = loss - eps",
        "    if eps > 1:\n        loss = loss - eps",
        "tests/test_train.py -k loss_mask_and_label_smoothing",
    ),
    M(
        "loss_per_sentence_mean",
        "jaxattn/training/loop.py",
        "denom = jnp.maximum(mask.sum(), 1.0)  # the whole batch's tokens",
        "denom = mask.shape[0]",
        f"{TS} -k masked_mean",
    ),
    M(
        "loss_chunk_first_chunk_only",
        "jaxattn/training/losses.py",
        "i * chunk < real,",
        "i * chunk <= 0,",
        f"{TS} -k loss_chunk",
    ),
    M(
        "loss_chunk_never_taken",
        "jaxattn/training/loop.py",
        "real_rows_only = chunk and forced and",
        "real_rows_only = False and",
        f"{TS} -k projects_the_real_rows",
    ),
    # ------------------------------------------- issue 28: accumulation, best metric, plateau
    M(
        "accumulate_mean_of_micro_means",
        "jaxattn/training/loop.py",
        "return losses.sum() / denom",
        "return losses.sum() / jnp.maximum(mask.sum(), 1.0) / a",
        f"{TS} -k accumulated",
    ),
    M(
        "accumulate_last_micro_batch_only",
        "jaxattn/training/loop.py",
        "return jax.tree.map(jnp.add, total, one), None",
        "return one, None",
        f"{TS} -k accumulated",
    ),
    M(
        "plateau_reduces_once_only",
        "jaxattn/training/optim.py",
        "not since_best or since_best % tc.plateau_patience:",
        "since_best != tc.plateau_patience:",
        f"{TS} -k plateau_lowers",
    ),
    M(
        "plateau_ignores_min_learning_rate",
        "jaxattn/training/optim.py",
        "new = max(rate * tc.plateau_factor, tc.min_learning_rate)",
        "new = rate * tc.plateau_factor",
        f"{TS} -k plateau_lowers",
    ),
    M(
        "stopping_ignores_min_delta",
        "jaxattn/training/stopping.py",
        "if best is None or (gain if higher else -gain) > self.min_delta:",
        "if best is None or (gain if higher else -gain) > 0:",
        "tests/test_stopping.py -k since_best",
    ),
    M(
        "stopping_loss_higher_is_better",
        "jaxattn/metrics.py",
        'BEST_METRICS = {"bleu": True, "chrf": True, "loss": False}',
        'BEST_METRICS = {"bleu": True, "chrf": True, "loss": True}',
        "tests/test_stopping.py -k since_best",
    ),
    M(
        "best_checkpoint_by_highest_loss",
        "jaxattn/rundir/checkpointer.py",
        "return value if BEST_METRICS[metric] else -value",
        "return value",
        "tests/test_checkpoints.py -k best_by_loss",
    ),
    M(
        "eval_step_label_smoothing",
        "jaxattn/training/loop.py",
        '    losses = token_losses(logits, batch["tgt"]) * mask\n    return {"loss_sum"',
        '    losses = token_losses(logits, batch["tgt"], 0.1) * mask\n    return {"loss_sum"',
        f"{TS} -k eval_step",
    ),
    M(
        "eval_step_chunked_label_smoothing",
        "jaxattn/training/loop.py",
        "loss_sum = real_rows_loss_sum(model, params, batch, mask, 0.0, chunk)",
        "loss_sum = real_rows_loss_sum(model, params, batch, mask, 0.1, chunk)",
        f"{TS} -k eval_step",
    ),
    M(
        "eval_step_counts_padding",
        "jaxattn/training/loop.py",
        'return {"loss_sum": losses.sum(), "tokens": mask.sum()}',
        'return {"loss_sum": losses.sum(), "tokens": mask.size}',
        f"{TS} -k eval_step",
    ),
    M(
        "train_step_eval_mode",
        "jaxattn/training/loop.py",
        "teacher_forcing_ratio=ratio,\n            rng=tf_key,\n            train=True,",
        "teacher_forcing_ratio=ratio,\n            rng=tf_key,\n            train=False,",
        f"{TS} -k training_mode",
    ),
    M(
        "train_step_always_forced",
        "jaxattn/training/loop.py",
        "teacher_forcing_ratio=ratio,\n            rng=tf_key,\n            train=True,",
        "teacher_forcing_ratio=1.0,\n            rng=tf_key,\n            train=True,",
        f"{TS} -k label_smoothing_and_free_running",
    ),
    M(
        "train_step_ignores_schedule",
        "jaxattn/training/loop.py",
        "ratio = teacher_forcing_schedule(tc)(state.step)",
        "ratio = tc.teacher_forcing_ratio",
        f"{TS} -k scheduled_ratio",
    ),
    M(
        "average_takes_last_tree",
        "jaxattn/rundir/averaging.py",
        "out.append(mean.astype(dtype))",
        "out.append(values[-1])",
        "tests/test_checkpoints.py -k average_params",
    ),
    M(
        "average_best_picks_worst",
        "jaxattn/rundir/averaging.py",
        "sorted(scored, reverse=True)[:n]",
        "sorted(scored)[:n]",
        "tests/test_checkpoints.py -k last_and_best",
    ),
    # ----------------------------------------------------------------- EMA of the weights
    M(
        "ema_weights_swapped",
        "jaxattn/training/loop.py",
        "d * e + (1 - d) * p",
        "d * p + (1 - d) * e",
        "tests/test_ema.py -k numpy",
    ),
    M(
        "ema_start_one_late",
        "jaxattn/training/loop.py",
        "state.step <= tc.ema_start",
        "state.step < tc.ema_start",
        "tests/test_ema.py -k numpy",
    ),
    M(
        "ema_not_saved",
        "jaxattn/rundir/checkpointer.py",
        "items[EMA_ITEM] = ocp.args.StandardSave(ema)",
        "pass",
        "tests/test_ema.py -k checkpoint_keeps",
    ),
    # ------------------------------------------------------------------ optimizer options
    M(
        "sgd_momentum",
        "jaxattn/training/optim.py",
        '"sgd": lambda tc, lr: optax.sgd(lr),',
        '"sgd": lambda tc, lr: optax.sgd(lr, momentum=0.9),',
        f"{TS} -k optimizer_updates",
    ),
    M(
        "adam_default_betas",
        "jaxattn/training/optim.py",
        '"adam": lambda tc, lr: optax.adam(lr, b1=tc.b1, b2=tc.b2),',
        '"adam": lambda tc, lr: optax.adam(lr),',
        f"{TS} -k optimizer_updates",
    ),
    M(
        "adamw_no_weight_decay",
        "jaxattn/training/optim.py",
        "b2=tc.b2, weight_decay=tc.weight_decay)",
        "b2=tc.b2, weight_decay=0.0)",
        f"{TS} -k optimizer_updates",
    ),
    M(
        "optimizer_ignores_schedule",
        "jaxattn/training/optim.py",
        '"sgd": lambda tc, lr: optax.sgd(lr),',
        '"sgd": lambda tc, lr: optax.sgd(tc.learning_rate),',
        f"{TS} -k follows_the_schedule",
    ),
    # -------------------------------------------------------------------------- schedules
    M(
        "cosine_twice_as_long",
        "jaxattn/training/optim.py",
        "optax.cosine_decay_schedule(lr, max(total, 1)),",
        "optax.cosine_decay_schedule(lr, 2 * max(total, 1)),",
        f"{TS} -k schedules_values",
    ),
    M(
        "warmup_cosine_decay_steps",
        "jaxattn/training/optim.py",
        "max(warmup, 1), max(total, 2))",
        "max(warmup, 1), max(total - warmup, 2))",
        f"{TS} -k schedules_values",
    ),
    M(
        "rsqrt_without_sqrt",
        "jaxattn/training/optim.py",
        "jnp.sqrt(w / jnp.maximum(s + 1, w))",
        "(w / jnp.maximum(s + 1, w))",
        f"{TS} -k schedules_values",
    ),
    # -------------------------------------------------------------------- teacher forcing
    M(
        "teacher_forcing_coin_inverted",
        "jaxattn/model/seq2seq.py",
        "jax.random.bernoulli(rng, teacher_forcing_ratio, targets.shape)",
        "jax.random.bernoulli(rng, 1.0 - teacher_forcing_ratio, targets.shape)",
        f"{TS} -k share_of_forced",
    ),
    M(
        "teacher_forcing_where_swapped",
        "jaxattn/model/decoders.py",
        "tokens = jnp.where(force, gold, prev_pred)",
        "tokens = jnp.where(force, prev_pred, gold)",
        "tests/test_decoders.py -k teacher_forcing_matches",
    ),
    M(
        "decoder_embedding_dropout_always_off",
        "jaxattn/model/decoders.py",
        "return self.drop(self._lookup(tokens), deterministic=not train)",
        "return self.drop(self._lookup(tokens), deterministic=True)",
        "tests/test_decoders.py -k test_decoder_dropout",
    ),
    M(
        "encoder_dropout_in_eval",
        "jaxattn/model/encoders.py",
        "x = nn.Dropout(self.dropout, deterministic=not train)(x)",
        "x = nn.Dropout(self.dropout, deterministic=False)(x)",
        "tests/test_encoders.py -k embedding_dropout",
    ),
    M(
        "decoder_bos_off",
        "jaxattn/model/decoders.py",
        "bos = jnp.full((batch, 1), bos_id, targets.dtype)",
        "bos = jnp.full((batch, 1), bos_id + 1, targets.dtype)",
        "tests/test_decoders.py -k teacher_forcing_matches",
    ),
    # ------------------------------------------------------------ search stopping, scoring
    M(
        "greedy_scores_after_eos",
        "jaxattn/search/greedy.py",
        "log_probs=jnp.where(live, c.log_probs + tok_logp, c.log_probs),",
        "log_probs=c.log_probs + tok_logp,",
        "tests/test_search.py -k greedy_matches",
    ),
    M(
        "greedy_lengths_after_eos",
        "jaxattn/search/greedy.py",
        "lengths=c.lengths + live.astype(jnp.int32),",
        "lengths=c.lengths + 1,",
        "tests/test_search.py -k greedy_matches",
    ),
    M(
        "greedy_pad_default_zero",
        "jaxattn/search/greedy.py",
        "    pad_id = eos_id if pad_id is None else pad_id\n    return _greedy(",
        "    pad_id = 0 if pad_id is None else pad_id\n    return _greedy(",
        "tests/test_search.py -k greedy_matches",
    ),
    M(
        "greedy_starts_from_eos",
        "jaxattn/search/greedy.py",
        "prev=jnp.full((batch,), bos_id, jnp.int32),\n        done=",
        "prev=jnp.full((batch,), eos_id, jnp.int32),\n        done=",
        "tests/test_search.py -k greedy_matches",
    ),
    M(
        "length_penalty_formula",
        "jaxattn/search/core.py",
        "return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha",
        "return ((6.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha",
        "tests/test_search.py -k length_penalty_changes_ranking",
    ),
    M(
        "beam_finished_unnormalized",
        "jaxattn/search/beam.py",
        "top_logp / length_penalty(length, alpha), weights, src_len, beta",
        "top_logp, weights, src_len, beta",
        "tests/test_search.py -k exact_nbest",
    ),
    M(
        "beam_stops_at_best_not_worst",
        "jaxattn/search/beam.py",
        "done = c.done | (best == neg_inf) | (bound < fin_scores[:, -1])",
        "done = c.done | (best == neg_inf) | (bound < fin_scores[:, 0])",
        "tests/test_search.py -k exact_nbest",
    ),
    M(
        "beam_bound_ignores_future_penalty",
        "jaxattn/search/beam.py",
        "bound = jnp.maximum(best / lp_next, best / length_penalty(steps, alpha))",
        "bound = best / lp_next",
        "tests/test_search.py -k does_not_stop_early",
    ),
    M(
        "top_k_blocks_in_rank_order",
        "jaxattn/search/core.py",
        "blocks = jnp.sort(blocks, axis=-1)  # in index order",
        "blocks = blocks  # in index order",
        "tests/test_search.py -k blocked_top_k",
    ),
    M(
        "top_k_ignores_last_block",
        "jaxattn/search/core.py",
        "    if full * block < length:\n        maxima",
        "    if False:\n        maxima",
        "tests/test_search.py -k blocked_top_k",
    ),
    M(
        "beam_never_finishes",
        "jaxattn/search/beam.py",
        "ended = (tok == eos_id) & (top_logp > neg_inf)",
        "ended = (tok == -1) & (top_logp > neg_inf)",
        "tests/test_search.py -k exact_nbest",
    ),
    M(
        "nbest_cut_off_ranked_with_finished",
        "jaxattn/search/beam.py",
        "order = jnp.lexsort((-both.scores, ~both.finished), axis=-1)[:, :n]",
        "order = jnp.lexsort((-both.scores,), axis=-1)[:, :n]",
        "tests/test_search.py -k cut_off_greedy",
    ),
    M(
        "peer_warm_compiles_one_shape",
        "benchmarks/peer_joeynmt.py",
        "            if shape not in seen:",
        "            if not seen:",
        "tests/test_benchmark.py -k compiles_no_shape",
    ),
    M(
        "staged_loop_keeps_the_finished",
        "jaxattn/search/core.py",
        "pick = jnp.argsort(~live(carry), stable=True)[:half]  # live first",
        "pick = jnp.argsort(live(carry), stable=True)[:half]",
        "tests/test_search.py -k staged",
    ),
    M(
        "staged_loop_results_not_put_back",
        "jaxattn/search/core.py",
        "return _put(full, keep(carry), pick, batch)",
        "return full",
        "tests/test_search.py -k staged",
    ),
    M(
        "greedy_row_in_beam_follows_beam_0",
        "jaxattn/search/beam.py",
        "rows_of = jnp.concatenate([rows_of, first + k], axis=1)  # [B, R]",
        "rows_of = jnp.concatenate([rows_of, first + parent[:, :1]], axis=1)",
        "tests/test_search.py -k stages_equal",
    ),
    M(
        "keep_greedy_ignored",
        "jaxattn/search/beam.py",
        "keep_greedy=keep_greedy and beam_size > 1,",
        "keep_greedy=False,",
        "tests/test_search.py -k keep_greedy_fixes",
    ),
    M(
        "nbest_fill_from_alive_only",
        "jaxattn/search/beam.py",
        "from_fin = slot < n_fin  # [B, N]",
        "from_fin = slot < 0  # [B, N]",
        "tests/test_search.py -k exact_nbest",
    ),
    # ------------------------------------------------------ vocabulary ids, special tokens
    M(
        "vocab_bos_eos_swapped",
        "jaxattn/data/vocab.py",
        "self.pad_id, self.bos_id, self.eos_id, self.unk_id = 0, 1, 2, 3",
        "self.pad_id, self.bos_id, self.eos_id, self.unk_id = 0, 2, 1, 3",
        "tests/test_data_text.py -k vocab_default",
    ),
    M(
        "vocab_tutorial_pad_is_eos",
        "jaxattn/data/vocab.py",
        "self.bos_id, self.eos_id, self.pad_id, self.unk_id = 0, 1, 0, None",
        "self.bos_id, self.eos_id, self.pad_id, self.unk_id = 0, 1, 1, None",
        "tests/test_data_text.py -k vocab_tutorial",
    ),
    M(
        "vocab_decode_past_eos",
        "jaxattn/data/vocab.py",
        "out.append(self.tokens[i])\n                break",
        "out.append(self.tokens[i])\n                continue",
        "tests/test_data_text.py -k vocab_default",
    ),
    M(
        "vocab_keeps_bos",
        "jaxattn/data/vocab.py",
        "self._strip = {self.pad_id, self.bos_id}",
        "self._strip = {self.pad_id}",
        "tests/test_data_text.py -k vocab_default",
    ),
    M(
        "vocab_unknown_to_pad",
        "jaxattn/data/vocab.py",
        "return [get(t, unk) for t in tokens]",
        "return [get(t, 0) for t in tokens]",
        "tests/test_data_text.py -k vocab_default",
    ),
    M(
        "vocab_min_freq_strict",
        "jaxattn/data/vocab.py",
        "if n >= min_freq and t not in specials]",
        "if n > min_freq and t not in specials]",
        "tests/test_data_text.py -k vocab_min_freq",
    ),
    M(
        "vocab_freq_order_reversed",
        "jaxattn/data/vocab.py",
        "words.sort(key=lambda t: -counts[t])",
        "words.sort(key=lambda t: counts[t])",
        "tests/test_data_text.py -k vocab_min_freq",
    ),
    M(
        "vocab_max_size_ignores_specials",
        "jaxattn/data/vocab.py",
        "words = words[: max_size - len(specials)]",
        "words = words[:max_size]",
        "tests/test_data_text.py -k vocab_min_freq",
    ),
    M(
        "prediction_decodes_eos_only_rows",
        "jaxattn/inference/predict.py",
        "todo = [i for i, n in enumerate(lengths) if n > 1]",
        "todo = list(range(len(lengths)))",
        "tests/test_predict.py -k 'plan_skips or greedy_texts'",
    ),
    M(
        "prediction_loses_input_order",
        "jaxattn/inference/predict.py",
        "out[i] = target_text(",
        "out[row] = target_text(",
        "tests/test_predict.py -k greedy_texts",
    ),
    M(
        "decode_ignores_alpha",
        "jaxattn/search/__init__.py",
        "alpha=0.0 if o.alpha is None else o.alpha,",
        "alpha=0.0,",
        "tests/test_search.py -k decode_passes",
    ),
    M(
        "options_for_other_methods_accepted",
        "jaxattn/search/options.py",
        "if o is None or not o.refuse_unused or method in o.methods or o.is_default(value):",
        "if True:",
        "tests/test_search_options.py -k new_option",
    ),
    M(
        "option_flags_without_the_tables_help",
        "jaxattn/tools/cli.py",
        "_DEFINE[o.kind](o.name, None, o.help, flag_values=FLAGS)",
        '_DEFINE[o.kind](o.name, None, "", flag_values=FLAGS)',
        "tests/test_search_options.py -k flags_are_the_table",
    ),
    M(
        "no_repeat_ngram_misses_the_latest_ngram",
        "jaxattn/search/core.py",
        "match = jnp.broadcast_to(jnp.arange(steps) <= t - n, (rows, steps))",
        "match = jnp.broadcast_to(jnp.arange(steps) < t - n, (rows, steps))",
        "tests/test_search.py -k constrained_search_is_exact",
    ),
    M(
        "no_repeat_ngram_compares_one_token_less",
        "jaxattn/search/core.py",
        "for i in range(n - 1):\n                match",
        "for i in range(n - 2):\n                match",
        "tests/test_search.py -k constrained_search_is_exact",
    ),
    M(
        "min_len_one_token_short",
        "jaxattn/search/core.py",
        "early = t < self.min_len",
        "early = t < self.min_len - 1",
        "tests/test_search.py -k constrained_search_is_exact",
    ),
    M(
        "min_len_without_the_eos_fallback",
        "jaxattn/search/core.py",
        "early = early & jnp.any(content & (logits > -jnp.inf), axis=-1)  # [N]",
        "early = early & True",
        "tests/test_search.py -k falls_back",
    ),
    M(
        "beam_constraints_on_the_wrong_beams_history",
        "jaxattn/search/beam.py",
        "history = c.alive_tokens.reshape(batch * k, steps)",
        "history = c.alive_tokens[:, ::-1].reshape(batch * k, steps)",
        "tests/test_search.py -k constrained_search_is_exact",
    ),
    M(
        "sampling_ignores_the_constraints",
        "jaxattn/search/sample.py",
        "        pick_args=keys,\n        constraints=constraints,",
        "        pick_args=keys,",
        "tests/test_search.py -k every_method",
    ),
    M(
        "decode_drops_the_constraints",
        "jaxattn/search/__init__.py",
        "ids.update(min_len=o.min_len, no_repeat_ngram=o.no_repeat_ngram)",
        "ids.update()",
        "tests/test_search_options.py -k constraints_reach",
    ),
    M(
        "no_repeat_ngram_one_accepted",
        "jaxattn/search/options.py",
        "if ok and bounded and not (self.off is not None and v == self.off):",
        "if ok and bounded and not (self.off is not None and v <= 1):",
        "tests/test_search.py -k bad_constraints",
    ),
    M(
        "option_upper_bound_ignored",
        "jaxattn/search/options.py",
        "ok = ok and (hi is None or (v < hi if self.high_open else v <= hi))",
        "ok = ok and True",
        "tests/test_search_options.py -k new_option",
    ),
    # ----------------------------------------------- tokenization, normalization round trips
    M(
        "normalize_keeps_accents",
        "jaxattn/data/text.py",
        "s = strip_accents(remove_invisible(s).lower().strip())",
        "s = remove_invisible(s).lower().strip()",
        "tests/test_data_text.py -k normalize_tutorial",
    ),
    M(
        "word_detokenize_leaves_space",
        "jaxattn/data/text.py",
        'return " ".join(tokens).replace(" " + JOINER, "").replace(JOINER, "")',
        'return " ".join(tokens).replace(JOINER, "")',
        "tests/test_data_text.py -k word_tokenizer",
    ),
    M(
        "char_detokenize_drops_spaces",
        "jaxattn/data/text.py",
        'return "".join(tokens).replace(SPACE_MARK, " ").strip()',
        'return "".join(tokens).replace(SPACE_MARK, "").strip()',
        "tests/test_data_text.py -k detokenize_inverts",
    ),
    M(
        "filter_length_inclusive",
        "jaxattn/data/text.py",
        'len(src.split(" ")) >= max_length',
        'len(src.split(" ")) > max_length',
        "tests/test_data_text.py -k tutorial_filter",
    ),
    M(
        "lowercase_option_ignored",
        "jaxattn/data/text.py",
        "        if self.lowercase:\n            text = text.lower()",
        "        if False:\n            text = text.lower()",
        "tests/test_data_text.py -k tokenizer_options",
    ),
    # ---------------------------------------------------- issue 30: held-out split membership
    M(
        "split_group_keyed_by_largest",
        "jaxattn/data/splits.py",
        "smallest[root] = min(smallest.get(root, s), s)",
        "smallest[root] = max(smallest.get(root, s), s)",
        "tests/test_data_splits.py",
    ),
    M(
        "split_hash_without_separator",
        "jaxattn/data/splits.py",
        'h = hashlib.blake2b(f"{seed}\\0{key}".encode(), digest_size=8).digest()',
        'h = hashlib.blake2b(f"{seed}{key}".encode(), digest_size=8).digest()',
        "tests/test_data_splits.py",
    ),
    # ------------------------------------------------------------------ checkpoint contents
    M(
        "checkpoint_iterator_not_restored",
        "jaxattn/rundir/checkpointer.py",
        'items["data_iter"] = grain.checkpoint.CheckpointRestore(data_iter)\n'
        "        if ema is not None and self.has_ema(step):\n"
        "            items[EMA_ITEM] = ocp.args.StandardRestore(ema)\n"
        "        restored = self.manager.restore(step, args",
        "pass\n        if ema is not None and self.has_ema(step):\n"
        "            items[EMA_ITEM] = ocp.args.StandardRestore(ema)\n"
        "        restored = self.manager.restore(step, args",
        "tests/test_checkpoints.py",
    ),
    M(
        "checkpoint_optimizer_state_reset",
        "jaxattn/rundir/checkpointer.py",
        "state=ocp.args.StandardSave(state),",
        "state=ocp.args.StandardSave(state.replace(opt_state=state.tx.init(state.params))),",
        "tests/test_checkpoints.py",
    ),
    M(
        "checkpoint_meta_without_config",
        "jaxattn/rundir/checkpointer.py",
        'meta=ocp.args.JsonSave({**meta, "step": int(step), "metrics": metrics}),',
        'meta=ocp.args.JsonSave({"step": int(step), "metrics": metrics}),',
        "tests/test_checkpoints.py",
    ),
    M(
        "checkpoint_keeps_only_latest",
        "jaxattn/rundir/checkpointer.py",
        "keep = [policies.LatestN(n=max(2, keep_latest))]",
        "keep = [policies.LatestN(n=max(2, keep_latest))]; best_metric = None",
        "tests/test_checkpoints.py",
    ),
    # ----------------------------------------------------------------------------- metrics
    M(
        "metrics_chrf_swapped",
        "jaxattn/metrics.py",
        "c = chrf.corpus_score(hypotheses, [references])",
        "c = chrf.corpus_score(references, [hypotheses])",
        "tests/test_metrics.py -k asymmetric",
    ),
    M(
        "metrics_chrf_plus_plus",
        "jaxattn/metrics.py",
        "chrf = sacrebleu.metrics.CHRF()",
        "chrf = sacrebleu.metrics.CHRF(word_order=2)",
        "tests/test_metrics.py -k asymmetric",
    ),
    M(
        "metrics_tokenize_ignored",
        "jaxattn/metrics.py",
        "bleu = sacrebleu.metrics.BLEU(tokenize=tokenize)",
        "bleu = sacrebleu.metrics.BLEU()",
        "tests/test_metrics.py -k tokenize_option",
    ),
    M(
        "metrics_lowercased",
        "jaxattn/metrics.py",
        "bleu = sacrebleu.metrics.BLEU(tokenize=tokenize)",
        "bleu = sacrebleu.metrics.BLEU(tokenize=tokenize, lowercase=True)",
        "tests/test_metrics.py -k asymmetric",
    ),
    # -------------------------------------------- reliability (tests/test_faults.py, issue 11)
    M(
        "keep_best_policy_dropped",
        "jaxattn/rundir/checkpointer.py",
        "policies.BestN(get_metric_fn=best_fn, n=1, keep_checkpoints_without_metrics=False)",
        "policies.BestN(get_metric_fn=best_fn, n=0, keep_checkpoints_without_metrics=False)",
        "tests/test_faults.py -k keep_best_policy_unit",
    ),
    M(
        "best_step_is_latest",
        "jaxattn/rundir/checkpointer.py",
        "return max(scored)[1] if scored else None",
        "return self.all_steps()[-1] if scored else None",
        "tests/test_faults.py -k keep_best_policy_unit",
    ),
    M(
        "corrupt_step_left_in_place",
        "jaxattn/rundir/checkpointer.py",
        "            os.replace(src, dst)",
        "            pass",
        "tests/test_faults.py -k corrupt_latest_is_moved",
    ),
    M(
        "optimizer_change_called_corrupt",
        "jaxattn/rundir/checkpointer.py",
        "state = self._restore_params_and_step(step, abstract_state, data_iter)",
        "state = self._restore_params_and_step(step, None, data_iter)",
        "tests/test_faults.py -k change0",
    ),
    M(
        "divergence_guard_spike_off",
        "jaxattn/training/loop.py",
        "if len(self.losses) >= self.min_history:",
        "if len(self.losses) >= 10**9:",
        "tests/test_guard.py -k spike",
    ),
    M(
        "divergence_guard_no_floor",
        "jaxattn/training/loop.py",
        "if worst > max(f * median, guess):",
        "if worst > f * median:",
        "tests/test_guard.py -k low_loss_noise",
    ),
    M(
        "divergence_guard_blow_up_off",
        "jaxattn/training/loop.py",
        "if worst > f * guess:",
        "if worst > f * guess * 1e30:",
        "tests/test_guard.py -k blow_up",
    ),
    M(
        "divergence_guard_no_learning_off",
        "jaxattn/training/loop.py",
        "            if median >= guess:",
        "            if median >= guess * 2:",
        "tests/test_guard.py -k never_learns",
    ),
    M(
        "stale_vocab_reused",
        "jaxattn/training/loop.py",
        "vocab_dir=workdir if steps else None",
        "vocab_dir=workdir",
        "tests/test_faults.py -k without_checkpoints",
    ),
    M(
        "config_field_unchecked",
        "jaxattn/config.py",
        "        why = checks[key](cfg[key])",
        "        why = None",
        "tests/test_faults.py -k every_bad_field -x",
    ),
    M(
        "attention_size_rule_dropped",
        "jaxattn/model/attention_core.py",
        "        if cls.same_size and query_dim != key_dim:",
        "        if False:",
        "tests/test_registries.py -k size_rules",
    ),
    M(
        "legacy_query_is_hidden_only",
        "jaxattn/model/decoders.py",
        "        return c.embed_dim + c.hidden  # [embedded; hidden]",
        "        return c.hidden",
        "tests/test_registries.py -k legacy_query",
    ),
    M(
        "workdir_not_locked",
        "jaxattn/rundir/files.py",
        "            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)",
        "            pass",
        "tests/test_faults.py -k second_training",
    ),
    # --------------------------------------------------------------------- the Transformer
    M(
        "mha_no_scale",
        "jaxattn/model/transformer.py",
        'scores = jnp.einsum("bthd,bshd->bhts", q, k) / math.sqrt(q.shape[-1])',
        'scores = jnp.einsum("bthd,bshd->bhts", q, k)',
        "tests/test_transformer_parity.py -k multi_head",
    ),
    M(
        "decoder_not_causal",
        "jaxattn/model/transformer.py",
        "causal = jnp.tril(jnp.ones((steps, steps), bool))[None]",
        "causal = jnp.ones((steps, steps), bool)[None]",
        "tests/test_transformer.py -k steps_match",
    ),
    M(
        "cache_written_one_late",
        "jaxattn/model/transformer.py",
        "write = (jnp.arange(steps) == t[:, None])[:, :, None, None]",
        "write = (jnp.arange(steps) == t[:, None] + 1)[:, :, None, None]",
        "tests/test_transformer.py -k steps_match",
    ),
    M(
        "pre_ln_norms_after",
        "jaxattn/model/transformer.py",
        "return x + self.drop(sublayer(norm(x)), deterministic=not train)",
        "return norm(x + self.drop(sublayer(x), deterministic=not train))",
        "tests/test_transformer_parity.py -k encoder_layer",
    ),
    M(
        "encoder_ignores_padding_mask",
        "jaxattn/model/transformer.py",
        "return layer(x, mask, train=train), None",
        "return layer(x, None, train=train), None",
        "tests/test_transformer.py -k padding_invariance",
    ),
    M(
        "sinusoid_sin_cos_swapped",
        "jaxattn/model/transformer.py",
        "pe = jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1)",
        "pe = jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=-1)",
        "tests/test_transformer.py -k sinusoidal",
    ),
    M(
        "alignment_head_ignored",
        "jaxattn/model/transformer.py",
        "return layer[:, self.alignment_head]",
        "return layer.mean(axis=1)",
        "tests/test_attention_views.py -k alignment_layer_and_head",
    ),
    # ---------------------------------------------- issue 28: tied embeddings, rules, auto fields
    M(
        "share_embeddings_decoder_own_table",
        "jaxattn/model/seq2seq.py",
        "encoder, decoder = encoder.clone(embedding=table), decoder.clone(embedding=table)",
        "encoder = encoder.clone(embedding=table)",
        "tests/test_tied_embeddings.py -k 'bahdanau and share'",
    ),
    M(
        "rnn_tie_embeddings_ignored",
        "jaxattn/model/decoders.py",
        "if self.tie_embeddings:  # h [..., E] @ table^T, no bias",
        "if False:",
        "tests/test_tied_embeddings.py -k 'bahdanau and tie'",
    ),
    M(
        "warmup_rule_not_in_validate",
        "jaxattn/config.py",
        "if tc.num_train_steps > 0:  # with num_epochs: checked once the data is read",
        "if False:",
        "tests/test_config_before_data.py -k warmup_cosine",
    ),
    M(
        "auto_attention_max_length_not_set",
        "jaxattn/training/loop.py",
        "if not steps and not auto.model.attention_max_length:",
        "if False:",
        "tests/test_config_before_data.py -k auto_attention",
    ),
    # ---------------------------------------------------------------- issue 28: alignments, AER
    M(
        "aer_divides_by_possible",
        "jaxattn/inference/alignment.py",
        "aer=1.0 - (a_s + a_p) / (a + s) if a + s else 0.0,",
        "aer=1.0 - (a_s + a_p) / (a + p) if a + p else 0.0,",
        "tests/test_alignment.py -k by_hand",
    ),
    M(
        "alignment_pieces_not_merged",
        "jaxattn/inference/alignment.py",
        "new, visible = k == 0 or tok.startswith(SPACE_MARK), bool(tok.strip(SPACE_MARK))",
        "new, visible = True, True",
        "tests/test_alignment.py -k merges_subwords",
    ),
    M(
        "alignment_eos_column_kept",
        "jaxattn/inference/alignment.py",
        "weights[: len(tgt_tokens), : len(src_tokens)],",
        "weights[: len(tgt_tokens)],",
        "tests/test_alignment.py -k merges_subwords",
    ),
]


def _copy(rev: str | None) -> str:
    tmp = tempfile.mkdtemp(prefix="jaxattn-mutations-")
    dst = os.path.join(tmp, "repo")
    if rev is None:
        shutil.copytree(ROOT, dst, ignore=IGNORE)
    else:
        os.makedirs(dst)
        archive = subprocess.run(
            ["git", "-C", ROOT, "archive", rev], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", dst], input=archive, check=True)
    return dst


def _env(copy: str) -> dict:
    env = dict(os.environ, PYTHONPATH=copy, PYTHONDONTWRITEBYTECODE="1", JAX_PLATFORMS="cpu")
    env.pop("PYTEST_ADDOPTS", None)
    return env


def _check_import(copy: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import jaxattn; print(jaxattn.__file__)"],
        cwd=copy,
        env=_env(copy),
        capture_output=True,
        text=True,
    )
    path = out.stdout.strip()
    if out.returncode or not os.path.realpath(path).startswith(os.path.realpath(copy)):
        sys.exit(f"jaxattn imports from {path or out.stderr[-500:]!r}, not the copy {copy}")
    print(f"jaxattn is imported from the copy: {path}")


def _pytest(copy: str, select: str, timeout: int) -> tuple[int, str]:
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-x",
        "-q",
        "--no-header",
        "-p",
        "no:cacheprovider",
        *shlex.split(select),
    ]
    try:
        r = subprocess.run(
            cmd, cwd=copy, env=_env(copy), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return -1, "timeout"
    tail = (r.stdout + r.stderr).strip().splitlines()
    return r.returncode, tail[-1] if tail else ""


def _count(root: str, m: Mutation) -> int:
    """How many times the snippet of `m` is in its file under `root` (1 unless stale)."""
    path = os.path.join(root, m.file)
    if not os.path.exists(path):
        return 0
    with open(path, encoding="utf-8") as f:
        return f.read().count(m.old)


def _test_file(m: Mutation) -> str:
    """The test file that the selection of `m` runs (its first argument)."""
    return shlex.split(m.select)[0]


def _selected(names: list[str] | None) -> list[Mutation]:
    if not names:
        return MUTATIONS
    names = [n for arg in names for n in arg.split(",") if n]
    out = [
        m
        for m in MUTATIONS
        if any(m.name == n or (n.endswith("*") and m.name.startswith(n[:-1])) for n in names)
    ]
    unknown = [n for n in names if not any(m.name == n or n.endswith("*") for m in MUTATIONS)]
    if unknown:
        sys.exit(f"unknown mutation(s): {unknown}; see --list")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", nargs="+", metavar="NAME", help="mutation names (prefix*)")
    p.add_argument(
        "--tests",
        nargs="+",
        metavar="FILE",
        help="only the mutations whose selection runs one of these test files",
    )
    p.add_argument("--list", action="store_true", help="list the mutations and exit")
    p.add_argument(
        "--baseline",
        action="store_true",
        help="run each distinct selection unmutated (all must pass)",
    )
    p.add_argument(
        "--rev", help="mutate this git revision (git archive) instead of the working tree"
    )
    p.add_argument(
        "--select",
        help="run these pytest arguments instead of each mutation's own "
        "(e.g. the tests that existed before a change)",
    )
    p.add_argument("--timeout", type=int, default=900, help="seconds per pytest run")
    p.add_argument(
        "--sample",
        type=int,
        metavar="N",
        help="run N of the selected mutations drawn at random (a cheap check, e.g. in CI)",
    )
    p.add_argument("--seed", type=int, default=0, help="the draw of --sample (default 0)")
    args = p.parse_args()
    names = [m.name for m in MUTATIONS]
    assert len(set(names)) == len(names), "duplicate mutation names"
    todo = _selected(args.only)
    if args.tests:
        unknown = [f for f in args.tests if not any(_test_file(m) == f for m in MUTATIONS)]
        if unknown:
            sys.exit(f"--tests: no mutation's selection runs {unknown}; see --list")
        todo = [m for m in todo if _test_file(m) in args.tests]
    if args.sample is not None:
        if not 0 < args.sample <= len(todo):
            sys.exit(f"--sample {args.sample}: choose 1 to {len(todo)} (the selected mutations)")
        drawn = set(random.Random(args.seed).sample(range(len(todo)), args.sample))
        todo = [m for i, m in enumerate(todo) if i in drawn]  # in the list's order
    if args.list:
        n_stale = 0
        for m in todo:
            stale = _count(ROOT, m) != 1
            n_stale += stale
            print(f"{m.name:40s} {m.file:28s} {m.select}{'  stale' if stale else ''}")
        return 1 if n_stale else 0

    copy = _copy(args.rev)
    print(f"copy: {copy}")
    _check_import(copy)
    results, t_start = [], time.time()
    try:
        if args.baseline:
            for select in dict.fromkeys(args.select or m.select for m in todo):
                t0 = time.time()
                rc, last = _pytest(copy, select, args.timeout)
                status = "pass" if rc == 0 else f"FAIL (exit {rc})"
                print(f"{status:14s} {time.time() - t0:6.1f}s  {select}  | {last}", flush=True)
                results.append(rc == 0)
            return 0 if all(results) else 1
        for m in todo:
            path = os.path.join(copy, m.file)
            t0 = time.time()
            if _count(copy, m) != 1:
                status, last = "stale", f"snippet found {_count(copy, m)} times in {m.file}"
            else:
                with open(path, encoding="utf-8") as f:
                    original = f.read()
                with open(path, "w", encoding="utf-8") as f:
                    f.write(original.replace(m.old, m.new))
                try:
                    rc, last = _pytest(copy, args.select or m.select, args.timeout)
                finally:
                    with open(path, "w", encoding="utf-8") as f:
                        f.write(original)
                status = {0: "MISSED", 1: "caught", -1: "timeout"}.get(rc, f"error (exit {rc})")
            results.append((m.name, status))
            print(f"{status:16s} {time.time() - t0:6.1f}s  {m.name:38s} | {last}", flush=True)
    finally:
        shutil.rmtree(os.path.dirname(copy), ignore_errors=True)
    if not args.baseline:
        caught = sum(s == "caught" for _, s in results)
        print(f"\n{caught}/{len(results)} caught in {time.time() - t_start:.0f}s")
        for name, s in results:
            if s != "caught":
                print(f"  {s}: {name}")
        return 0 if caught == len(results) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
