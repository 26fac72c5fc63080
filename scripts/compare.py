"""Compares checkpoints on the same data: one markdown table of BLEU, chrF and speed.

    python scripts/compare.py runs/base runs/no_attention                # test split, latest
    python scripts/compare.py --workdirs=runs/base,runs/luong --beam_size 5
    python scripts/compare.py runs/base@2000 runs/base@best --tsv eng-fra.txt
    python scripts/compare.py runs/a runs/b --src test.fr --ref test.en --json table.json
    python scripts/compare.py runs/rnn runs/transformer --curves_png minutes.png

--curves_png also draws each run's validation BLEU (from its metrics.jsonl) against its
training minutes: an equal-time comparison of architectures.

A workdir may name its checkpoint as DIR@latest, DIR@best or DIR@STEP (default --checkpoint).
With --split every run reads its own corpus config; runs whose splits differ are flagged (their
scores are then not comparable), so prefer --src/--ref or --tsv for runs on different data.
Input limits as in scripts/evaluate.py (--max_input_len, --truncate_long; each run's own), all
checked, with --max_len, before the first run decodes.
"""

import json
import os
import sys

from absl import app, flags

from jaxattn.data.readers import summary
from jaxattn.errors import InferenceError, UsageError
from jaxattn.inference import eval_input
from jaxattn.inference import translator as inference
from jaxattn.metrics import read_metrics
from jaxattn.model.seq2seq import describe
from jaxattn.rundir.files import write_text
from jaxattn.tools import cli, plots

_WORKDIRS = flags.DEFINE_list(
    "workdirs", [], "Training runs (comma-separated); positional arguments are added to these."
)
_CURVES_PNG = flags.DEFINE_string(
    "curves_png", None, "Also draw the runs' validation BLEU against training minutes here."
)
cli.define_run_flags(workdir=False)
cli.define_decoding_flags()
cli.define_eval_data_flags()
FLAGS = flags.FLAGS


def _names(specs: list[tuple[str, str]]) -> list[str]:
    """Short row names: the directory's base name (+ @checkpoint), unique."""
    names = [
        os.path.basename(os.path.normpath(d)) + ("" if c == FLAGS.checkpoint else f"@{c}")
        for d, c in specs
    ]
    if len(set(names)) < len(names):
        names = [d + ("" if c == FLAGS.checkpoint else f"@{c}") for d, c in specs]
    return names


def _parse_specs(argv) -> list[tuple[str, str]]:
    """(workdir, checkpoint) of each run: DIR, DIR@latest, DIR@best or DIR@STEP."""
    specs = []
    for spec in list(_WORKDIRS.value) + list(argv[1:]):
        workdir, _, ckpt = spec.rpartition("@") if "@" in spec else (spec, "", "")
        specs.append((workdir, ckpt or FLAGS.checkpoint))
    if not specs:
        raise UsageError("Give the runs to compare: compare.py DIR [DIR ...] (or --workdirs=A,B).")
    return specs


_PAIRS: dict = {}  # (data config, split) -> (sources, references, counts): read once


def _pairs(translator, options: dict, limits: dict) -> tuple[str, list[str], list[str]]:
    """(description, sources, references) for one run."""
    if options["src"] is None and options["tsv"] is None:
        split = options["split"] or "test"
        key = (translator.config.data.to_json(), split)
        if key not in _PAIRS:
            _PAIRS[key] = eval_input.load_pairs(translator, **options)
        return (split, *_PAIRS[key][:2])
    sources, refs, counts = eval_input.load_pairs(translator, **options, **limits)
    return ("src/ref" if counts is None else f"tsv ({summary(counts)})", sources, refs)


