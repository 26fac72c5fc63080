"""Translates sentences with a trained checkpoint: from the arguments, or stdin one a line.

    python scripts/translate.py --workdir runs/base "Je suis content." "Il est grand."
    python scripts/translate.py --workdir runs/base --beam_size 5 < input.fr > output.en
    python scripts/translate.py --workdir runs/base --attention_png att.png "elle est belle ."
    python scripts/translate.py --exported runs/base-export < input.fr   # scripts/export.py
    python scripts/translate.py --workdir runs/base --beam_size 5 --n_best 3 < input.fr
    python scripts/translate.py --workdir runs/base --method sample --temperature 0.8 --n_best 4
    python scripts/translate.py --workdir runs/a,runs/b --checkpoint best,best   # an ensemble
    python scripts/translate.py --workdir runs/words --replace_unk --unk_dictionary lex.tsv

Input goes through the run's normalization and tokenizer (for the tutorial corpus: lowercase,
no accents, punctuation split off). One output line per input line: an empty line gives an
empty line, and a line that is not UTF-8 gives an empty line, a message and exit status 1.
--attention_png draws the tutorial's attention heatmap (several sentences: a grid) of the
alignment, the attention each decode step reports (an RNN decoder's; for the Transformer
decoder the cross-attention of config.model.alignment_layer, the mean of its heads or head
config.model.alignment_head). --attention_view=cross|encoder_self|decoder_self draws instead a
layer x head grid of that attention for each sentence (several: PNG-1.png, PNG-2.png, ... by
input number); the default is cross for a Transformer decoder, alignment otherwise.

    python scripts/translate.py --workdir runs/tf --attention_png att.png \
        --attention_view encoder_self "elle est belle ."

Stdin is read a line at a time and translated in chunks of lines, each chunk's output written
as soon as it is decoded. A sentence over the input limit (by default twice the longest training
sentence, in tokens; --max_input_len sets it) stops with an error naming its line, after the
lines before it were written; a line is refused as soon as it is seen to be longer than the
limit allows in characters, without reading it whole. --truncate_long cuts such sentences
instead, with a warning. --max_len above what the model can decode is refused before any work.

--n_best K writes K lines per sentence (fewer only for an empty input line: one), tab-separated:
`INDEX<TAB>RANK<TAB>SCORE<TAB>TRANSLATION`, INDEX the input sentence (0-based, input order),
RANK 1 for the best, SCORE the search's score (beam: the log-probability over the length
penalty, plus the coverage penalty; sampling and greedy: the log-probability); beam search
lists its K best, sampling (--method sample) K samples ranked by score.
Several comma-separated --workdir runs (same vocabularies) decode as one ensemble.

--print_alignment appends ' ||| ' and the translation's word alignment to each translation
(Marian's convention: `TRANSLATION ||| 0-0 1-2 ...`, in every format above), Pharaoh pairs
`i-j` of source word i and target word j, 0-based, each target word linked to the source word
it attends to most (jaxattn/inference/alignment.py: EOS left out, subwords merged to words).
"""

import os
import sys

from absl import app, flags
from matplotlib.backend_bases import FigureCanvasBase

from jaxattn.data.readers import bad_lines_message
from jaxattn.errors import InferenceError, UsageError
from jaxattn.inference import alignment, eval_input, exported, translation
from jaxattn.inference import translator as inference
from jaxattn.model import seq2seq
from jaxattn.tools import cli, plots

cli.define_run_flags(workdir=False, ensemble=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "A training run's directory" + cli.ENSEMBLE_HELP + "."
)
_EXPORTED = flags.DEFINE_string(
    "exported", None, "Translate with an export directory (scripts/export.py) instead of --workdir."
)
cli.define_decoding_flags()
_ATTENTION_PNG = flags.DEFINE_string(
    "attention_png", None, "Save the attention heatmap(s) to this PNG file."
)
_ATTENTION_VIEW = flags.DEFINE_string(
    "attention_view",
    None,
    "What --attention_png draws: alignment (the attention each decode step reports, one "
    "heatmap), or a layer x head grid per sentence of cross, encoder_self or decoder_self "
    "(the Transformer's attentions). Default: cross for a Transformer decoder, else alignment.",
)
_MAX_PLOTS = flags.DEFINE_integer(
    "max_plots", 12, "At most this many sentences in the --attention_png grid."
)
_VERBOSE = flags.DEFINE_bool(
    "verbose",
    False,
    "Also print the model's input tokens and the score (tab-separated: input, translation, score).",
)
_PRINT_ALIGNMENT = flags.DEFINE_bool(
    "print_alignment",
    False,
    "Append ' ||| ' and each translation's word alignment (Pharaoh 'i-j' pairs, source word "
    "- target word, 0-based, from the attention) to its output line.",
)
FLAGS = flags.FLAGS
CHUNK_LINES = 1024  # stdin lines translated together (1 from a terminal: a line, its output)


