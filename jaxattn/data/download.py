"""Where the tutorial's corpus comes from: a local file, zip or folder, else its data.zip,
downloaded once (checksummed) into the TFDS data directory."""

from __future__ import annotations

import os
import urllib.request

from jaxattn.data.readers import TUTORIAL_SHA256, read_bytes, sha256
from jaxattn.errors import DataError

TUTORIAL_ZIP = "jaxattn_tutorial_data.zip"  # the download, under DATA_DIR/downloads


def default_data_dir(data_dir: str = "") -> str:
    """Where TFDS keeps prepared datasets: `data_dir`, else $TFDS_DATA_DIR, else
    ~/tensorflow_datasets."""
    return os.path.expanduser(
        data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    )


def download_tutorial_zip(
    url: str, dest: str, expected_sha256: str = TUTORIAL_SHA256, timeout: float = 60.0
) -> str:
    """Downloads the tutorial's data.zip to `dest` (once) and checks eng-fra.txt's sha256."""
    if os.path.exists(dest):
        return dest
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = dest + ".part"
    with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
        f.write(r.read())
    try:
        got = sha256(read_bytes(tmp))
    except (DataError, FileNotFoundError) as e:  # damaged, cut short, or another file
        os.remove(tmp)
        raise DataError(
            f"The download from {url} is not the tutorial's data.zip ({e}). Try again, or "
            "give a copy you trust with config.data.path."
        ) from None
    if expected_sha256 and got != expected_sha256:
        os.remove(tmp)
        raise DataError(
            f"eng-fra.txt downloaded from {url} has sha256 {got}, expected {expected_sha256}. "
            "Check the download, or give a file you trust with config.data.path."
        )
    os.replace(tmp, dest)
    return dest


def tutorial_source(
    path: str, url: str, expected_sha256: str, download: bool, data_dir: str
) -> str:
    """The local file to read: `path` (a file, a zip, or a folder holding either), else the
    downloaded zip."""
    options = (
        "set config.data.path to the tutorial's eng-fra.txt, a folder holding it, or "
        f"its data.zip (from {url})"
    )
    if path:
        path = os.path.expanduser(path)
        if os.path.isdir(path):
            for name in ("eng-fra.txt", "data/eng-fra.txt", "data.zip"):
                if os.path.isfile(os.path.join(path, name)):
                    return os.path.join(path, name)
            raise FileNotFoundError(
                f"No eng-fra.txt, data/eng-fra.txt or data.zip in {path}: {options}."
            )
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"config.data.path={path} does not exist: {options}, or leave it empty to download."
            )
        return path
    dest = os.path.join(default_data_dir(data_dir), "downloads", TUTORIAL_ZIP)
    if os.path.exists(dest):
        return dest
    if not download:
        raise FileNotFoundError(
            f"The tutorial data is not here and download=False: {options}, "
            "or set config.data.download=True with network access."
        )
    try:
        return download_tutorial_zip(url, dest, expected_sha256)
    except OSError as e:  # URLError, timeouts, refused connections
        raise FileNotFoundError(
            f"Could not download the tutorial data from {url} ({e}). Either allow network "
            f"access, or {options}."
        ) from e
