"""BLEU and chrF with sacreBLEU, and metric writers (JSON lines + TensorBoard)."""

from __future__ import annotations

import json
import os
import time

import sacrebleu

from jaxattn.rundir.layout import METRICS_FILE, TENSORBOARD_DIR

# The validation metrics that can rank checkpoints (config.train.best_metric): name -> whether
# higher is better.
BEST_METRICS = {"bleu": True, "chrf": True, "loss": False}


def corpus_scores(hypotheses: list[str], references: list[str], *, tokenize: str = "13a") -> dict:
    """sacreBLEU corpus BLEU and chrF of detokenized hypotheses against one reference each.

    Returns {'bleu', 'chrf', 'bleu_signature', 'chrf_signature', 'bleu_detail'}.
    """
    if len(hypotheses) != len(references):
        raise ValueError(
            f"{len(hypotheses)} hypotheses but {len(references)} references: they must align."
        )
    bleu = sacrebleu.metrics.BLEU(tokenize=tokenize)
    chrf = sacrebleu.metrics.CHRF()
    b = bleu.corpus_score(hypotheses, [references])
    c = chrf.corpus_score(hypotheses, [references])
    return {
        "bleu": float(b.score),
        "chrf": float(c.score),
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
        "bleu_detail": str(b),
    }


class MetricWriter:
    """Writes scalars to WORKDIR/metrics.jsonl and TensorBoard event files (process 0 only)."""

    def __init__(self, workdir: str, *, enabled: bool = True, tensorboard: bool = True):
        self.enabled = enabled
        self._tb = None
        if not enabled:
            return
        os.makedirs(workdir, exist_ok=True)
        self._jsonl = open(os.path.join(workdir, METRICS_FILE), "a")  # noqa: SIM115
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(os.path.join(workdir, TENSORBOARD_DIR))

    def write(self, step: int, split: str, scalars: dict) -> None:
        if not self.enabled:
            return
        scalars = {k: float(v) for k, v in scalars.items()}
        record = {"step": int(step), "split": split, "time": time.time(), **scalars}
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(f"{split}/{k}", v, step)
            self._tb.flush()

    def close(self) -> None:
        if self.enabled:
            self._jsonl.close()
            if self._tb is not None:
                self._tb.close()


def read_metrics(workdir: str) -> list[dict]:
    """All records of WORKDIR/metrics.jsonl (the last record wins for a repeated step)."""
    path = os.path.join(workdir, METRICS_FILE)
    if not os.path.exists(path):
        return []
    records = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a killed run
                continue
    return records