def read_chunks(argv, limit: translation.InputLimit, overlong: str):
    """(number of the first line, sentences, 1-based numbers of the lines that were not UTF-8
    and became '') of each chunk of input: the arguments at once, or stdin a chunk of lines at
    a time, each line bounded (`eval_input.iter_lines`)."""
    if len(argv) > 1:
        yield 1, list(argv[1:]), []
        return
    chunk_lines = CHUNK_LINES
    if sys.stdin.isatty():
        print("Reading sentences from stdin, one a line (Ctrl-D to end).", file=sys.stderr)
        chunk_lines = 1
    first, sentences, bad = 1, [], []
    for n, line in eval_input.iter_lines(sys.stdin.buffer, "stdin", limit, overlong):
        sentences.append("" if line is None else line)
        if line is None:
            bad.append(n)
        if len(sentences) == chunk_lines:
            yield first, sentences, bad
            first, sentences, bad = n + 1, [], []
    if sentences:
        yield first, sentences, bad


def check_attention_png(path) -> None:
    """UsageError, before any decoding, for an --attention_png that cannot be written."""
    cli.check_outputs("attention_png")
    kinds = FigureCanvasBase.get_supported_filetypes()
    if path and os.path.splitext(path)[1].lower().lstrip(".") not in kinds:
        raise UsageError(
            f"--attention_png={path}: name an image file ending in "
            f"{', '.join('.' + k for k in sorted(kinds))} (e.g. att.png)."
        )


def check_attention_view(view, path) -> None:
    """UsageError, before any work, for an --attention_view that is no view, or without
    --attention_png."""
    if view is None:
        return
    if view not in translation.VIEWS:
        raise UsageError(f"--attention_view={view}: choose one of {', '.join(translation.VIEWS)}.")
    if not path:
        raise UsageError("--attention_view goes with --attention_png (the file it draws).")


def attention_view(translator, view) -> str:
    """The view --attention_png draws for this translator: `view` (UsageError, before any
    decoding, for one the model lacks), else the default (cross for a Transformer decoder)."""
    exported_model = translator.model is None  # an export: its searches only
    parts = seq2seq.self_attention(translator.config.model)
    if view is None:
        return "cross" if parts["decoder"] and not exported_model else "alignment"
    if view != "alignment" and exported_model:
        raise UsageError(
            f"--attention_view={view} needs the model, which an export does not hold: "
            "translate with --workdir, or draw the alignment."
        )
    part = view.split("_")[0]
    if view.endswith("_self") and not parts[part]:
        raise UsageError(
            f"--attention_view={view}: this model's {part} "
            f"({translator.config.model[part]!r}) has no self-attention layers."
        )
    return view


