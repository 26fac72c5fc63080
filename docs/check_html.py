"""Checks the built tutorial pages: each holds its figures and no error output.

    python docs/check_html.py docs/_build/html

For every notebook under docs/tutorials/ the page tutorials/<name>.html must exist, contain at
least MIN_IMAGES[name] <img> tags whose PNG data is non-empty and valid (an image file next to
the page or a data: URI), and contain no error output (myst-nb's "traceback" output class, a
Python traceback, or a stderr cell with an exception). Exits 1 with one line per problem.
"""

from __future__ import annotations

import base64
import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TUTORIALS = Path(__file__).resolve().parent / "tutorials"
# Figures each tutorial draws (a floor, so a lost plot fails the check).
MIN_IMAGES = {
    "attention_pooling_classification": 2,  # training curves + attention heatmap
    "seq2seq_translation": 5,  # loss curve + 4 attention heatmaps
    "attention_from_scratch": 6,
    "jaxattn_in_your_code": 1,
    "reproduce_experiments": 3,
    "transformer": 5,  # causal mask, positional encoding, losses, 2 cross-attention grids
}
ERROR_MARKERS = (
    re.compile(r'class="[^"]*\btraceback\b'),
    re.compile(r"Traceback \(most recent call last\)"),
    re.compile(r'class="[^"]*\boutput stderr\b[^"]*"[^>]*>.*?(Error|Exception)\b', re.S),
)


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs).get("src") or "")


def png_bytes(src: str, page: Path) -> bytes:
    """The bytes an <img src> points at (data: URI or a file relative to the page)."""
    if src.startswith("data:"):
        header, _, payload = src.partition(",")
        return base64.b64decode(payload) if ";base64" in header else unquote(payload).encode()
    path = (page.parent / unquote(src.split("#")[0].split("?")[0])).resolve()
    return path.read_bytes() if path.is_file() else b""


def check_page(name: str, page: Path) -> list[str]:
    """Problems of one tutorial page (an empty list when it passes)."""
    if not page.is_file():
        return [f"{name}: {page} is missing"]
    html = page.read_text(encoding="utf-8")
    parser = _Images()
    parser.feed(html)
    pngs = [s for s in parser.sources if png_bytes(s, page).startswith(PNG_MAGIC)]
    problems = []
    minimum = MIN_IMAGES.get(name, 1)
    if len(pngs) < minimum:
        problems.append(
            f"{name}: {len(pngs)} <img> with PNG data, expected at least {minimum} "
            f"(all <img> src: {parser.sources})"
        )
    for marker in ERROR_MARKERS:
        match = marker.search(html)
        if match:
            problems.append(f"{name}: error output in the page: {match.group(0)[:120]!r}")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    html_root = Path(argv[1])
    names = sorted(p.stem for p in TUTORIALS.glob("*.md"))
    problems = []
    for name in names:
        page = html_root / "tutorials" / f"{name}.html"
        found = check_page(name, page)
        problems += found
        if not found:
            print(f"ok  {name}")
    for p in problems:
        print(f"FAIL {p}")
    return 1 if problems or not names else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
