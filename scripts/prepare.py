"""Prepares a corpus once, before training: python scripts/prepare.py --config configs/multi30k.py

Does the data part of a training start and nothing else: reads the configured corpus (the
TFDS prepare of its text, once), builds or reads the vocabularies (and SentencePiece models)
and tokenizes the training split into data.cache_dir. Every later `scripts/train.py` with the
same data config (a fresh run, a resume, another host that shares the cache folder) then
starts without reading or tokenizing the training text. Takes the same --config and
--config.data.* overrides as train.py; rerunning it on a prepared corpus only checks it (a
corpus file that changed is named and prepared again). For a WMT-size corpus: prepare on one
host, then start training on every host.
"""

import time

from absl import app, flags

from jaxattn.tools import cli

_CONFIG = cli.define_config_flag("config", "Config file (configs/*.py), as for train.py.")
flags.declare_key_flag("config")


def run(argv):
    cli.no_arguments(argv)
    from jaxattn import config as config_lib
    from jaxattn import data as data_lib
    from jaxattn.data import prepared

    config = _CONFIG.value
    config_lib.validate(config)  # what the config alone decides fails before any reading
    start = time.time()
    data = data_lib.build(config.data, seed=config.seed)
    s = data.stats
    print(
        f"prepared {config.data.name} in {time.time() - start:.1f} s: "
        + ", ".join(f"{k} {n:,}" for k, n in s["examples"].items())
        + f" pairs; {s['train_pairs']:,} training pairs kept ({s['train_too_long']:,} too "
        f"long); vocabularies {s['src_vocab']:,} / {s['tgt_vocab']:,}; longest sentences "
        f"{s['max_source_len']} / {s['max_target_len']} tokens; cache "
        f"{prepared.cache_root(config.data)}"
    )


if __name__ == "__main__":
    app.run(cli.main(run), flags_parser=cli.parse_flags)
