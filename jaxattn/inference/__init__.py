"""Inference from trained runs: `translator.Translator` (translate, score, attention, evaluate),
what a translation is (`translation`), evaluation input, unknown-word replacement and the
`jax.export` artifacts of a trained translator (`exported`)."""
