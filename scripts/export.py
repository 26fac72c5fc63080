"""Exports a trained checkpoint as `jax.export` artifacts that translate without the model code.

    python scripts/export.py --workdir runs/base --checkpoint best --out runs/base-export
    python scripts/export.py --workdir runs/base --out DIR --beam_size 0 --platforms cpu,cuda
    python scripts/export.py --workdir runs/base --out DIR --no_repeat_ngram 3  # baked in

The directory holds greedy (and beam-k) search artifacts, symbolic in batch and source width,
the parameters, the run's config and vocabularies, and manifest.json (versions, shapes, sha256
of every file). Use it with `jaxattn.inference.exported.load(DIR).translate([...])`, or from plain
JAX
(see jaxattn/inference/exported.py). A non-empty --out is refused unless --overwrite (which
replaces only
an earlier export); an --out in a training run (the one exported or another: its workdir,
checkpoints/, a step, averaged/, any folder below, however the path is spelt) is always refused,
before any work. A write error (disk full) names the file of --out and leaves --out as it was.
"""

import os

from absl import app, flags

from jaxattn.errors import UsageError
from jaxattn.inference import exported
from jaxattn.search.options import OPTIONS
from jaxattn.tools import cli

cli.define_run_flags()
_OUT = flags.DEFINE_string(
    "out", None, "The export directory (new or empty), outside any training run."
)
flags.mark_flag_as_required("out")
_BEAM_SIZE = flags.DEFINE_integer(
    "beam_size", 5, "Beam size of the beam search artifacts; 0 or 1: greedy only."
)
_PLATFORMS = flags.DEFINE_list(
    "platforms", ["cpu"], "jax.export lowering platforms: cpu, cuda, rocm, tpu (comma-separated)."
)
_MAX_SOURCE_LEN = flags.DEFINE_integer(
    "max_source_len",
    None,
    "Longest input served, in "
    "tokens; default: the run's input limit (twice its "
    "longest training sentence), else max(64, the corpus "
    "filter's limit).",
)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace a non-empty --out.")
_CONSTRAINTS = {  # baked into every artifact (the help texts of search.OPTIONS' rows)
    name: flags.DEFINE_integer(name, 0, OPTIONS[name].help)
    for name in ("min_len", "no_repeat_ngram")
}
FLAGS = flags.FLAGS


def run(argv):
    cli.no_arguments(argv)
    if _BEAM_SIZE.value < 0:
        raise UsageError(f"--beam_size must be >= 0, got {_BEAM_SIZE.value}.")
    if _MAX_SOURCE_LEN.value is not None:
        cli.check_positive("max_source_len")
    for name, flag in _CONSTRAINTS.items():
        OPTIONS[name].check(flag.value, name=f"--{name}", typed=False)
    manifest = exported.export_workdir(
        FLAGS.workdir,
        _OUT.value,
        checkpoint=FLAGS.checkpoint,
        beam_size=_BEAM_SIZE.value,
        platforms=tuple(_PLATFORMS.value),
        max_source_len=_MAX_SOURCE_LEN.value,
        overwrite=_OVERWRITE.value,
        **{name: flag.value for name, flag in _CONSTRAINTS.items()},
    )
    files = manifest["files"]
    size = sum(f["bytes"] for f in files.values()) + os.path.getsize(
        os.path.join(_OUT.value, exported.MANIFEST_FILE)
    )
    bleu, n = manifest["validation"]["bleu"], len(manifest["artifacts"])
    print(
        f"{_OUT.value}: step {manifest['source']['step']} of {FLAGS.workdir}, "
        f"{n} artifact{'s' * (n != 1)} for {', '.join(manifest['platforms'])} "
        f"(searches: beam sizes {sorted({a['beam_size'] for a in manifest['artifacts']})}; "
        f"inputs up to {manifest['decode_length']['max_source_len']} tokens), "
        f"{len(files) + 1} files, {size / 1e6:.2f} MB"
        + (f"; validation BLEU {bleu:.2f}" if isinstance(bleu, (int, float)) else "")
    )


if __name__ == "__main__":
    app.run(cli.main(run), flags_parser=cli.parse_flags)
