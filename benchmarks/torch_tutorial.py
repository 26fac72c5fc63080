"""An independent PyTorch implementation of the tutorial "NLP From Scratch: Translation with a
Sequence to Sequence Network and Attention" (pytorch/tutorials,
intermediate_source/seq2seq_translation_tutorial.py, the version since June 2023).

The reference side of the parity tests (tests/test_parity.py), the benchmarks (benchmarks/) and
the tutorial's weight-loading section, kept independent of jaxattn's own modules so that it can
check them. Models, the training step and greedy evaluation follow the tutorial line by line
(batch first; SOS = 0 is also the padding id, EOS = 1); the only changes are explicit
`max_length` / `device` arguments instead of globals. `LegacyAttnDecoderRNN` is the pre-2023
tutorial's decoder, batched.

Needs PyTorch (`pip install -e ".[torch]"`); `import jaxattn` does not import this module.

    encoder, decoder = EncoderRNN(n_src, 128), AttnDecoderRNN(128, n_tgt)
    losses = train(make_dataloader(src_ids, tgt_ids), encoder, decoder, n_epochs=80)
    ids, attentions = evaluate(encoder, decoder, src_ids[:8])  # greedy, [B, MAX_LENGTH]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn, optim
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

SOS_token = 0
EOS_token = 1
MAX_LENGTH = 10


class EncoderRNN(nn.Module):
    """Embedding -> Dropout -> GRU (the tutorial's encoder)."""

    def __init__(self, input_size, hidden_size, dropout_p=0.1):
        super().__init__()
        self.hidden_size = hidden_size
        self.embedding = nn.Embedding(input_size, hidden_size)
        self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True)
        self.dropout = nn.Dropout(dropout_p)

    def forward(self, input):
        embedded = self.dropout(self.embedding(input))
        output, hidden = self.gru(embedded)
        return output, hidden


class RNNEncoder(nn.Module):
    """EncoderRNN generalised: GRU or LSTM, `num_layers`, optionally bidirectional."""

    def __init__(
        self,
        input_size,
        embed_size,
        hidden_size,
        cell="gru",
        num_layers=1,
        bidirectional=False,
        dropout_p=0.1,
    ):
        super().__init__()
        self.embedding = nn.Embedding(input_size, embed_size)
        rnn = {"gru": nn.GRU, "lstm": nn.LSTM}[cell]
        self.rnn = rnn(
            embed_size,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
        )
        self.dropout = nn.Dropout(dropout_p)

    def forward(self, input):
        return self.rnn(self.dropout(self.embedding(input)))  # output, h_n (or (h_n, c_n))


def _decode(step, encoder_outputs, encoder_hidden, target_tensor, max_length):
    """The tutorial decoders' loop: SOS first, then gold (teacher forcing) or top-1 feedback."""
    batch_size = encoder_outputs.size(0)
    decoder_input = torch.empty(
        batch_size, 1, dtype=torch.long, device=encoder_outputs.device
    ).fill_(SOS_token)
    decoder_hidden = encoder_hidden
    decoder_outputs, attentions = [], []
    for i in range(max_length):
        decoder_output, decoder_hidden, attn_weights = step(decoder_input, decoder_hidden)
        decoder_outputs.append(decoder_output)
        attentions.append(attn_weights)
        if target_tensor is not None:
            decoder_input = target_tensor[:, i].unsqueeze(1)  # teacher forcing
        else:
            _, topi = decoder_output.topk(1)
            decoder_input = topi.squeeze(-1).detach()  # detach from history as input
    decoder_outputs = F.log_softmax(torch.cat(decoder_outputs, dim=1), dim=-1)
    attentions = None if attentions[0] is None else torch.cat(attentions, dim=1)
    return decoder_outputs, decoder_hidden, attentions


