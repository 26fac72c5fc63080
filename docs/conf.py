"""Sphinx configuration of the jaxattn documentation.

Build (warnings are errors; the tutorials are executed):

    pip install -e ".[docs]" && sphinx-build -W -b html docs docs/_build/html
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)
# The notebooks' kernels import benchmarks/ (the PyTorch reference) from the repository too.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))

project = "jaxattn"
author = "jaxattn contributors"
copyright = "2026, jaxattn contributors"  # noqa: A001

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

# MyST markdown notebooks (jupytext format) are executed at build time; any error fails it.
nb_execution_mode = "force"
nb_execution_timeout = 300  # seconds per cell
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True
nb_render_markdown_format = "myst"  # Markdown outputs (tables) rendered as MyST
myst_enable_extensions = ["colon_fence", "dollarmath", "amsmath"]
myst_heading_anchors = 3

exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints", "README.md"]

# API reference: Google-style docstrings, members in source order, no import-time side effects.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_default_options = {
    "members": True,
    # Flax's own Module attributes and setup() docstring are not jaxattn's API.
    "exclude-members": "setup, parent, name, param_dtype, dtype, scope",
}
autodoc_inherit_docstrings = False
autodoc_mock_imports: list[str] = []

html_theme = "sphinx_book_theme"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_title = "jaxattn"
html_theme_options = {
    "show_toc_level": 2,
    "home_page_in_toc": True,
}
