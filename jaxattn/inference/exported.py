"""A trained translator shipped as `jax.export` artifacts: it runs without jaxattn's model code::

    from jaxattn.inference import exported
    exported.export_workdir("runs/base", "runs/base-export", checkpoint="best", beam_size=5)
    tr = exported.load("runs/base-export")      # checks manifest.json and every file's sha256
    [t] = tr.translate(["je suis content ."])   # t.text: 'i m happy .' (the exported beam)
    tr.translate(sentences, beam_size=1)        # greedy; Translations, as Translator's

The directory: manifest.json (format version, versions, config summary, shapes, decoding
length rule, validation BLEU, sha256 and size of every file), params.npz (the parameters once,
by tree path 'decoder/out/kernel': an input, not constants baked into each artifact), the run's
config.json and vocabularies, and one artifact per (search, decoding length T): greedy_T32.bin,
beam5_T32.bin, ... Each is `search.decode` traced with symbolic batch b and source width s
(and the decoding constraints given, min_len and no_repeat_ngram, baked in),
(params, src int32[b, s], src_len int32[b]) -> (tokens int32[b, T], lengths int32[b], scores
float32[b], weights float32[b, T, s], finished bool[b]). T is static in `search.decode` and
Translator derives it from the padded width (DECODE_LENGTH_RULE), so each artifact lists the
widths it serves. `load` reuses Translator's text handling and batching with the decoding
swapped for the artifacts: its output is Translator's token for token; no model is built.

From plain JAX (no jaxattn), with src = the source ids (src_vocab.txt line numbers) then EOS,
padded with pad_id to a width the artifact serves::

    import json, jax, numpy as np
    m = json.load(open("DIR/manifest.json"))
    flat, params = np.load("DIR/params.npz"), {}
    for path in flat.files:                  # 'decoder/out/kernel' -> nested dicts
        *parents, leaf = path.split("/")
        node = params
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = flat[path]
    art = m["artifacts"][0]   # {'file', 'method', 'beam_size', 'max_len', 'src_widths', ...}
    exp = jax.export.deserialize(bytearray(open("DIR/" + art["file"], "rb").read()))
    tokens, lengths, scores, weights, finished = exp.call(params, src, src_len)
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import jaxattn
from jaxattn import data as data_lib
from jaxattn import search
from jaxattn.errors import ExportError, JaxattnError, first_line
from jaxattn.inference import translator as inference
from jaxattn.rundir import files as workdir_lib
from jaxattn.rundir import run as run_lib
from jaxattn.rundir.layout import CONFIG_FILE, DATA_STATS_FILE, LOCK_FILE, VOCAB_FILES
from jaxattn.search.options import DecodeOptions, check_value

FORMAT, FORMAT_VERSION = "jaxattn-export", 1
MANIFEST_FILE, PARAMS_FILE = "manifest.json", "params.npz"
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")  # jax.export's lowering targets
DEFAULT_MAX_SOURCE_LEN = 64  # tokens covered at least (more if the run's corpus filter allows)
DECODE_LENGTH_RULE = (
    "max_len = round_up(max(eval.max_decode_len, 2 * S + 10), 8); S = src width; at most "
    "model.max_positions for a decoder with a learned positional table"
)


class Decoded(NamedTuple):
    """An artifact's outputs for a batch (the best hypothesis of each row)."""

    tokens: jax.Array  # int32 [B, T]: ids, EOS included, then padding
    lengths: jax.Array  # int32 [B]
    scores: jax.Array  # float32 [B]
    weights: jax.Array  # float32 [B, T, S]
    finished: jax.Array  # bool [B]


# --------------------------------------------------------------------------------- export
def export_workdir(workdir: str, out: str, *, checkpoint: str | int = "latest", **kwargs) -> dict:
    """Exports a run's checkpoint ('latest', 'best' or a step) to `out`; kwargs as
    `export_translator`. InferenceError if the run has no usable checkpoint; ExportError,
    before anything is restored, for an `out` in a training run or not writable."""
    _check_out(out, kwargs.get("overwrite", False), workdir)  # before restoring anything
    translator = inference.Translator.from_workdir(workdir, checkpoint)
    return export_translator(translator, out, checkpoint=checkpoint, **kwargs)


