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
from jaxattn.inference import UsageError

_WORKDIR = flags.DEFINE_string("workdir", None, "A training run's directory.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "latest", "'latest', 'best' or a step number.")
_SPLIT = flags.DEFINE_string("split", None, "A split of the run's corpus: test (the default "
                             "without --src/--tsv), validation or train.")
_SRC = flags.DEFINE_string("src", None, "Source sentences, one a line (UTF-8).")
_REF = flags.DEFINE_string("ref", None, "Reference translations, aligned with --src.")
_TSV = flags.DEFINE_string("tsv", None, "Sentence pairs, 'source<TAB>target' a line; for the "
                           "tutorial corpus its own format, English<TAB>French.")
_DATA_PATH = flags.DEFINE_string("data_path", None, "With --split: the corpus, if it is no "
                                 "longer at the run's config.data.path.")
_BEAM = flags.DEFINE_integer("beam_size", None, "Beam size (1: greedy); default: the run's "
                             "config.eval.beam_size.")
_ALPHA = flags.DEFINE_float("alpha", None, "Length penalty exponent; default: the run's "
                            "config.eval.length_penalty.")
_MAX_LEN = flags.DEFINE_integer("max_len", None, "Decoding steps; default: the run's "
                                "config.eval.max_decode_len, more for long sentences.")
_BATCH = flags.DEFINE_integer("batch_size", None, "Sentences a batch; default: the run's "
                              "config.eval.batch_size.")
_OUTPUT = flags.DEFINE_string("output", None, "Write the hypotheses here, one a line.")
_JSON = flags.DEFINE_string("json", None, "Write the JSON result here (default: OUTPUT.json).")
_WARMUP = flags.DEFINE_bool("warmup", True, "Compile before timing (sentences/s without "
                            "compilation).")
flags.mark_flag_as_required("workdir")


def check_flags(argv) -> None:
    """Usage errors, found before any work."""
    if len(argv) > 1:
        raise UsageError(f"Unexpected arguments: {argv[1:]} (options are --name=value).")
    given = [name for name, f in (("--split", _SPLIT), ("--src/--ref", _SRC), ("--tsv", _TSV))
             if f.value is not None]
    if _REF.value is not None and _SRC.value is None:
        raise UsageError("--ref needs --src (the sentences to translate).")
    if _SRC.value is not None and _REF.value is None:
        raise UsageError("--src needs --ref (to translate without references, use "
                         "scripts/translate.py).")
    if len(given) > 1:
        raise UsageError(f"Give one of --split, --src/--ref and --tsv, not {' and '.join(given)}.")
    if _DATA_PATH.value and (_SRC.value or _TSV.value):
        raise UsageError("--data_path goes with --split (the run's corpus).")
    for name, flag in (("beam_size", _BEAM), ("max_len", _MAX_LEN), ("batch_size", _BATCH)):
        if flag.value is not None and flag.value < 1:
            raise UsageError(f"--{name} must be >= 1, got {flag.value}.")


def load_pairs(translator, workdir: str) -> tuple[str, list[str], list[str]]:
    """(description, sources, references) from --split, --src/--ref or --tsv."""
    if _SRC.value is not None:
        sources, refs = inference.read_parallel(_SRC.value, _REF.value)
        return f"{_SRC.value} + {_REF.value}", sources, refs
    if _TSV.value is not None:
        sources, refs, counts = inference.read_tsv(_TSV.value, translator.config.data,
                                                   translator.max_length)
        print(f"{_TSV.value}: {inference.tsv_summary(counts)}", file=sys.stderr)
        return _TSV.value, sources, refs
    split = _SPLIT.value or "test"
    sources, refs = inference.load_split(translator.config, workdir, split,
                                         _DATA_PATH.value or "")
    return f"{split} split", sources, refs


def run(argv):
    check_flags(argv)
    workdir = _WORKDIR.value
    translator = inference.Translator.from_workdir(workdir, _CHECKPOINT.value)
    ec = translator.config.eval
    what, sources, refs = load_pairs(translator, workdir)
    empty = sum(not s.strip() for s in sources)
    if empty:
        print(f"warning: {empty} empty source line(s): empty hypotheses.", file=sys.stderr)
    beam = _BEAM.value or ec.beam_size
    result = translator.evaluate(sources, refs, beam_size=beam, alpha=_ALPHA.value,
                                 max_len=_MAX_LEN.value, batch_size=_BATCH.value,
                                 warmup=_WARMUP.value)
    hyps = result.pop("hypotheses")
    search = "greedy" if beam == 1 else f"beam {beam}, alpha {result['alpha']:g}"
    print(f"{workdir} step {translator.step} ({search}) on {what}: {len(sources)} sentences, "
          f"{result['seconds']:.2f} s, {result['sentences_per_sec']:.1f} sentences/s"
          + (" (with compilation)" if result["includes_compilation"] else ""))
    print(inference.format_scores(result))
    if result["unfinished"]:
        print(f"warning: {result['unfinished']} translation(s) reached max_len without EOS.",
              file=sys.stderr)
    result.update(workdir=os.path.abspath(workdir), data=what, checkpoint=_CHECKPOINT.value)
    if _OUTPUT.value:
        inference.write_text(_OUTPUT.value, "".join(h + "\n" for h in hyps))
        print(f"hypotheses: {_OUTPUT.value}")
    json_path = _JSON.value or (_OUTPUT.value + ".json" if _OUTPUT.value else None)
    if json_path:
        inference.write_text(json_path, json.dumps(result, indent=2) + "\n")
        print(f"result: {json_path}")


if __name__ == "__main__":
    app.run(cli.main(run), flags_parser=cli.parse_flags)
