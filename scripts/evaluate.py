"""Scores a checkpoint with sacreBLEU (BLEU with its signature, and chrF).

    python scripts/evaluate.py --workdir runs/base                       # test split, latest
    python scripts/evaluate.py --workdir runs/base --checkpoint best --beam_size 5
    python scripts/evaluate.py --workdir runs/base --src test.fr --ref test.en --output hyp.txt
    python scripts/evaluate.py --workdir runs/base --tsv eng-fra.txt     # English<TAB>French

The checkpoint is restored with its own config and vocabularies (WORKDIR/config.json and the
vocabulary files). --split reads the run's corpus (reusing the prepared dataset); --src/--ref
and --tsv need no corpus. A TSV in the tutorial's format is normalized, turned around and
filtered exactly as the training corpus was. --output writes the hypotheses, one a line, and a
JSON result beside them (or at --json).
"""

import json
import os
import sys

from absl import app, flags

from jaxattn import cli, inference
from jaxattn.data.readers import summary
from jaxattn.workdir import write_text

cli.define_run_flags()
cli.define_decoding_flags()
cli.define_eval_data_flags()
_OUTPUT = flags.DEFINE_string("output", None, "Write the hypotheses here, one a line (and the "
                              "JSON result beside them, unless --json).")
FLAGS = flags.FLAGS


def describe(options: dict, counts: dict | None) -> str:
    """What was evaluated: 'SRC + REF', the TSV file, or 'test split'."""
    if options["src"] is not None:
        return f"{options['src']} + {options['ref']}"
    if options["tsv"] is not None:
        print(f"{options['tsv']}: {summary(counts)}", file=sys.stderr)
        return options["tsv"]
    return f"{options['split'] or 'test'} split"


def run(argv):
    cli.no_arguments(argv)
    data_options = cli.eval_data_options()
    cli.check_positive("beam_size", "max_len", "batch_size")
    workdir = FLAGS.workdir
    translator = inference.Translator.from_workdir(workdir, FLAGS.checkpoint)
    sources, refs, counts = inference.load_pairs(translator, **data_options)
    what = describe(data_options, counts)
    empty = sum(not s.strip() for s in sources)
    if empty:
        print(f"warning: {empty} empty source line(s): empty hypotheses.", file=sys.stderr)
    decoding = cli.decoding_options(translator.config.eval.beam_size)
    result = translator.evaluate(sources, refs, warmup=FLAGS.warmup, **decoding)
    hyps = result.pop("hypotheses")
    beam = decoding["beam_size"]
    search = "greedy" if beam == 1 else f"beam {beam}, alpha {result['alpha']:g}"
    print(f"{workdir} step {translator.step} ({search}) on {what}: {len(sources)} sentences, "
          f"{result['seconds']:.2f} s, {result['sentences_per_sec']:.1f} sentences/s"
          + (" (with compilation)" if result["includes_compilation"] else ""))
    print(inference.format_scores(result))
    if result["unfinished"]:
        print(f"warning: {result['unfinished']} translation(s) reached max_len without EOS.",
              file=sys.stderr)
    result.update(workdir=os.path.abspath(workdir), data=what, checkpoint=FLAGS.checkpoint)
    if _OUTPUT.value:
        write_text(_OUTPUT.value, "".join(h + "\n" for h in hyps))
        print(f"hypotheses: {_OUTPUT.value}")
    json_path = FLAGS.json or (_OUTPUT.value + ".json" if _OUTPUT.value else None)
    if json_path:
        write_text(json_path, json.dumps(result, indent=2) + "\n")
        print(f"result: {json_path}")


if __name__ == "__main__":
    app.run(cli.main(run), flags_parser=cli.parse_flags)
