"""Scores a checkpoint with sacreBLEU (BLEU with its signature, and chrF).

    python scripts/evaluate.py --workdir runs/base                       # test split, latest
    python scripts/evaluate.py --workdir runs/base --checkpoint best --beam_size 5
    python scripts/evaluate.py --workdir runs/base --src test.fr --ref test.en --output hyp.txt
    python scripts/evaluate.py --workdir runs/base --tsv eng-fra.txt     # English<TAB>French
    python scripts/evaluate.py --workdir runs/a,runs/b --checkpoint best  # an ensemble
    python scripts/evaluate.py --workdir runs/base --method sample --top_p 0.9 --seed 1
    python scripts/evaluate.py --workdir runs/base --src s.fr --ref r.en --score [--per_token]

The checkpoint is restored with its own config and vocabularies (WORKDIR/config.json and the
vocabulary files). --split reads the run's corpus (reusing the prepared dataset); --src/--ref
and --tsv need no corpus. A TSV in the tutorial's format is normalized, turned around and
filtered exactly as the training corpus was. --output writes the hypotheses, one a line, and a
JSON result beside them (or at --json). Several comma-separated --workdir runs (same
vocabularies) decode as one ensemble; the decoding flags are those of jaxattn/tools/cli.py.

Sentences over the input limit (by default twice the longest training sentence, in tokens;
--max_input_len sets it) stop the evaluation before any decoding, with an error naming the line,
unless --truncate_long cuts them (a warning each); the run's own --split is always cut so, as
training's validation does, with a count. --max_len above what the model can decode is refused
before any work.

--score prints the model's log-probability of each reference given its source (forced
decoding), one a line in input order; --per_token adds, tab-separated, the reference's tokens
(then the EOS token) and their log-probabilities (space-separated): `LOGPROB<TAB>TOKENS<TAB>
LOGPROBS`. A summary goes to stderr; --output writes the lines to a file instead of stdout.

--print_alignment appends ' ||| ' and a word alignment to each line (Marian's convention):
the --output hypotheses' (`HYPOTHESIS ||| 0-0 1-2 ...`), or with --score the reference's
forced alignment (`LOGPROB ||| 0-0 1-2 ...`); see scripts/align_eval.py to score alignments.
"""

import json
import math
import os
import sys

from absl import app, flags

from jaxattn.data.readers import summary
from jaxattn.errors import UsageError
from jaxattn.inference import alignment, eval_input
from jaxattn.inference import translator as inference
from jaxattn.rundir.files import write_text
from jaxattn.tools import cli

