"""Scores a model's word alignments against gold links: AER, precision and recall.

    python scripts/align_eval.py --workdir runs/engfra_rnn --checkpoint best \
        --gold benchmarks/data/engfra_align_gold.txt [--output links.txt] [--json scores.json]

The gold file holds `source ||| target ||| links` lines (jaxattn/inference/alignment.py:
`i-j` sure, `i?j` possible links, `#` comments). Each target is force-decoded with its source
(`Translator.align`: the attention weights the model gives the reference) and turned into hard
links (each target word to the source word it attends to most, EOS left out, subwords merged
to words), which are scored with the alignment error rate of Och and Ney (2003). The diagonal
alignment (no model) is printed beside it for scale. --output writes the model's links, one
Pharaoh line a pair; --json the scores. For the Transformer, the alignment is the attention its
config picks (model.alignment_layer, model.alignment_head); --alignment_layer and
--alignment_head override them for this run of the script.
"""

import json
import sys

from absl import app, flags

from jaxattn.config import validate
from jaxattn.errors import UsageError
from jaxattn.inference import alignment
from jaxattn.inference import translator as inference
from jaxattn.rundir import run as run_lib
from jaxattn.rundir.files import write_text
from jaxattn.tools import cli

cli.define_run_flags(ensemble=True)
_GOLD = flags.DEFINE_string("gold", None, "The gold alignments: 'source ||| target ||| links'.")
flags.mark_flag_as_required("gold")
_OUTPUT = flags.DEFINE_string("output", None, "Write the model's links here (Pharaoh).")
_JSON = flags.DEFINE_string("json", None, "Write the scores here (JSON).")
_LAYER = flags.DEFINE_integer(
    "alignment_layer",
    None,
    "The Transformer decoder layer whose cross-attention aligns (-1: last).",
)
_HEAD = flags.DEFINE_integer(
    "alignment_head", None, "The head of that layer that aligns (-1: the mean of the heads)."
)
FLAGS = flags.FLAGS


def scores_line(name: str, s: dict) -> str:
    return (
        f"{name}: AER {100 * s['aer']:.2f}, precision {100 * s['precision']:.2f}, "
        f"recall {100 * s['recall']:.2f} ({s['links']} links; gold {s['sure']} sure, "
        f"{s['possible']} possible, {s['pairs']} pairs)"
    )


def load(workdirs: str):
    """The Translator, with --alignment_layer / --alignment_head set in its config."""
    dirs, ckpts = cli.run_specs(workdirs)
    if _LAYER.value is None and _HEAD.value is None:
        return inference.Translator.from_workdirs(dirs, ckpts)
    if len(dirs) > 1:
        raise UsageError("--alignment_layer/--alignment_head take one run, not an ensemble.")
    [(r, params, step)] = run_lib.restore_runs(dirs, ckpts)
    config = r.config.copy_and_resolve_references()
    if config.model.decoder != "transformer":
        raise UsageError(
            f"--alignment_layer/--alignment_head: this run's decoder is "
            f"{config.model.decoder!r}, which has one attention; they choose among a "
            "Transformer decoder's layers and heads."
        )
    for name, flag in (("alignment_layer", _LAYER), ("alignment_head", _HEAD)):
        if flag.value is not None:
            config.model[name] = flag.value
    validate(config)  # ConfigError for a layer or head the model lacks
    return inference.Translator(config, params, r.text, step=step, workdir=r.workdir)


def check_gold_text(translator, gold) -> None:
    """UsageError unless each gold sentence is written as the model reads it (its own
    normalization changes nothing), so that the gold's word indices are the model's."""
    for n, g in enumerate(gold, 1):
        for side, text, tok in (
            ("source", g.source, translator.src_tokenizer),
            ("target", g.target, translator.tgt_tokenizer),
        ):
            if tok.preprocess(text).split() != text.split():
                raise UsageError(
                    f"--gold pair {n}: its {side} {text!r} is not as this model reads it "
                    f"({tok.preprocess(text)!r}): write the gold sentences normalized as the "
                    "run's data, or the word indices would not match."
                )


def run(argv):
    cli.no_arguments(argv)
    cli.check_outputs("output", "json", inputs=("gold",))
    gold = alignment.read_gold(_GOLD.value)
    translator = load(FLAGS.workdir)
    check_gold_text(translator, gold)
    links = translator.align(
        [g.source for g in gold],
        [g.target for g in gold],
        where=lambda i: f"the source of gold pair {i + 1}",
        target_where=lambda i: f"the target of gold pair {i + 1}",
    )
    model = alignment.alignment_scores(links, gold)
    diagonal = alignment.alignment_scores(
        [alignment.diagonal_alignment(len(g.source.split()), len(g.target.split())) for g in gold],
        gold,
    )
    print(scores_line(f"{FLAGS.workdir} step {translator.step}", model))
    print(scores_line("diagonal baseline", diagonal))
    if _OUTPUT.value:
        write_text(_OUTPUT.value, "".join(alignment.format_links(x) + "\n" for x in links))
        print(f"links: {_OUTPUT.value}", file=sys.stderr)
    if _JSON.value:
        result = dict(
            workdir=FLAGS.workdir,
            checkpoint=str(translator.step),
            gold=_GOLD.value,
            alignment_layer=translator.config.model.get("alignment_layer"),
            alignment_head=translator.config.model.get("alignment_head"),
            model=model,
            diagonal=diagonal,
        )
        write_text(_JSON.value, json.dumps(result, indent=2) + "\n")
        print(f"result: {_JSON.value}", file=sys.stderr)


if __name__ == "__main__":
    app.run(cli.main(run), flags_parser=cli.parse_flags)
