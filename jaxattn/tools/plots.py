"""Attention heatmaps (the tutorial's showAttention), training curves and experiment plots, as
PNG files (matplotlib's file backend: no display needed).

`show_attention` and `attention_grid` draw the alignment: the weights each decode step
reports (`Translation.weights`, `Translator.attention`): an RNN decoder's attention; for the
Transformer decoder, the cross-attention of layer config.model.alignment_layer (-1: the last),
the mean of its heads (config.model.alignment_head -1) or one head. `attention_layers` draws
every layer and head of one view (`Translator.attention_views`: cross-attention,
encoder or decoder self-attention) as a grid.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path: str, dpi: int) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def _draw_attention(ax, weights, input_words, output_words, vmax=None):
    # weights [out_len, in_len]
    im = ax.matshow(np.asarray(weights), cmap="bone", vmin=0.0, vmax=vmax)
    ax.set_xticks(range(len(input_words)))
    ax.set_xticklabels(input_words, rotation=90)
    ax.set_yticks(range(len(output_words)))
    ax.set_yticklabels(output_words)
    return im


def show_attention(input_words, output_words, weights, path: str, title: str | None = None):
    """Saves the tutorial's showAttention heatmap: input words on x, output words on y.

    Args:
        input_words: Source tokens, usually ending in '<EOS>'.
        output_words: Output tokens (the tutorial ends them with '<EOS>').
        weights: [len(output_words), len(input_words)] (or larger: the rest is cut).
        path: The PNG file to write.
        title: An optional title.

    Returns:
        path.
    """
    weights = np.asarray(weights)[: len(output_words), : len(input_words)]
    fig, ax = plt.subplots(
        figsize=(max(4, 0.5 * len(input_words) + 2), max(3, 0.45 * len(output_words) + 1.5))
    )
    im = _draw_attention(ax, weights, input_words, output_words)
    fig.colorbar(im, ax=ax)
    if title:
        ax.set_title(title, pad=40)
    return _save(fig, path, 100)


def attention_grid(examples, path: str, cols: int = 2):
    """Saves several attention heatmaps in one PNG.

    Args:
        examples: (input_words, output_words, weights [out, in]) per heatmap.
        path: The PNG file to write.
        cols: Heatmaps per row.

    Returns:
        path.
    """
    rows = math.ceil(len(examples) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 5 * rows), squeeze=False)
    for ax, (inp, out, w) in zip(axes.flat, examples, strict=False):
        w = np.asarray(w)[: len(out), : len(inp)]
        im = _draw_attention(ax, w, inp, out)
        fig.colorbar(im, ax=ax)
    for ax in list(axes.flat)[len(examples) :]:
        ax.axis("off")
    return _save(fig, path, 100)


def attention_layers(
    weights, x_words, y_words, path: str, title: str | None = None, dpi: int = 80
) -> str:
    """Saves a layer x head grid of one sentence's attention heatmaps (one scale, 0 to 1).

    Args:
        weights: [layers, heads, len(y_words), len(x_words)] (or larger: the rest is cut),
            e.g. a view of `SentenceViews.grid` (cross-attention: input words on x, output
            words on y; self-attention: the same words on both).
        x_words: The key positions' words (columns).
        y_words: The query positions' words (rows).
        path: The PNG file to write.
        title: An optional title over the grid.
        dpi: The image's dots per inch.

    Returns:
        path.
    """
    weights = np.asarray(weights)[..., : len(y_words), : len(x_words)]  # [L, h, y, x]
    layers, heads = weights.shape[:2]
    cell_w, cell_h = max(2.5, 0.3 * len(x_words) + 1.2), max(2.2, 0.3 * len(y_words) + 1.2)
    fig, axes = plt.subplots(
        layers, heads, figsize=(cell_w * heads + 1, cell_h * layers + 0.5), squeeze=False
    )
    for layer in range(layers):
        for head in range(heads):
            ax = axes[layer, head]
            im = _draw_attention(ax, weights[layer, head], x_words, y_words, vmax=1.0)
            ax.tick_params(labelsize=7)
            ax.set_xlabel(f"layer {layer}, head {head}", fontsize=8)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8)
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=dpi)  # not tight_layout: the colorbar spans the grid
    plt.close(fig)
    return path


def metric_series(records: list[dict], split: str, key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of `key` in the `split` records of metrics.jsonl, by step; the last
    record of a step wins (a resumed run may log a step twice)."""
    points = {r["step"]: r[key] for r in records if r.get("split") == split and key in r}
    steps = sorted(points)
    return steps, [points[s] for s in steps]