def run(argv):
    cli.check_decoding_flags()
    cli.check_positive("max_plots")
    limits = eval_input.limit_options()
    if (_WORKDIR.value is None) == (_EXPORTED.value is None):
        raise UsageError(
            "Give one of --workdir (a training run) and --exported (an export directory)."
        )
    if _EXPORTED.value:
        cli.reject_flags(
            ["checkpoint"],
            "an export holds one checkpoint (scripts/export.py --checkpoint chose it).",
        )
    check_attention_png(_ATTENTION_PNG.value)
    check_attention_view(_ATTENTION_VIEW.value, _ATTENTION_PNG.value)
    n_best = FLAGS["n_best"].present
    if n_best and _VERBOSE.value:
        raise UsageError("Give one of --n_best (its own format) and --verbose.")
    if _EXPORTED.value:  # a Translator whose decoding runs the jax.export artifacts
        translator = exported.load(_EXPORTED.value).translator
    else:
        translator = inference.Translator.from_workdirs(*cli.run_specs(_WORKDIR.value))
    decoding = {**cli.decoding_options(translator.config.eval.beam_size), **limits}
    translator.check_limits(decoding["max_len"], limits["max_input_len"], limits["overlong"])
    limit = translator.input_limit(limits["max_input_len"])
    view = attention_view(translator, _ATTENTION_VIEW.value) if _ATTENTION_PNG.value else None
    examples, drawable, bad = [], 0, []  # attention plots: the first --max_plots sentences
    drawn = []  # (input index, sentence) of each example, for the layer x head views
    stdin = len(argv) <= 1
    for first, sentences, chunk_bad in read_chunks(argv, limit, limits["overlong"]):
        bad += chunk_bad
        out = translator.translate(
            sentences,
            index_offset=first - 1,
            where=(
                lambda i, first=first: (
                    f"line {first + i} of stdin" if stdin else f"argument {first + i}"
                )
            ),
            **decoding,
        )
        for i, t in enumerate(out, first - 1):
            if n_best:
                print(
                    "\n".join(
                        f"{i}\t{rank}\t{h.score:.4f}\t{output_text(h)}"
                        for rank, h in enumerate(t.hypotheses(), 1)
                    )
                )
            elif _VERBOSE.value:
                print(f"{' '.join(t.input_tokens)}\t{output_text(t)}\t{t.score:.4f}")
            else:
                print(output_text(t))
        sys.stdout.flush()
        if _ATTENTION_PNG.value:
            drawable += sum(bool(t.input_tokens) for t in out)
            room = _MAX_PLOTS.value - len(examples)
            drawn += [
                (i, s)
                for i, (s, t) in enumerate(zip(sentences, out, strict=True), first - 1)
                if t.input_tokens
            ][:room]
            examples += [
                (translation.attention_labels(t), t.weights) for t in out if t.input_tokens
            ][:room]
    if bad:
        print(
            "error: " + bad_lines_message("stdin", bad) + "; their output lines are empty.",
            file=sys.stderr,
        )
    if _ATTENTION_PNG.value and view == "alignment":
        plot_attention(examples, drawable, _ATTENTION_PNG.value)
    elif _ATTENTION_PNG.value:
        plot_layers(translator, view, drawn, drawable, decoding, _ATTENTION_PNG.value)
    if bad:
        sys.exit(1)


def output_text(t: translation.Translation) -> str:
    """The translation, with --print_alignment ' ||| ' and its alignment."""
    return alignment.with_alignment(t.text, t.alignment) if _PRINT_ALIGNMENT.value else t.text


def check_drawn(n: int, drawable: int) -> None:
    """InferenceError when no sentence can be drawn; a warning when --max_plots cut some."""
    if not n:
        raise InferenceError("No sentence to draw attention for (all were empty).")
    if drawable > n:
        print(
            f"warning: drawing the first {n} of {drawable} sentences (--max_plots).",
            file=sys.stderr,
        )


def plot_attention(examples, drawable: int, path):
    """The heatmap of the first --max_plots `examples` ((labels, weights)) of `drawable`."""
    check_drawn(len(examples), drawable)
    try:
        if len(examples) == 1:
            (inputs, outputs), weights = examples[0]
            plots.show_attention(inputs, outputs, weights, path)
        else:
            plots.attention_grid([(i, o, w) for (i, o), w in examples], path)
    except OSError as e:
        raise InferenceError(f"Cannot write {path}: {e.strerror or e}.") from None
    print(f"attention: {path}", file=sys.stderr)


def plot_layers(translator, view: str, drawn, drawable: int, decoding: dict, path):
    """A layer x head grid of `view` for each of the first --max_plots `drawn` sentences
    ((input index, sentence)): path itself for one, else PATH-<input number>.EXT each. Each
    sentence is translated again (`Translator.attention_views`; sampling draws by input
    index, so it gives the same output)."""
    check_drawn(len(drawn), drawable)
    stem, ext = os.path.splitext(path)
    for i, sentence in drawn:
        views = translator.attention_views(
            sentence, index_offset=i, where=lambda _, i=i: f"sentence {i + 1}", **decoding
        )
        weights, x_words, y_words = views.grid(view)
        out = path if len(drawn) == 1 else f"{stem}-{i + 1}{ext}"
        try:
            plots.attention_layers(weights, x_words, y_words, out, title=f"{view}: layer x head")
        except OSError as e:
            raise InferenceError(f"Cannot write {out}: {e.strerror or e}.") from None
        print(f"attention: {out}", file=sys.stderr)


if __name__ == "__main__":
    app.run(cli.main(run), flags_parser=cli.parse_flags)
