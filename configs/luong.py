"""Luong et al. (2015) on eng-fra: 2-layer LSTM, general (bilinear) global attention on the new
decoder state, attentional vector tanh(W_c [c; h]) with input feeding, dropout 0.2."""

import os
import runpy

_base = runpy.run_path(os.path.join(os.path.dirname(__file__), "base.py"))


def get_config():
    config = _base["get_config"]()
    m = config.model
    m.cell, m.encoder_layers, m.decoder_layers = "lstm", 2, 2
    m.hidden = m.embed_dim = 256
    m.decoder, m.attention, m.input_feeding = "luong", "general", True
    m.dropout, m.rnn_dropout = 0.2, 0.2
    t = config.train
    t.batch_size, t.num_epochs, t.grad_clip = 64, 30, 5.0
    config.data.pad_to = 0  # pad each batch to its own longest sentence
    return config
