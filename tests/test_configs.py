"""Every shipped config file loads, passes the whole validation, survives the config.json
round trip that evaluate/translate rely on, and builds its model, so a config that would fail
at `scripts/train.py`'s first check (or on reload) is caught here."""

from __future__ import annotations

import glob
import os
import runpy

import pytest
from shared import ROOT

from jaxattn import config as config_lib
from jaxattn.model.seq2seq import build_model
from jaxattn.rundir import run as run_lib

FILES = sorted(glob.glob(os.path.join(ROOT, "configs", "*.py")))


def test_the_configs_folder_is_found():
    assert len(FILES) >= 10 and any(f.endswith("base.py") for f in FILES)


@pytest.mark.parametrize("path", FILES, ids=os.path.basename)
def test_config_file_validates_and_builds(path, tmp_path):
    config = runpy.run_path(path)["get_config"]()
    config_lib.validate(config)
    run_lib.write_config(str(tmp_path), config)  # config.json, as a training writes it
    reloaded = run_lib.load_config(str(tmp_path))
    config_lib.validate(reloaded)
    assert reloaded.to_dict() == config.to_dict()
    build_model(reloaded.model, 50, 60, bos_id=1)  # raises on an unknown cell/attention/...
