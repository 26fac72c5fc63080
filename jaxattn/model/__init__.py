"""The model core: recurrent layers, the attention family, encoders, decoders and `Seq2Seq`.

Registries by name (`rnn.CELLS`, `attention.make_attention`, `encoders.ENCODERS`,
`decoders.DECODERS`) construct their members from a model config; `seq2seq.build_model` joins
them. Nothing here reads files or data.
"""
