"""The public API: every name `jaxattn` (and `jaxattn.model.attention`) exports resolves, the heavy
`Translator` is imported only on first use, `import jaxattn` loads no data pipeline (and
`jaxattn.data` never imports `jaxattn.config`), and every `jaxattn` name the README and the docs
use exists (code blocks and prose alike), so a rename cannot leave them stale."""

from __future__ import annotations

import ast
import glob
import importlib
import os
import re
import subprocess
import sys

import pytest
from shared import ROOT

import jaxattn
from jaxattn.model import attention

DOCS = ["README.md"] + sorted(
    os.path.relpath(p, ROOT)
    for p in glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True)
    if "_build" not in p
)
FROM_IMPORT = re.compile(r"from\s+(jaxattn(?:\.\w+)*)\s+import\s+(\([^)]*\)|[^\n#]+)")
DOTTED = re.compile(r"\bjaxattn(?:\.[A-Za-z_]\w*)+")


def resolve(dotted: str):
    """The object a dotted name names: attributes first, else a submodule not imported yet."""
    parts = dotted.split(".")
    obj = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], 1):
        obj = (
            getattr(obj, part)
            if hasattr(obj, part)
            else importlib.import_module(".".join(parts[: i + 1]))
        )
    return obj


def references(text: str) -> set[str]:
    """Dotted `jaxattn` names in a document: `from M import a, b as c` gives M.a and M.b."""
    names = set(DOTTED.findall(text))
    for module, imported in FROM_IMPORT.findall(text):
        for item in imported.strip("()").split(","):
            name = item.split(" as ")[0].strip()
            if name:
                names.add(f"{module}.{name}")
    return names


@pytest.mark.parametrize("module", [jaxattn, attention], ids=lambda m: m.__name__)
def test_all_names_resolve(module):
    assert len(set(module.__all__)) == len(module.__all__), "a name listed twice"
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing, f"{module.__name__}.__all__ names that do not resolve: {missing}"
    assert set(module.__all__) <= set(dir(module))


def test_star_import_and_search_entry_points():
    namespace: dict = {}
    exec("from jaxattn import *", namespace)
    assert set(jaxattn.__all__) <= set(namespace)
    from jaxattn import search

    for name in ("greedy_search", "beam_search", "decode", "SearchResult"):
        assert getattr(jaxattn, name) is getattr(search, name)
    from jaxattn.inference.translator import Translator

    assert jaxattn.Translator is Translator


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Translater'"):
        jaxattn.Translater  # noqa: B018
    from jaxattn.tools import plots  # a submodule still imports through `from jaxattn import`

    assert plots.__name__ == "jaxattn.tools.plots"


@pytest.mark.slow
def test_import_jaxattn_leaves_inference_unloaded():
    """`import jaxattn` must not pay for Orbax and the data pipeline (`Translator` is lazy)."""
    code = "import sys, jaxattn; print('jaxattn.inference.translator' in sys.modules)"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    ).stdout
    assert out.strip() == "False"


def test_import_jaxattn_loads_no_data_pipeline():
    """The model, search and config defaults need no data pipeline, grain, Orbax or TFDS."""
    code = (
        "import sys, jaxattn; jaxattn.default_model_config(); print(sorted({m for m in "
        "sys.modules if m.split('.')[0] in ('grain', 'orbax', 'tensorflow_datasets', "
        "'tensorflow') or m.startswith(('jaxattn.data', 'jaxattn.inference', "
        "'jaxattn.training', 'jaxattn.rundir.checkpointer'))}))"
    )
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert out.strip() == "[]"


def test_data_does_not_import_config():
    """config imports the data registries and defaults, so jaxattn.data never imports
    jaxattn.config (not even inside a function): no import cycle."""
    offenders = []
    for path in sorted(glob.glob(os.path.join(ROOT, "jaxattn", "data", "*.py"))):
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            if "jaxattn.config" in names:
                offenders.append(f"{os.path.basename(path)}:{node.lineno}")
    assert not offenders, offenders


# The fields each registered attention needs (the others have defaults).
REQUIRED = {
    "additive": dict(hidden=4),
    "bahdanau": dict(hidden=4),
    "mlp": dict(hidden=4),
    "location": dict(max_length=4),
    "local_m": dict(window=1),
    "local_p": dict(window=1),
}


@pytest.mark.parametrize("name", tuple(attention.ATTENTIONS))
def test_registry_builds_family_members(name):
    """Every registered name builds a module of `ATTENTION_TYPES`, on the shared base."""
    module = attention.make_attention(name.upper(), **REQUIRED.get(name, {}))
    assert type(module) in attention.ATTENTION_TYPES
    assert isinstance(module, attention.Attention)


@pytest.mark.parametrize("doc", DOCS)
def test_docs_use_existing_names(doc):
    with open(os.path.join(ROOT, doc), encoding="utf-8") as f:
        names = references(f.read())
    stale = []
    for name in sorted(names):
        try:
            resolve(name)
        except ModuleNotFoundError as e:
            if e.name and not e.name.startswith("jaxattn"):
                continue  # an optional dependency (e.g. torch) that is not installed
            stale.append(name)
        except AttributeError:
            stale.append(name)
    assert not stale, f"{doc} uses names jaxattn does not have: {stale}"