cli.define_run_flags(ensemble=True)
cli.define_decoding_flags()
cli.define_eval_data_flags()
_OUTPUT = flags.DEFINE_string(
    "output",
    None,
    "Write the hypotheses here, one a line (and the "
    "JSON result beside them, unless --json); with --score, the "
    "scores.",
)
_SCORE = flags.DEFINE_bool(
    "score",
    False,
    "Print the model's log-probability of each reference (forced decoding) instead of translating.",
)
_PER_TOKEN = flags.DEFINE_bool(
    "per_token", False, "With --score: also each token's log-probability."
)
_PRINT_ALIGNMENT = flags.DEFINE_bool(
    "print_alignment",
    False,
    "With --output: append ' ||| ' and the word alignment (Pharaoh 'i-j' pairs) to each "
    "line: the hypothesis's, or with --score the reference's forced alignment.",
)
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
    cli.check_decoding_flags()
    cli.check_outputs("output", "json", inputs=("src", "ref", "tsv", "unk_dictionary"))
    if _SCORE.value:
        cli.reject_flags(
            [*cli.search_flags(), "max_len", "replace_unk", "unk_dictionary"],
            "no search runs with --score.",
        )
    elif _PER_TOKEN.value:
        raise UsageError("--per_token goes with --score.")
    if _PRINT_ALIGNMENT.value and not _OUTPUT.value and not _SCORE.value:
        raise UsageError("--print_alignment goes with --output (the file it writes to) or --score.")
    own_split = data_options["src"] is None and data_options["tsv"] is None
    limits = eval_input.limit_options("truncate" if own_split else "error")
    translator = inference.Translator.from_workdirs(*cli.run_specs(FLAGS.workdir))
    translator.check_limits(FLAGS.max_len, limits["max_input_len"], limits["overlong"])
    sources, refs, counts = eval_input.load_pairs(translator, **data_options, **limits)
    what = describe(data_options, counts)
    where = eval_input.names(**data_options)
    if _SCORE.value:
        return score(
            translator,
            sources,
            refs,
            what,
            limits,
            where,
            eval_input.names(**data_options, target=True),
        )
    empty = sum(not s.strip() for s in sources)
    if empty:
        print(f"warning: {empty} empty source line(s): empty hypotheses.", file=sys.stderr)
    decoding = {**cli.decoding_options(translator.config.eval.beam_size), **limits}
    result = translator.evaluate(
        sources,
        refs,
        warmup=FLAGS.warmup,
        where=where,
        alignments=_PRINT_ALIGNMENT.value,
        **decoding,
    )
    hyps = result.pop("hypotheses")
    if _PRINT_ALIGNMENT.value:
        links = result.pop("alignments")
        hyps = [alignment.with_alignment(h, a) for h, a in zip(hyps, links, strict=True)]
    search = translator.options(decoding["options"]).describe()
    print(
        f"{runs(translator)} ({search}) on {what}: {len(sources)} sentences, "
        f"{result['seconds']:.2f} s, {result['sentences_per_sec']:.1f} sentences/s"
        + (" (with compilation)" if result["includes_compilation"] else "")
    )
    print(inference.format_scores(result))
    if result["truncated_inputs"]:
        print(
            f"warning: {result['truncated_inputs']} source sentence(s) cut to the input limit "
            "(see above).",
            file=sys.stderr,
        )
    if result["unfinished"]:
        print(
            f"warning: {result['unfinished']} translation(s) reached max_len without EOS.",
            file=sys.stderr,
        )
    result.update(
        workdir=os.path.abspath(translator.workdir), data=what, checkpoint=FLAGS.checkpoint
    )
    if _OUTPUT.value:
        write_text(_OUTPUT.value, "".join(h + "\n" for h in hyps))
        print(f"hypotheses: {_OUTPUT.value}")
    json_path = FLAGS.json or (_OUTPUT.value + ".json" if _OUTPUT.value else None)
    if json_path:
        write_text(json_path, json.dumps(result, indent=2) + "\n")
        print(f"result: {json_path}")


def runs(translator) -> str:
    """'DIR step N', or 'ensemble of DIR step N + DIR step M'."""
    names = " + ".join(f"{w} step {s}" for w, s in translator.members)
    return names if len(translator.members) == 1 else f"ensemble of {names}"


def score(translator, sources, refs, what: str, limits: dict, where, target_where) -> None:
    """--score: one log-probability (and with --per_token the tokens' ones) a line."""
    scores = translator.score(
        sources, refs, batch_size=FLAGS.batch_size, where=where, target_where=target_where, **limits
    )
    lines = [
        f"{s.log_prob:.4f}"
        + (
            f"\t{' '.join(s.tokens)}\t" + " ".join(f"{x:.4f}" for x in s.token_log_probs)
            if _PER_TOKEN.value
            else ""
        )
        for s in scores
    ]
    if _PRINT_ALIGNMENT.value:
        lines = [
            alignment.with_alignment(x, s.alignment) for x, s in zip(lines, scores, strict=True)
        ]
    total, tokens = sum(s.log_prob for s in scores), sum(len(s.tokens) for s in scores)
    if _OUTPUT.value:
        write_text(_OUTPUT.value, "".join(line + "\n" for line in lines))
    else:
        print("\n".join(lines))
    print(
        f"{runs(translator)} on {what}: {len(scores)} references, log-probability {total:.4f}"
        f", {tokens} tokens (EOS included), {total / tokens:.4f} a token, perplexity "
        f"{math.exp(-total / tokens):.4f}"
        + (f"; scores: {_OUTPUT.value}" if _OUTPUT.value else ""),
        file=sys.stderr,
    )


if __name__ == "__main__":
    app.run(cli.main(run), flags_parser=cli.parse_flags)