class DecoderRNN(nn.Module):
    """Embedding -> ReLU -> GRU -> Linear, no attention (the tutorial's simple decoder)."""

    def __init__(self, hidden_size, output_size, max_length=MAX_LENGTH):
        super().__init__()
        self.max_length = max_length
        self.embedding = nn.Embedding(output_size, hidden_size)
        self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True)
        self.out = nn.Linear(hidden_size, output_size)

    def forward(self, encoder_outputs, encoder_hidden, target_tensor=None):
        """Returns log-probs [B, T, V], final hidden [1, B, H] and None (no attention)."""
        return _decode(
            self.forward_step, encoder_outputs, encoder_hidden, target_tensor, self.max_length
        )

    def forward_step(self, input, hidden):
        output = F.relu(self.embedding(input))
        output, hidden = self.gru(output, hidden)
        return self.out(output), hidden, None


class BahdanauAttention(nn.Module):
    """scores = Va(tanh(Wa(query) + Ua(keys))); softmax over source positions; no mask."""

    def __init__(self, hidden_size):
        super().__init__()
        self.Wa = nn.Linear(hidden_size, hidden_size)
        self.Ua = nn.Linear(hidden_size, hidden_size)
        self.Va = nn.Linear(hidden_size, 1)

    def forward(self, query, keys):  # query [B, 1, H], keys [B, S, H]
        scores = self.Va(torch.tanh(self.Wa(query) + self.Ua(keys)))
        scores = scores.squeeze(2).unsqueeze(1)  # [B, 1, S]
        weights = F.softmax(scores, dim=-1)
        context = torch.bmm(weights, keys)  # [B, 1, H]
        return context, weights


class AttnDecoderRNN(nn.Module):
    """The tutorial's attention decoder: GRU over concat(embedded, context)."""

    def __init__(self, hidden_size, output_size, dropout_p=0.1, max_length=MAX_LENGTH):
        super().__init__()
        self.max_length = max_length
        self.embedding = nn.Embedding(output_size, hidden_size)
        self.attention = BahdanauAttention(hidden_size)
        self.gru = nn.GRU(2 * hidden_size, hidden_size, batch_first=True)
        self.out = nn.Linear(hidden_size, output_size)
        self.dropout = nn.Dropout(dropout_p)

    def forward(self, encoder_outputs, encoder_hidden, target_tensor=None):
        """Returns log-probs [B, T, V], final hidden [1, B, H], attentions [B, T, S]."""
        step = lambda input, hidden: self.forward_step(input, hidden, encoder_outputs)
        return _decode(step, encoder_outputs, encoder_hidden, target_tensor, self.max_length)

    def forward_step(self, input, hidden, encoder_outputs):
        embedded = self.dropout(self.embedding(input))  # [B, 1, H]
        query = hidden.permute(1, 0, 2)  # [B, 1, H]
        context, attn_weights = self.attention(query, encoder_outputs)
        input_gru = torch.cat((embedded, context), dim=2)
        output, hidden = self.gru(input_gru, hidden)
        return self.out(output), hidden, attn_weights


class LegacyAttnDecoderRNN(nn.Module):
    """The pre-June-2023 tutorial's AttnDecoderRNN, batched: attention weights come from
    Linear(2H, max_length) on concat(embedded, hidden) and weigh the encoder outputs, zero
    padded to max_length; attn_combine -> ReLU -> GRU. (The old EncoderRNN had no dropout:
    the same as EncoderRNN in eval mode.)"""

    def __init__(self, hidden_size, output_size, dropout_p=0.1, max_length=MAX_LENGTH):
        super().__init__()
        self.max_length = max_length
        self.embedding = nn.Embedding(output_size, hidden_size)
        self.attn = nn.Linear(hidden_size * 2, max_length)
        self.attn_combine = nn.Linear(hidden_size * 2, hidden_size)
        self.dropout = nn.Dropout(dropout_p)
        self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True)
        self.out = nn.Linear(hidden_size, output_size)

    def forward(self, encoder_outputs, encoder_hidden, target_tensor=None):
        pad = self.max_length - encoder_outputs.size(1)
        padded = F.pad(encoder_outputs, (0, 0, 0, pad))  # [B, max_length, H]
        step = lambda input, hidden: self.forward_step(input, hidden, padded)
        return _decode(step, encoder_outputs, encoder_hidden, target_tensor, self.max_length)

    def forward_step(self, input, hidden, encoder_outputs):
        embedded = self.dropout(self.embedding(input))[:, 0]  # [B, H]
        attn_weights = F.softmax(self.attn(torch.cat((embedded, hidden[0]), 1)), dim=1)
        attn_applied = torch.bmm(attn_weights.unsqueeze(1), encoder_outputs)  # [B, 1, H]
        output = torch.cat((embedded, attn_applied[:, 0]), 1)
        output = F.relu(self.attn_combine(output)).unsqueeze(1)
        output, hidden = self.gru(output, hidden)
        return self.out(output), hidden, attn_weights.unsqueeze(1)


