"""Attention heatmaps (the tutorial's showAttention) and training curves, as PNG files."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _draw_attention(ax, weights, input_words, output_words):
    # weights [out_len, in_len]
    im = ax.matshow(np.asarray(weights), cmap="bone", vmin=0.0)
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
    fig, ax = plt.subplots(figsize=(max(4, 0.5 * len(input_words) + 2),
                                    max(3, 0.45 * len(output_words) + 1.5)))
    im = _draw_attention(ax, weights, input_words, output_words)
    fig.colorbar(im, ax=ax)
    if title:
        ax.set_title(title, pad=40)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


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
    for ax in list(axes.flat)[len(examples):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def training_curves(records: list[dict], path: str):
    """Plots loss (train, valid) and validation BLEU against step.

    Args:
        records: metrics.jsonl records ({'step', 'split', 'loss', 'bleu', ...}).
        path: The PNG file to write.

    Returns:
        path.
    """
    def series(split, key):
        pts = {r["step"]: r[key] for r in records if r.get("split") == split and key in r}
        steps = sorted(pts)
        return steps, [pts[s] for s in steps]

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for split in ("train", "valid"):
        steps, vals = series(split, "loss")
        if steps:
            ax1.plot(steps, vals, label=f"{split} loss")
    ax1.set_xlabel("step")
    ax1.set_ylabel("cross-entropy")
    ax1.legend()
    steps, vals = series("valid", "bleu")
    if steps:
        ax2.plot(steps, vals, marker="o", label="valid BLEU")
        ax2.legend()
    ax2.set_xlabel("step")
    ax2.set_ylabel("BLEU")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
