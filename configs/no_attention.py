"""The tutorial's DecoderRNN (no attention), otherwise as configs/base.py: the comparison the
tutorial draws between attention and none."""

import os
import runpy

_base = runpy.run_path(os.path.join(os.path.dirname(__file__), "base.py"))


def get_config():
    config = _base["get_config"]()
    config.model.decoder = "plain"
    return config
