"""Compares checkpoints on the same data: one markdown table of BLEU, chrF and speed.

    python scripts/compare.py runs/base runs/no_attention                # test split, latest
    python scripts/compare.py --workdirs=runs/base,runs/luong --beam_size 5
    python scripts/compare.py runs/base@2000 runs/base@best --tsv eng-fra.txt
    python scripts/compare.py runs/a runs/b --src test.fr --ref test.en --json table.json

A workdir may name its checkpoint as DIR@latest, DIR@best or DIR@STEP (default --checkpoint).
With --split every run reads its own corpus config; runs whose splits differ are flagged (their
scores are then not comparable), so prefer --src/--ref or --tsv for runs on different data.
"""

import json
import os
import sys

from absl import app, flags

from jaxattn import cli, inference
from jaxattn.inference import InferenceError, UsageError

_WORKDIRS = flags.DEFINE_list("workdirs", [], "Training runs (comma-separated); positional "
                              "arguments are added to these.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "latest", "'latest', 'best' or a step number, "
                                  "for workdirs without @CHECKPOINT.")
_SPLIT = flags.DEFINE_string("split", None, "A split of each run's corpus (default: test).")
_SRC = flags.DEFINE_string("src", None, "Source sentences, one a line (UTF-8).")
_REF = flags.DEFINE_string("ref", None, "Reference translations, aligned with --src.")
_TSV = flags.DEFINE_string("tsv", None, "Sentence pairs, 'source<TAB>target' a line (the "
                           "tutorial's English<TAB>French for tutorial runs).")
_DATA_PATH = flags.DEFINE_string("data_path", None, "With --split: the corpus, if it is no "
                                 "longer at the runs' config.data.path.")
_BEAM = flags.DEFINE_integer("beam_size", 1, "Beam size (1: greedy).")
_ALPHA = flags.DEFINE_float("alpha", None, "Length penalty; default: each run's config.")
_MAX_LEN = flags.DEFINE_integer("max_len", None, "Decoding steps; default: each run's config.")
_JSON = flags.DEFINE_string("json", None, "Also write the rows as JSON here.")
_WARMUP = flags.DEFINE_bool("warmup", True, "Compile before timing.")


def _names(specs: list[tuple[str, str]]) -> list[str]:
    """Short row names: the directory's base name (+ @checkpoint), unique."""
    names = [os.path.basename(os.path.normpath(d)) + ("" if c == _CHECKPOINT.value else f"@{c}")
             for d, c in specs]
    if len(set(names)) < len(names):
        names = [d + ("" if c == _CHECKPOINT.value else f"@{c}") for d, c in specs]
    return names


def _parse_specs(argv) -> list[tuple[str, str]]:
    specs = []
    for spec in list(_WORKDIRS.value) + list(argv[1:]):
        workdir, _, ckpt = spec.rpartition("@") if "@" in spec else (spec, "", "")
        specs.append((workdir, ckpt or _CHECKPOINT.value))
    if not specs:
        raise UsageError("Give the runs to compare: compare.py DIR [DIR ...] "
                         "(or --workdirs=A,B).")
    if _SRC.value is not None or _REF.value is not None:
        if _SRC.value is None or _REF.value is None:
            raise UsageError("--src and --ref go together.")
    given = [n for n, v in (("--split", _SPLIT.value), ("--src/--ref", _SRC.value),
                            ("--tsv", _TSV.value)) if v is not None]
    if len(given) > 1:
        raise UsageError(f"Give one of --split, --src/--ref and --tsv, not {' and '.join(given)}.")
    if _BEAM.value < 1:
        raise UsageError(f"--beam_size must be >= 1, got {_BEAM.value}.")
    return specs


_SPLITS: dict = {}  # (data config, split) -> (sources, references): read once


def _pairs(translator, workdir):
    if _SRC.value is not None:
        return ("src/ref", *inference.read_parallel(_SRC.value, _REF.value))
    if _TSV.value is not None:
        sources, refs, counts = inference.read_tsv(_TSV.value, translator.config.data,
                                                   translator.max_length)
        return (f"tsv ({inference.tsv_summary(counts)})", sources, refs)
    split = _SPLIT.value or "test"
    key = (translator.config.data.to_json(), split)
    if key not in _SPLITS:
        _SPLITS[key] = inference.load_split(translator.config, workdir, split,
                                            _DATA_PATH.value or "")
    return (split, *_SPLITS[key])


def run(argv):
    specs = _parse_specs(argv)
    names = _names(specs)
    translators = []  # all restored first: a wrong workdir or step fails before any work
    for name, (workdir, ckpt) in zip(names, specs, strict=True):
        try:
            translators.append(inference.Translator.from_workdir(workdir, ckpt))
        except InferenceError as e:
            raise InferenceError(f"{name}: {e}") from None
    rows, first_sources = [], None
    for name, (workdir, _), translator in zip(names, specs, translators, strict=True):
        try:
            data, sources, refs = _pairs(translator, workdir)
        except InferenceError as e:
            raise InferenceError(f"{name}: {e}") from None
        same = first_sources is None or sources == first_sources
        first_sources = sources if first_sources is None else first_sources
        if not same:
            print(f"warning: {name} has other {data} sentences than {rows[0]['name']}: its "
                  "scores are not comparable.", file=sys.stderr)
        r = translator.evaluate(sources, refs, beam_size=_BEAM.value, alpha=_ALPHA.value,
                                max_len=_MAX_LEN.value, warmup=_WARMUP.value)
        m = translator.config.model
        rows.append(dict(
            name=name + ("" if same else " (other data)"), workdir=os.path.abspath(workdir),
            step=translator.step, params=translator.num_params,
            model=f"{m.cell} {m.decoder}" + ("" if m.decoder == "plain" else f"/{m.attention}"),
            bleu=r["bleu"], chrf=r["chrf"], sentences=r["sentences"],
            sentences_per_sec=r["sentences_per_sec"], data=data,
            bleu_signature=r["bleu_signature"], chrf_signature=r["chrf_signature"],
        ))
        print(f"{name}: BLEU {r['bleu']:.2f}, chrF {r['chrf']:.2f}", file=sys.stderr)
    print(table(rows))
    search = "greedy" if _BEAM.value == 1 else f"beam {_BEAM.value}"
    print(f"\n{rows[0]['data']}, {rows[0]['sentences']} sentences, {search}; "
          f"BLEU|{rows[0]['bleu_signature']}; chrF2|{rows[0]['chrf_signature']}")
    if _JSON.value:
        inference.write_text(_JSON.value, json.dumps(rows, indent=2) + "\n")


def table(rows: list[dict]) -> str:
    """A markdown table: name, model, params, step, BLEU, chrF, sentences/s."""
    head = ["name", "model", "params", "step", "BLEU", "chrF", "sentences/s"]
    body = [[r["name"], r["model"], f"{r['params']:,}", str(r["step"]), f"{r['bleu']:.2f}",
             f"{r['chrf']:.2f}", f"{r['sentences_per_sec']:,.0f}"] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    right = [False, False, True, True, True, True, True]

    def line(cells):
        return "| " + " | ".join(c.rjust(w) if r else c.ljust(w)
                                 for c, w, r in zip(cells, widths, right, strict=True)) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if r else ("-" * (w + 2))
                          for w, r in zip(widths, right, strict=True)) + "|"
    return "\n".join([line(head), rule] + [line(b) for b in body])


if __name__ == "__main__":
    app.run(cli.main(run), flags_parser=cli.parse_flags)