def make_dataloader(input_ids, target_ids, batch_size=32):
    """The tutorial's get_dataloader, from id tensors [N, max_length]: random batches."""
    data = TensorDataset(input_ids, target_ids)
    return DataLoader(data, sampler=RandomSampler(data), batch_size=batch_size)


def make_optimizers(encoder, decoder, learning_rate=0.001):
    """The tutorial's two Adam optimizers."""
    encoder_optimizer = optim.Adam(encoder.parameters(), lr=learning_rate)
    decoder_optimizer = optim.Adam(decoder.parameters(), lr=learning_rate)
    return encoder_optimizer, decoder_optimizer


def train_step(
    input_tensor, target_tensor, encoder, decoder, encoder_optimizer, decoder_optimizer, criterion
):
    """One batch of the tutorial's train_epoch: NLLLoss over all B x T positions (padding too)."""
    encoder_optimizer.zero_grad()
    decoder_optimizer.zero_grad()
    encoder_outputs, encoder_hidden = encoder(input_tensor)
    decoder_outputs, _, _ = decoder(encoder_outputs, encoder_hidden, target_tensor)
    loss = criterion(decoder_outputs.view(-1, decoder_outputs.size(-1)), target_tensor.view(-1))
    loss.backward()
    encoder_optimizer.step()
    decoder_optimizer.step()
    return loss.item()


def train_epoch(dataloader, encoder, decoder, encoder_optimizer, decoder_optimizer, criterion):
    """The tutorial's train_epoch: mean batch loss over an iterable of (input, target) batches."""
    models = (encoder, decoder, encoder_optimizer, decoder_optimizer, criterion)
    total_loss, batches = 0.0, 0
    for input_tensor, target_tensor in dataloader:
        total_loss += train_step(input_tensor, target_tensor, *models)
        batches += 1
    return total_loss / batches


def train(dataloader, encoder, decoder, n_epochs, learning_rate=0.001):
    """The tutorial's train (without plotting): Adam, NLLLoss; returns the epoch losses."""
    encoder_optimizer, decoder_optimizer = make_optimizers(encoder, decoder, learning_rate)
    criterion = nn.NLLLoss()
    return [
        train_epoch(dataloader, encoder, decoder, encoder_optimizer, decoder_optimizer, criterion)
        for _ in range(n_epochs)
    ]


def evaluate(encoder, decoder, input_tensor):
    """Batched greedy decoding for max_length steps (no cut at EOS; see `cut_at_eos`).

    Returns decoded ids [B, max_length] and attentions [B, max_length, S] (None without).
    """
    with torch.no_grad():
        encoder_outputs, encoder_hidden = encoder(input_tensor)
        decoder_outputs, _, decoder_attn = decoder(encoder_outputs, encoder_hidden)
        _, topi = decoder_outputs.topk(1)
        return topi.squeeze(-1), decoder_attn


def cut_at_eos(ids):
    """Each row of decoded ids as a list up to and including the first EOS, as the tutorial."""
    rows = []
    for row in ids.tolist():
        rows.append(row[: row.index(EOS_token) + 1] if EOS_token in row else row)
    return rows


def batch_ids(sentences, max_length=MAX_LENGTH):
    """Id lists -> LongTensor [N, max_length]: EOS appended, zero filled (get_dataloader)."""
    out = torch.zeros(len(sentences), max_length, dtype=torch.long)
    for i, ids in enumerate(sentences):
        ids = list(ids) + [EOS_token]
        out[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out
