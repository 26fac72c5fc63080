"""A training run's validation history and what it decides: when the run stops improving
(early stopping, `train.early_stopping_patience`) and when the plateau schedule lowers the rate
(`optim.reduce_on_plateau`).

The history is every validation's metrics with its step, saved in each checkpoint's meta, so a
resume reads it from the checkpoint it resumes from, however few checkpoints are kept. The
count of validations without improvement is recomputed from it each time (never stored), so a
resume with another patience or min_delta applies them to the whole run, and an uninterrupted
and a resumed run decide alike.
"""

from __future__ import annotations

from jaxattn.metrics import BEST_METRICS


class ValidationHistory:
    """The validations of a run, oldest first: records {'step': s, metric: value, ...}.

    `metric` (train.best_metric) improves when it beats the best so far by more than
    `min_delta` (higher BLEU or chrF, lower loss); a validation without that metric is skipped.
    """

    def __init__(self, metric: str, min_delta: float = 0.0, records=()):
        self.metric, self.min_delta = metric, float(min_delta)
        self.records = [dict(r) for r in records]

    @classmethod
    def restored(cls, tc, ckpt, step: int | None) -> ValidationHistory:
        """The history saved with checkpoint `step` (None: a new run, no history). Checkpoints
        of older versions have none in their meta: then the metrics of the checkpoints kept
        up to `step`, the best that can be known."""
        records = []
        if step is not None:
            records = ckpt.meta(step).get("validations")
            if not isinstance(records, list):
                kept = [(s, ckpt.metrics(s)) for s in ckpt.all_steps() if s <= step]
                records = [{"step": s, **m} for s, m in kept if m]
        return cls(tc.best_metric, tc.early_stopping_min_delta, records)

    def add(self, step: int, metrics: dict) -> None:
        self.records.append({"step": int(step), **{k: float(v) for k, v in metrics.items()}})

    def _scan(self) -> tuple[dict | None, int]:
        """(the best record, the number of validations after it that did not improve)."""
        higher, best, since = BEST_METRICS[self.metric], None, 0
        for record in self.records:
            value = record.get(self.metric)
            if not isinstance(value, (int, float)):
                continue
            gain = 0.0 if best is None else value - best[self.metric]
            if best is None or (gain if higher else -gain) > self.min_delta:
                best, since = record, 0
            else:
                since += 1
        return best, since

    def since_best(self) -> int:
        """Validations in a row, up to the latest, without an improvement (0 if it was one)."""
        return self._scan()[1]

    def last(self) -> dict:
        """The latest validation's metrics ({} if none)."""
        return {k: v for k, v in (self.records or [{}])[-1].items() if k != "step"}

    def stop_reason(self, patience: int) -> str | None:
        """Why the run stops early (`patience` validations without improvement), or None."""
        best, since = self._scan()
        if not patience or since < patience:
            return None
        return (
            f"{since} validations in a row without a better validation {self.metric} than "
            f"{best[self.metric]:.4g} (step {best['step']}; train.early_stopping_patience = "
            f"{patience}, early_stopping_min_delta = {self.min_delta:g})"
        )
