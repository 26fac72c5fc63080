"""Attention views: `Seq2Seq.attention_views` (every layer's and head's weights of a
teacher-forced pass) for Transformer, mixed and RNN parts, scanned or not; the alignment is
what decode steps report and follows config.model.alignment_layer / alignment_head;
`Translator.attention_views`, the layer x head grid plot and translate.py's --attention_view."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from shared import ROOT

from jaxattn.config import default_model_config
from jaxattn.errors import UsageError
from jaxattn.inference.translation import VIEWS, SentenceViews, Translation
from jaxattn.inference.translator import Translator
from jaxattn.model.seq2seq import build_model
from jaxattn.search import force_decode
from jaxattn.tools import plots

L_ENC, L_DEC, HEADS = 2, 2, 2
SRC = jnp.array([[3, 4, 5, 6, 2, 0], [7, 8, 2, 0, 0, 0]])  # [B, S], EOS = 2, PAD = 0
SRC_LEN = jnp.array([5, 3])
TGT = jnp.array([[3, 4, 5, 2], [6, 2, 0, 0]])  # [B, T]
TGT_LEN = jnp.array([4, 2])


def _config(encoder, decoder, **fields):
    c = default_model_config()
    c.encoder, c.decoder = encoder, decoder
    c.hidden = c.embed_dim = 16
    c.heads, c.ff_dim = HEADS, 16
    c.encoder_layers, c.decoder_layers = L_ENC, L_DEC
    c.dropout = 0.0
    c.update(fields)
    return c


def _model(c):
    return build_model(c, 11, 13, bos_id=1)


def _stacked(params, parts):
    """Unrolled Transformer parameters (layer_0, layer_1, ...) of `parts` as scan_layers
    holds them: one `layers` module, the layer axis first."""
    params = dict(params)
    for part in parts:
        tree = dict(params[part])
        names = sorted((k for k in tree if k.startswith("layer_")), key=lambda k: int(k[6:]))
        tree["layers"] = jax.tree.map(lambda *a: jnp.stack(a), *[tree.pop(k) for k in names])
        params[part] = tree
    return params


def _views(model, variables):
    """`attention_views` of SRC, TGT, jitted (one compilation beats op-by-op dispatch)."""
    return jax.jit(lambda v: model.apply(v, SRC, SRC_LEN, TGT, method="attention_views"))(variables)


def _rows_sum_to_one(w, rows, cols):
    """w [B, L, h, T, S]: every real query row over its real keys sums to 1."""
    for b in range(w.shape[0]):
        sums = np.asarray(w[b, :, :, : rows[b], : cols[b]]).sum(-1)
        np.testing.assert_allclose(sums, 1.0, atol=1e-5)


@pytest.mark.parametrize(
    "encoder,decoder",
    [("transformer", "transformer"), ("transformer", "bahdanau"), ("rnn", "transformer")],
)
def test_views_shapes_scan_forced_decode(encoder, decoder):
    c = _config(encoder, decoder)
    model = _model(c)
    variables = model.init(jax.random.key(0), SRC, SRC_LEN, TGT)
    views = _views(model, variables)
    (b, s), t = SRC.shape, TGT.shape[1]
    tf_enc, tf_dec = encoder == "transformer", decoder == "transformer"
    assert (views.encoder_self is None) != tf_enc
    assert (views.decoder_self is None) != tf_dec
    if tf_enc:
        assert views.encoder_self.shape == (b, L_ENC, HEADS, s, s)
        _rows_sum_to_one(views.encoder_self, SRC_LEN, SRC_LEN)
    if tf_dec:
        assert views.decoder_self.shape == (b, L_DEC, HEADS, t, t)
        _rows_sum_to_one(views.decoder_self, TGT_LEN, TGT_LEN)  # causal: keys <= query
        upper = np.triu(np.ones((t, t), bool), 1)
        assert not np.asarray(views.decoder_self)[..., upper].any()
    assert views.cross.shape == ((b, L_DEC, HEADS, t, s) if tf_dec else (b, 1, 1, t, s))
    assert views.alignment.shape == (b, t, s)
    _rows_sum_to_one(views.cross, TGT_LEN, SRC_LEN)
    _rows_sum_to_one(views.alignment[:, None, None], TGT_LEN, SRC_LEN)

    # the alignment is what decode steps report: a forced decode's per-step weights
    forced = force_decode(model, variables, SRC, SRC_LEN, TGT, TGT_LEN)
    real = (jnp.arange(t)[None, :] < TGT_LEN[:, None])[..., None]  # [B, T, 1]
    np.testing.assert_allclose(
        np.where(real, views.alignment, 0.0), forced.weights, atol=1e-5, rtol=0
    )

    # scan_layers: the same views from the same parameters, stacked
    parts = [p for p, tf in (("encoder", tf_enc), ("decoder", tf_dec)) if tf]
    scanned = _model(_config(encoder, decoder, scan_layers=True))
    params = _stacked(variables["params"], parts)
    assert jax.tree.structure(params) == jax.tree.structure(
        jax.eval_shape(scanned.init, jax.random.key(0), SRC, SRC_LEN, TGT)["params"]
    )
    again = _views(scanned, {"params": params})
    for name in ("encoder_self", "decoder_self", "cross", "alignment"):
        a, b_ = getattr(views, name), getattr(again, name)
        assert (a is None) == (b_ is None), name
        if a is not None:
            np.testing.assert_allclose(a, b_, atol=1e-5, rtol=0, err_msg=name)


@pytest.mark.parametrize("scan", [False, True])
def test_alignment_layer_and_head_choose_the_alignment(scan):
    variables = None
    for layer, head in [(-1, -1), (0, -1), (0, 1), (-1, 0)]:
        model = _model(
            _config(
                "transformer",
                "transformer",
                alignment_layer=layer,
                alignment_head=head,
                scan_layers=scan,
            )
        )
        if variables is None:  # the choice picks weights only: the same parameters for all
            variables = model.init(jax.random.key(1), SRC, SRC_LEN, TGT)
        views = model.apply(variables, SRC, SRC_LEN, TGT, method="attention_views")
        chosen = views.cross[:, layer]  # [B, h, T, S]
        chosen = chosen.mean(axis=1) if head < 0 else chosen[:, head]
        np.testing.assert_allclose(views.alignment, chosen, atol=1e-6, rtol=0)
    # and the choices differ: these views are not all one picture
    assert float(jnp.abs(views.cross[:, 0] - views.cross[:, 1]).max()) > 1e-3


def test_sentence_views_grid_names_a_missing_view():
    t = Translation("b a", ["b", "a"], ["a", "b"], np.full((3, 3), 1 / 3, np.float32), 0.0)
    cross = np.full((1, 1, 3, 3), 1 / 3, np.float32)
    v = SentenceViews(["a", "b", "<EOS>"], ["b", "a", "<EOS>"], None, None, cross, cross[0, 0], t)
    w, x, y = v.grid("alignment")
    assert w.shape == (1, 1, 3, 3) and x == v.input_words and y == v.output_words
    with pytest.raises(UsageError, match="This model's encoder is an RNN.*encoder_self"):
        v.grid("encoder_self")


# ----------------------------------------------------------------- a run: Translator, plots
TINY_TRANSFORMER = {
    "model.encoder": "transformer",
    "model.decoder": "transformer",
    "model.hidden": 16,
    "model.heads": 2,
    "model.ff_dim": 16,
    "model.encoder_layers": 2,
    "model.decoder_layers": 2,
    "data.synthetic_sizes": (64, 16, 16),
    "train.num_train_steps": 2,
    "train.checkpoint_every": 2,
    "train.eval_every": 2,
    "train.log_every": 2,
    "train.progress_bar": False,
}


@pytest.fixture(scope="module")
def transformer_run(tmp_path_factory, synthetic_config):
    """A 2-step Transformer/Transformer synthetic run (attention, not quality)."""
    from jaxattn.training.loop import train_and_evaluate

    workdir = str(tmp_path_factory.mktemp("views") / "run")
    train_and_evaluate(synthetic_config(TINY_TRANSFORMER), workdir)
    return workdir


@pytest.mark.slow
def test_translator_views_and_grid_plot(transformer_run, tmp_path):
    tr = Translator.from_workdir(transformer_run)
    sentence = "3 7 1 5"
    inputs, outputs, weights = tr.attention(sentence, max_len=6)  # unchanged
    v = tr.attention_views(sentence, max_len=6)
    assert (v.input_words, v.output_words) == (inputs, outputs)
    n, s = len(outputs), len(inputs)
    assert v.encoder_self.shape == (2, 2, s, s)
    assert v.decoder_self.shape == (2, 2, n, n)
    assert v.cross.shape == (2, 2, n, s) and v.alignment.shape == (n, s)
    # the greedy search's per-step weights of its own output
    np.testing.assert_allclose(v.alignment, weights, atol=1e-5, rtol=0)
    np.testing.assert_allclose(v.alignment, v.cross[-1].mean(0), atol=1e-6, rtol=0)
    for view in VIEWS:
        w, x, y = v.grid(view)
        assert w.ndim == 4 and w.shape[2:] == (len(y), len(x))
    with pytest.raises(UsageError, match="view must be one of"):
        v.grid("self")
    path = plots.attention_layers(*v.grid("cross"), str(tmp_path / "grid.png"), title="cross")
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def _translate(*args):
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "translate.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )


@pytest.mark.slow
def test_translate_script_attention_view(transformer_run, tmp_path):
    png = tmp_path / "att.png"
    p = _translate(f"--workdir={tmp_path / 'none'}", f"--attention_png={png}",
                   "--attention_view=heads", "1 2")  # fmt: skip
    errors = [line for line in p.stderr.splitlines() if line.startswith("error: ")]
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert errors == [
        "error: --attention_view=heads: choose one of alignment, cross, encoder_self, decoder_self."
    ]
    p = _translate(f"--workdir={transformer_run}", "--attention_view=cross", "1 2")
    assert p.returncode == 2 and "--attention_view goes with --attention_png" in p.stderr
    # the default for a Transformer decoder: the cross-attention's layer x head grid
    p = _translate(f"--workdir={transformer_run}", f"--attention_png={png}", "--max_len=6",
                   "3 7 1", "5 2")  # fmt: skip
    assert p.returncode == 0, p.stderr
    for n in (1, 2):
        assert (tmp_path / f"att-{n}.png").read_bytes()[:4] == b"\x89PNG"
    assert not png.exists()