def training_curves(records: list[dict], path: str):
    """Plots loss (train, valid) and validation BLEU against step (and the EMA weights'
    validation, train.ema_decay > 0).

    Args:
        records: metrics.jsonl records ({'step', 'split', 'loss', 'bleu', ...}).
        path: The PNG file to write.

    Returns:
        path.
    """
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for split, key in (("train", "loss"), ("valid", "loss"), ("valid", "ema_loss")):
        steps, vals = metric_series(records, split, key)
        if steps:
            ax1.plot(steps, vals, label=f"{split} {key.replace('_', ' ')}")
    ax1.set_xlabel("step")
    ax1.set_ylabel("cross-entropy")
    ax1.legend()
    for key, label in (("bleu", "valid BLEU"), ("ema_bleu", "valid BLEU of the EMA")):
        steps, vals = metric_series(records, "valid", key)
        if steps:
            ax2.plot(steps, vals, marker="o", label=label)
            ax2.legend()
    ax2.set_xlabel("step")
    ax2.set_ylabel("BLEU")
    return _save(fig, path, 100)


def runs_curves(runs: list[tuple[str, dict]], title: str, path: str):
    """Several runs' training curves side by side: loss (train solid, valid dashed) and
    validation BLEU against step, one color a run.

    Args:
        runs: (label, curves) per run; curves {'train_loss', 'valid_loss', 'valid_bleu'}, each
            a list of (step, value).
        title: The group's title.
        path: The PNG file to write.

    Returns:
        path.
    """
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    for i, (label, c) in enumerate(runs):
        color = f"C{i % 10}"
        if c["train_loss"]:
            ax1.plot(
                *zip(*c["train_loss"], strict=True),
                color=color,
                alpha=0.8,
                label=f"{label} (train)",
            )
        if c["valid_loss"]:
            ax1.plot(
                *zip(*c["valid_loss"], strict=True),
                color=color,
                ls="--",
                marker="o",
                ms=3,
                label=f"{label} (valid)",
            )
        if c["valid_bleu"]:
            ax2.plot(*zip(*c["valid_bleu"], strict=True), color=color, marker="o", label=label)
    ax1.set(xlabel="step", ylabel="cross-entropy", title=f"{title}: loss")
    ax2.set(xlabel="step", ylabel="validation BLEU (greedy)", title=f"{title}: validation BLEU")
    ax1.legend(fontsize=7)
    ax2.legend(fontsize=7)
    return _save(fig, path, 90)


def minutes_series(records: list[dict], key: str = "bleu") -> tuple[list[float], list[float]]:
    """(minutes, values) of the validation `key` against wall-clock minutes since the run's
    first record (training and validation time together; resumed runs: the gap between the
    sessions left out)."""
    times, points, last, offset = [], {}, None, 0.0
    for r in sorted((r for r in records if "time" in r), key=lambda r: r["time"]):
        if last is not None and r["step"] < last[0]:  # a resume re-ran these steps
            offset += r["time"] - last[1]
        elif last is not None and r["time"] - last[1] > 3600:  # a stopped run, resumed later
            offset += r["time"] - last[1]
        last = (r["step"], r["time"])
        times.append(r["time"] - offset)
        if r.get("split") == "valid" and key in r:
            points[r["step"]] = (times[-1], r[key])
    if not points:
        return [], []
    t0 = times[0]
    series = sorted(points.values())
    return [(t - t0) / 60 for t, _ in series], [v for _, v in series]


def bleu_against_minutes(runs: list[tuple[str, list[dict]]], title: str, path: str):
    """Validation BLEU of several runs against their training minutes (equal-time comparison).

    Args:
        runs: (label, metrics.jsonl records) per run.
        title: The plot's title (say the machine and its load).
        path: The PNG file to write.

    Returns:
        path.
    """
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for i, (label, records) in enumerate(runs):
        minutes, bleu = minutes_series(records)
        if minutes:
            ax.plot(minutes, bleu, marker="o", ms=3, color=f"C{i % 10}", label=label)
    ax.set(xlabel="minutes since the first logged step", ylabel="validation BLEU (greedy)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path, 100)


def sweep_bleu(points: list[tuple], title: str, x_label: str, path: str, *, log_x: bool = False):
    """BLEU against a swept setting (learning rate, hidden size, ...).

    Args:
        points: (x, test BLEU of the best checkpoint, of the last, best validation BLEU or
            None) per run.
        title: The group's title.
        x_label: What x is.
        path: The PNG file to write.
        log_x: A logarithmic x axis.

    Returns:
        path.
    """
    points = sorted(points)
    xs = [p[0] for p in points]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(xs, [p[1] for p in points], marker="o", label="test BLEU (best checkpoint)")
    ax.plot(xs, [p[2] for p in points], marker="s", ls="--", label="test BLEU (last checkpoint)")
    if all(p[3] is not None for p in points):
        ax.plot(xs, [p[3] for p in points], marker="^", ls=":", label="best validation BLEU")
    if log_x:
        ax.set_xscale("log")
    ax.set_xticks(xs)
    ax.set_xticklabels([f"{x:g}" if isinstance(x, float) else str(x) for x in xs])
    ax.minorticks_off()
    ax.set(xlabel=x_label, ylabel="BLEU", title=title)
    ax.legend(fontsize=8)
    return _save(fig, path, 90)