def run(argv):
    specs = _parse_specs(argv)
    options = cli.eval_data_options()
    cli.check_decoding_flags()
    own_split = options["src"] is None and options["tsv"] is None
    limits = eval_input.limit_options("truncate" if own_split else "error")
    cli.check_outputs("json", "curves_png", inputs=("src", "ref", "tsv", "unk_dictionary"))
    names = _names(specs)
    translators = []  # all restored first: a wrong workdir or step fails before any work
    for name, (workdir, ckpt) in zip(names, specs, strict=True):
        try:
            translators.append(inference.Translator.from_workdir(workdir, ckpt))
        except InferenceError as e:
            raise InferenceError(f"{name}: {e}") from None
    decoding = {**cli.decoding_options(1), **limits}  # one search for every run (greedy)
    for name, translator in zip(names, translators, strict=True):
        try:
            translator.check_limits(
                decoding["max_len"], limits["max_input_len"], limits["overlong"]
            )
        except InferenceError as e:
            raise type(e)(f"{name}: {e}") from None
    pairs = []  # every run's data read and checked before the first run decodes
    for name, translator in zip(names, translators, strict=True):
        try:
            pairs.append(_pairs(translator, options, limits))
            translator.check_inputs(
                pairs[-1][1],
                max_input_len=limits["max_input_len"],
                overlong=limits["overlong"],
                where=eval_input.names(**options),
            )
        except InferenceError as e:
            raise type(e)(f"{name}: {e}") from None
    rows, first_sources = [], None
    for name, (workdir, _), translator, (data, sources, refs) in zip(
        names, specs, translators, pairs, strict=True
    ):
        same = first_sources is None or sources == first_sources
        first_sources = sources if first_sources is None else first_sources
        if not same:
            print(
                f"warning: {name} has other {data} sentences than {rows[0]['name']}: its "
                "scores are not comparable.",
                file=sys.stderr,
            )
        try:
            r = translator.evaluate(
                sources, refs, warmup=FLAGS.warmup, where=eval_input.names(**options), **decoding
            )
        except InferenceError as e:
            raise type(e)(f"{name}: {e}") from None
        rows.append(
            dict(
                name=name + ("" if same else " (other data)"),
                workdir=os.path.abspath(workdir),
                step=translator.step,
                params=translator.num_params,
                model=describe(translator.config.model),
                bleu=r["bleu"],
                chrf=r["chrf"],
                sentences=r["sentences"],
                sentences_per_sec=r["sentences_per_sec"],
                data=data,
                bleu_signature=r["bleu_signature"],
                chrf_signature=r["chrf_signature"],
            )
        )
        print(f"{name}: BLEU {r['bleu']:.2f}, chrF {r['chrf']:.2f}", file=sys.stderr)
    print(table(rows))
    search = decoding["options"].describe()
    print(
        f"\n{rows[0]['data']}, {rows[0]['sentences']} sentences, {search}; "
        f"BLEU|{rows[0]['bleu_signature']}; chrF2|{rows[0]['chrf_signature']}"
    )
    if FLAGS.json:
        write_text(FLAGS.json, json.dumps(rows, indent=2) + "\n")
    if _CURVES_PNG.value:
        runs = [(n, read_metrics(w)) for n, (w, _) in zip(names, specs, strict=True)]
        title = "validation BLEU against training time (the runs' own machines and loads)"
        print(
            f"wrote {plots.bleu_against_minutes(runs, title, _CURVES_PNG.value)}", file=sys.stderr
        )


def table(rows: list[dict]) -> str:
    """A markdown table: name, model, params, step, BLEU, chrF, sentences/s."""
    head = ["name", "model", "params", "step", "BLEU", "chrF", "sentences/s"]
    body = [
        [
            r["name"],
            r["model"],
            f"{r['params']:,}",
            str(r["step"]),
            f"{r['bleu']:.2f}",
            f"{r['chrf']:.2f}",
            f"{r['sentences_per_sec']:,.0f}",
        ]
        for r in rows
    ]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    right = [False, False, True, True, True, True, True]

    def line(cells):
        return (
            "| "
            + " | ".join(
                c.rjust(w) if r else c.ljust(w)
                for c, w, r in zip(cells, widths, right, strict=True)
            )
            + " |"
        )

    rule = (
        "|"
        + "|".join(
            ("-" * (w + 1) + ":") if r else ("-" * (w + 2))
            for w, r in zip(widths, right, strict=True)
        )
        + "|"
    )
    return "\n".join([line(head), rule] + [line(b) for b in body])


if __name__ == "__main__":
    app.run(cli.main(run), flags_parser=cli.parse_flags)