def export_translator(
    translator: inference.Translator,
    out: str,
    *,
    beam_size: int = 5,
    platforms: Sequence[str] = ("cpu",),
    max_source_len: int | None = None,
    overwrite: bool = False,
    checkpoint: str | int | None = None,
    min_len: int = 0,
    no_repeat_ngram: int = 0,
) -> dict:
    """Writes the export directory of `translator` and returns its manifest.

    beam_size: the beam artifacts' k (0 or 1: greedy only); alpha is the run's
    eval.length_penalty. min_len, no_repeat_ngram: the decoding constraints every artifact
    is traced with (search.Constraints; static, so baked in), and the loaded export's
    defaults; it serves no others. platforms: jax.export lowering targets ('cpu', 'cuda', ...).
    max_source_len: longest input (tokens) served, and the loaded export's input limit; None:
    the Translator's (twice the longest training sentence), else max(64, the filter's limit).
    The directory is built beside `out` and renamed into place, manifest last, so `out` is
    never half written; ExportError naming the file of `out` if one cannot be written (disk
    full), and for an `out` in a training run (see `_check_out`).
    """
    if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 0:
        raise ExportError(f"beam_size must be an integer >= 0, got {beam_size!r}.")
    unknown = [p for p in platforms if p not in PLATFORMS]
    if unknown or not platforms:
        raise ExportError(
            (f"Unknown platform(s) {unknown}" if unknown else "No platform given")
            + f": choose among {list(PLATFORMS)}."
        )
    constraints = dict(min_len=min_len, no_repeat_ngram=no_repeat_ngram)
    for name, value in constraints.items():
        check_value(name, value)  # OptionError naming it, before any work
    if len(translator.members) > 1:
        raise ExportError("An ensemble cannot be exported: export each run on its own.")
    if not translator.workdir:
        raise ExportError(
            "Export needs a Translator from a workdir (Translator.from_workdir): "
            "its config.json and vocabulary files are copied as they are."
        )
    _check_out(out, overwrite, translator.workdir)
    # by default the export serves what the Translator takes (twice the longest training
    # sentence); runs from before data_stats.json: max(64, the corpus filter's limit)
    max_source_len = (
        max_source_len
        or translator.input_limit().tokens
        or max(DEFAULT_MAX_SOURCE_LEN, translator.max_length)
    )
    params = jax.tree.map(np.asarray, translator.variables["params"])
    sources = {}  # the run's config and vocabularies, read before anything is written
    for name in [CONFIG_FILE, DATA_STATS_FILE, *VOCAB_FILES]:
        path = os.path.join(translator.workdir, name)
        if os.path.exists(path):
            try:
                with open(path, "rb") as f:
                    sources[name] = f.read()
            except OSError as e:
                raise ExportError(
                    f"Cannot read {path} of the run exported: {e.strerror or e}."
                ) from None
    parent = os.path.dirname(os.path.abspath(out))
    try:
        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(out))}.", dir=parent)
    except OSError as e:
        raise ExportError(
            f"Cannot write the directory {out}: cannot create files in {parent} "
            f"({e.strerror or e}); choose a writable --out."
        ) from None
    os.chmod(tmp, 0o755)  # mkdtemp's 0700 would hide the export from its users
    # Built in `tmp` and renamed into place, manifest last: a failed export leaves nothing that
    # `load` accepts. A write error names the file of `out` being written, not `tmp`.
    try:
        with _writing(out, PARAMS_FILE):
            leaves = _save_params(params, os.path.join(tmp, PARAMS_FILE))
        for name, data in sources.items():
            with _writing(out, name):
                workdir_lib.write_bytes(os.path.join(tmp, name), data)
        searches = [("greedy", 1)] + ([("beam", beam_size)] if beam_size > 1 else [])
        alpha = float(translator.config.eval.length_penalty)
        artifacts = []
        for max_len, widths in _length_table(translator, max_source_len + 1).items():
            for method, k in searches:
                name = f"{'greedy' if k == 1 else f'beam{k}'}_T{max_len}.bin"
                blob = _export(
                    translator, params, method, k, alpha, max_len, tuple(platforms), constraints
                )
                with _writing(out, name):
                    workdir_lib.write_bytes(os.path.join(tmp, name), blob)
                artifacts.append(
                    dict(
                        file=name,
                        method=method,
                        beam_size=k,
                        alpha=alpha,
                        max_len=max_len,
                        src_widths=widths,
                        **constraints,  # absent from exports made before them: 0
                    )
                )
        manifest = _manifest(
            translator,
            checkpoint,
            platforms,
            max_source_len,
            leaves,
            artifacts,
            default_beam_size=max(beam_size, 1),
        )
        with _writing(out, MANIFEST_FILE):
            manifest["files"] = {
                n: dict(
                    sha256=workdir_lib.sha256_file(os.path.join(tmp, n)),
                    bytes=os.path.getsize(os.path.join(tmp, n)),
                )
                for n in sorted(os.listdir(tmp))
            }
            workdir_lib.write_json(os.path.join(tmp, MANIFEST_FILE), manifest)
        with _writing(out):
            _move_into_place(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _run_around(real_path: str) -> str | None:
    """The nearest training run that is `real_path` or one of its parents, else None."""
    path = real_path
    while True:
        if run_lib.is_run(path):  # never an export folder, nor a place for one
            return path
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent


def _check_out(out: str, overwrite: bool, workdir: str = "") -> None:
    """`out` must be new, empty, or (with `overwrite`) an earlier export; never in a training
    run (the one exported or any other: its workdir, checkpoints/, a step, averaged/, any
    folder below), never the run exported or a folder holding it, whatever `overwrite` says.
    Paths are compared resolved (symlinks, '..'). Called before any work."""
    real_out = os.path.realpath(out)
    shown = out if real_out == os.path.abspath(out) else f"{out} (that is, {real_out})"
    if workdir:
        real_run = os.path.realpath(workdir)
        common = os.path.commonpath([real_out, real_run])
        if common == real_out:
            raise ExportError(
                f"--out {shown} is (or holds) the run being exported, {workdir}; "
                "choose a directory outside it."
            )
        if common == real_run:
            raise ExportError(
                f"--out {shown} is inside the run being exported, {workdir}: an export there "
                "would mix with the run's files (one in checkpoints/ is taken for a damaged "
                f"checkpoint). Choose a folder outside {workdir}, e.g. "
                f"{os.path.normpath(workdir)}-export."
            )
    run = _run_around(real_out)
    if run is not None:
        where = "is the training run" if run == real_out else "is inside the training run"
        raise ExportError(
            f"--out {shown} {where} {run} (it holds {CONFIG_FILE} or "
            f"{LOCK_FILE}, and checkpoints/): an export never goes in "
            "a run. Choose a folder outside it."
        )
    parent = os.path.dirname(os.path.abspath(out))
    if os.path.exists(out) and not os.path.isdir(out) or not os.path.isdir(parent):
        raise ExportError(f"Cannot write the directory {out}: a file, or its parent is missing.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ExportError(f"Cannot write the directory {out}: {parent} is not writable.")
    if not (os.path.isdir(out) and os.listdir(out)):
        return
    if not overwrite:
        raise ExportError(
            f"--out {out} is not empty; choose a new directory or pass --overwrite to replace it."
        )
    if not os.path.isfile(os.path.join(out, MANIFEST_FILE)):
        raise ExportError(
            f"--out {out} is not an export directory (no {MANIFEST_FILE}): "
            "--overwrite replaces only an earlier export. Choose a new directory, "
            "or empty this one yourself."
        )
    folders = sorted(n for n in os.listdir(out) if os.path.isdir(os.path.join(out, n)))
    if folders:
        raise ExportError(
            f"--out {out} holds folders ({', '.join(folders[:3])}), which an "
            "export never does: --overwrite replaces only an earlier export. "
            "Choose a new directory, or empty this one yourself."
        )


@contextlib.contextmanager
def _writing(out: str, name: str | None = None):
    """Turns an OSError (disk full, quota, permissions) into an ExportError naming the file
    of `out` being written (`out` itself when moving the finished export into place)."""
    try:
        yield
    except OSError as e:
        dest = os.path.join(out, name) if name else out
        full = e.errno in (errno.ENOSPC, errno.EDQUOT)
        code = errno.errorcode.get(e.errno) if e.errno else None
        why = f"{e.strerror or e}" + (f" [{code}]" if code else "")
        fix = (
            f"free space on the disk of {os.path.dirname(os.path.abspath(out))} (or the "
            "quota) or choose another --out on a disk with room"
            if full
            else "check that folder's permissions and free space, or choose another --out"
        )
        before = (
            f"{out} is as it was before"
            if os.path.lexists(out)
            else f"nothing was written to {out}"
        )
        raise ExportError(
            f"Cannot write {dest}: {why}. The export is not made ({before}): "
            f"{fix}, then export again."
        ) from None


def _move_into_place(tmp: str, out: str) -> None:
    """Renames the finished directory to `out`; an old `out` is removed only after (and put
    back if the rename fails)."""
    old = None
    if os.path.isdir(out) and os.listdir(out):
        old = tempfile.mkdtemp(prefix=".old.", dir=os.path.dirname(os.path.abspath(out)))
        os.replace(out, os.path.join(old, "out"))
    try:
        os.replace(tmp, out)  # an empty `out` is replaced too
    except OSError:
        if old:
            os.replace(os.path.join(old, "out"), out)
            shutil.rmtree(old, ignore_errors=True)
        raise
    if old:
        shutil.rmtree(old, ignore_errors=True)


def _length_table(translator: inference.Translator, max_positions: int) -> dict[int, list[int]]:
    """{decoding length T: [padded source widths S it serves]} for inputs of 2..max_positions
    positions (EOS included), by Translator's own padding and length rules."""
    table: dict[int, list[int]] = {}
    for n in range(2, max_positions + 1):
        width = translator.padded_len(n)
        widths = table.setdefault(translator.decode_len(width, None), [])
        if width not in widths:
            widths.append(width)
    return table


def _export(translator, params, method, beam_size, alpha, max_len, platforms, constraints) -> bytes:
    """A serialized artifact of `Translator.decode_ids` (the best hypothesis), symbolic in
    batch b and source width s: (params, src, src_len) -> Decoded's fields."""
    options = DecodeOptions(method=method, beam_size=beam_size, alpha=alpha, **constraints)

    def decode(params, src, src_len):
        r = translator.decode_ids(
            src, src_len, max_len=max_len, options=options, variables={"params": params}
        )
        return tuple(getattr(r.top(), f) for f in Decoded._fields)

    b, s = jax.export.symbolic_shape("b, s")
    specs = (
        jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params),
        jax.ShapeDtypeStruct((b, s), np.int32),
        jax.ShapeDtypeStruct((b,), np.int32),
    )
    try:
        exp = jax.export.export(jax.jit(decode), platforms=platforms)(*specs)
        return bytes(exp.serialize())
    except ImportError as e:  # jax serializes with the flatbuffers package
        raise ExportError(f"Cannot serialize: {e} (pip install flatbuffers).") from None
    except Exception as e:  # noqa: BLE001 - a platform jax cannot lower for, here
        raise ExportError(
            f"jax.export cannot lower {method} search for platforms "
            f"{list(platforms)} ({first_line(e)}); try --platforms=cpu."
        ) from None


def _save_params(params, path: str) -> list[dict]:
    """params.npz of the leaves by '/'-joined tree path; their [{path, shape, dtype}]."""
    flat = {
        "/".join(str(k.key) for k in p): np.asarray(x)
        for p, x in jax.tree_util.tree_flatten_with_path(params)[0]
    }
    with open(path, "wb") as f:
        np.savez(f, **flat)
    return [dict(path=k, shape=list(v.shape), dtype=str(v.dtype)) for k, v in flat.items()]


def _manifest(
    translator, checkpoint, platforms, max_source_len, leaves, artifacts, default_beam_size
) -> dict:
    c = translator.config
    metrics = {}
    if translator.workdir and translator.step is not None:
        try:
            with run_lib.Checkpoints(translator.workdir) as ckpts:
                metrics = ckpts.metrics(translator.step)
        except Exception:  # noqa: BLE001 - the figure is optional
            metrics = {}
    return dict(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        created=time.strftime("%Y-%m-%dT%H:%M:%S"),
        versions=dict(jaxattn=jaxattn.__version__, jax=jax.__version__, jaxlib=jax.lib.__version__),
        source=dict(
            workdir=translator.workdir and os.path.abspath(translator.workdir),
            checkpoint=checkpoint,
            step=translator.step,
        ),
        config=dict(
            model=c.model.to_dict(),
            eval=c.eval.to_dict(),
            data=dict(name=c.data.name, src_lang=c.data.src_lang, tgt_lang=c.data.tgt_lang),
        ),
        validation=dict(
            bleu=metrics.get("bleu"),
            chrf=metrics.get("chrf"),
            note="greedy validation scores saved with this checkpoint (sacreBLEU)",
        ),
        platforms=list(platforms),
        default_beam_size=default_beam_size,
        inputs=dict(params=PARAMS_FILE, src="int32[b, s]", src_len="int32[b]"),
        outputs="tokens int32[b, max_len], lengths int32[b], scores float32[b], "
        "weights float32[b, max_len, s], finished bool[b]",
        decode_length=dict(rule=DECODE_LENGTH_RULE, max_source_len=max_source_len),
        params=dict(count=int(sum(np.prod(x["shape"]) for x in leaves)), leaves=leaves),
        artifacts=artifacts,
    )


# ----------------------------------------------------------------------------------- load
def load(directory: str) -> ExportedTranslator:
    """An export directory -> ExportedTranslator, after checking its manifest (format
    version, every file present with its size and sha256); ExportError naming the file."""
    manifest = read_manifest(directory)
    return ExportedTranslator(directory, manifest)


def read_manifest(directory: str) -> dict:
    """The verified manifest of an export directory."""
    path = os.path.join(directory, MANIFEST_FILE)
    if not os.path.isdir(directory):
        raise ExportError(f"No such export directory: {directory}.")
    try:
        manifest = workdir_lib.read_json(path)
    except JaxattnError as e:
        raise ExportError(str(e)) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ExportError(
            f"{path} is missing or not a jaxattn export manifest; export again: "
            "python scripts/export.py --workdir RUN --out DIR."
        )
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ExportError(
            f"{path} has format version {manifest.get('format_version')!r}; this "
            f"jaxattn reads version {FORMAT_VERSION}. Export the run again, or "
            "load it with the jaxattn version that wrote it."
        )
    for name, want in manifest.get("files", {}).items():
        _check_file(os.path.join(directory, name), want)
    return manifest


def _check_file(path: str, want: dict) -> None:
    what = "vocabulary file" if path.endswith((".txt", ".model")) else "file"
    fix = "copy it again from the original export, or export the run again."
    if not os.path.isfile(path):
        raise ExportError(f"The {what} {path} is missing (listed in {MANIFEST_FILE}); {fix}")
    size = os.path.getsize(path)
    if size != want["bytes"]:
        raise ExportError(
            f"{path} is truncated or changed: {size} bytes, {want['bytes']} "
            f"expected ({MANIFEST_FILE}); {fix}"
        )
    if workdir_lib.sha256_file(path) != want["sha256"]:
        raise ExportError(f"{path} is corrupted: its sha256 differs from {MANIFEST_FILE}; {fix}")


class ExportedTranslator:
    """Translates with an export directory's artifacts, as `Translator` would (see `load`)."""

    def __init__(self, directory: str, manifest: dict):
        self.directory, self.manifest = directory, manifest
        self.default_beam_size = manifest["default_beam_size"]
        self.constraints = constraints(manifest["artifacts"][0]) if manifest["artifacts"] else {}
        # A Translator over the artifacts: .evaluate(sources, references), .attention(s) too
        self.translator = _ArtifactTranslator(directory, manifest)

    def translate(
        self,
        sentences: Sequence[str],
        beam_size: int | None = None,
        *,
        batch_size: int | None = None,
    ) -> list[inference.Translation]:
        """`Translator.translate`'s Translations (text, tokens, score, attention weights) of raw
        sentences; beam_size None: the exported default (manifest default_beam_size), 1:
        greedy; with the constraints exported (min_len, no_repeat_ngram)."""
        beam_size = self.default_beam_size if beam_size is None else beam_size
        return self.translator.translate(
            sentences, beam_size=beam_size, batch_size=batch_size, **self.constraints
        )

    @property
    def beam_sizes(self) -> list[int]:
        return self.translator.beam_sizes


class _ArtifactTranslator(inference.Translator):
    """Translator's text handling and batching; decoding by the artifacts (no model)."""

    def __init__(self, directory: str, manifest: dict):  # noqa: D107 - no Translator.__init__
        try:
            config = run_lib.load_config(directory)
            text = data_lib.load_text_processing(config.data, directory)
        except (JaxattnError, FileNotFoundError, ValueError) as e:
            raise ExportError(f"Cannot load the text processing of {directory}: {e}") from None
        self._init_text(
            config,
            text,
            runs=[(config, directory)],
            max_input_len=manifest["decode_length"]["max_source_len"],
        )
        self.step, self.workdir, self.model = manifest["source"]["step"], None, None
        self.members = [(manifest["source"]["workdir"], self.step)]
        self.directory, self.max_source_len = directory, manifest["decode_length"]["max_source_len"]
        self.manifest = manifest
        self.beam_sizes = sorted({a["beam_size"] for a in manifest["artifacts"]})
        self.device = _device(manifest["platforms"])
        leaves = np.load(os.path.join(directory, PARAMS_FILE), allow_pickle=False)
        self.variables = jax.device_put(
            _unflatten(
                {
                    x["path"]: leaves[x["path"]].view(jnp.dtype(x["dtype"]))
                    for x in manifest["params"]["leaves"]
                }
            ),
            self.device,
        )
        self.artifacts = {}  # (beam_size, max_len) -> (jitted call, manifest entry)
        for a in manifest["artifacts"]:
            path = os.path.join(directory, a["file"])
            try:
                with open(path, "rb") as f:
                    exp = jax.export.deserialize(bytearray(f.read()))
            except Exception as e:  # noqa: BLE001 - any failure: this file is unusable
                raise ExportError(
                    f"Cannot deserialize {path} ({first_line(e)}); it was written "
                    f"by jax {manifest['versions']['jax']}, this is jax "
                    f"{jax.__version__}. Export the run again."
                ) from None
            self.artifacts[a["beam_size"], a["max_len"]] = (jax.jit(exp.call), a)

    def decode_ids(
        self,
        src,
        src_len,
        *,
        max_len: int,
        options: DecodeOptions,
        rng=None,
        variables=None,
    ) -> search.SearchResult:
        """Runs the artifact serving (options, max_len, src width) -> SearchResult [B, 1, ...]."""
        o = self.options(options)  # alpha None: the run's, as the artifacts were traced with
        if o.method not in ("greedy", "beam") or o.n_best != 1 or o.beta:
            raise ExportError(
                f"{self.directory} decodes greedy and beam search of one "
                f"hypothesis without a coverage penalty, not {o.describe()}: "
                "translate with the training run (--workdir) for that."
            )
        call, a = self.artifacts.get((o.beam_size, max_len), (None, None))
        baked = constraints(a or next(iter(self.manifest["artifacts"]), {}))
        asked = {name: getattr(o, name) for name in baked}
        if asked != baked:
            raise ExportError(
                f"{self.directory} was exported with {_listed(baked)}, not {_listed(asked)}: "
                "export again with the --min_len / --no_repeat_ngram you need, or translate "
                "with the training run (--workdir)."
            )
        if a is None or src.shape[1] not in a["src_widths"] or o.alpha != a["alpha"]:
            raise ExportError(
                f"{self.directory} has no artifact for beam_size {o.beam_size}, alpha {o.alpha}, "
                f"{max_len} decoding steps and a source of {int(np.max(src_len)) - 1} "
                f"tokens. It serves beam sizes {self.beam_sizes}, alpha "
                f"{self.config.eval.length_penalty}, the run's decoding lengths (no max_len) and "
                f"up to {self.max_source_len} tokens: export again with the --beam_size or "
                "--max_source_len you need."
            )
        r = Decoded(*call(self.variables, *jax.device_put((src, src_len), self.device)))
        log_probs = r.scores * search.length_penalty(r.lengths, a["alpha"])  # no coverage
        return search.SearchResult(
            r.tokens[:, None],
            r.lengths[:, None],
            r.scores[:, None],
            log_probs[:, None],
            r.weights[:, None],
            r.finished[:, None],
            r.lengths.max(),
        )


def constraints(artifact: dict) -> dict:
    """{'min_len': m, 'no_repeat_ngram': n} an artifact was traced with (0: an artifact of an
    export made before these options, which had none)."""
    return {name: artifact.get(name, 0) for name in ("min_len", "no_repeat_ngram")}


def _listed(values: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in values.items())


def _unflatten(flat: dict) -> dict:
    """{'a/b/c': x} -> {'a': {'b': {'c': x}}}."""
    tree: dict = {}
    for path, x in flat.items():
        *parents, leaf = path.split("/")
        node = tree
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = x
    return tree


def _device(platforms: Sequence[str]):
    """The first device of an exported platform, accelerators first."""
    for p in sorted(platforms, key=lambda p: p == "cpu"):
        try:
            return jax.devices(p)[0]
        except RuntimeError:
            continue
    raise ExportError(
        f"This export runs on {list(platforms)}, none of which this machine has; "
        "export again with --platforms=cpu."
    )
