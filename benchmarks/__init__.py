"""Benchmarks of jaxattn against the PyTorch tutorial (`benchmarks.torch_tutorial`), run from the
repository root:

    python -m benchmarks.run --mode all --out results.json     # train + decode speed
    python -m benchmarks.run --mode quality --epochs 10         # BLEU against wall time
    python -m benchmarks.data_pipeline --path ../shared/data/eng-fra/eng-fra.txt

common.py: timing, interleaving, JSON and the models of both sides; train.py, decode.py and
quality.py: one mode each; run.py: the command line. See docs/benchmarks.md for the figures.
"""
