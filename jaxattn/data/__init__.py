"""Data: the tutorial's eng-fra corpus and any parallel corpus, through TFDS and grain.

    data = jaxattn.data.build(config.data)          # a validated jaxattn.config section
    it = data.train_iterator(32, seed=0)            # {'src', 'src_len', 'tgt', 'tgt_len'}
    data.eval_batches('validation', 128); data.references('validation')

The data config is checked where it enters (`jaxattn.config.validate`: training, loading a
run), not here. Recipes (fields of `jaxattn.config.default_data_config()`, with all of them):

- The tutorial mirror: name='tutorial', path='../shared/data/eng-fra/eng-fra.txt' (or ''
  to download data.zip), tutorial_ids=True, pad_to=10, split_fractions=(1, 0, 0).
  The default instead holds out 5% + 5% (keyed by normalized text) and uses PAD/UNK ids.
- Multi30k de->en: name='parallel', path='../shared/data/multi30k', src_lang='de',
  tgt_lang='en', splits.validation='val', splits.test='test_2016_flickr'. Tokens are words
  and punctuation with a joiner mark (tokenizer='word'), so detokenized output is plain cased
  text that sacreBLEU scores against `references` like any system's output; set
  tokenizer='sentencepiece' (needs the sentencepiece package) for subwords instead:
  sp_model_type='bpe' or 'unigram', sp_vocab_size, sp_byte_fallback, sp_joint (one model
  for both sides), trained on the training split and saved in the workdir.
- Your own corpus: name='parallel', path=a folder of {prefix}.{src_lang}/{prefix}.{tgt_lang}
  (or {prefix}.tsv) files per split, or path=one TSV file split by split_fractions.
- A TFDS catalog dataset (network needed once to prepare it): name='tfds',
  tfds_name='wmt14_translate/fr-en', src_lang='fr', tgt_lang='en' (the feature names),
  data_dir=a disk with room; the training split is tokenized once into ids on disk
  (data.prepared, in data.cache_dir), and vocab_sample bounds the pairs the vocabulary reads.
  It is prepared as array_record, so TensorFlow is never needed.
- Synthetic tasks, offline: name='synthetic', synthetic_task='copy' | 'reverse' | 'sort' |
  'dates'.

Modules: readers (every file format, read once for training and evaluation), text
(normalization, the tutorial's filter, tokenizers), vocab (Vocab), splits (held-out splits by
hashed text), download (the tutorial's data.zip), builders (TFDS builders; imports
tensorflow_datasets), synthetic (offline tasks), corpus (config -> text of every split;
evaluation TSV files read the same way), processing (tokenizers + vocabularies of a run),
prepared (the training split's token ids, prepared once, read a batch at a time), batching (ids,
padding, bucket widths), pipeline (build, Data, grain batching).
"""

from jaxattn.data.corpus import DATASETS, read_tsv
from jaxattn.data.pipeline import Data, build, read_data_stats
from jaxattn.data.processing import TextProcessing, load_text_processing
from jaxattn.data.synthetic import TASKS, synthetic_splits
from jaxattn.data.text import (
    ENG_PREFIXES,
    Tokenizer,
    normalize_tutorial,
    tutorial_filter,
    word_detokenize,
    word_tokenize,
)
from jaxattn.data.vocab import Vocab

__all__ = [
    "DATASETS",
    "ENG_PREFIXES",
    "TASKS",
    "Data",
    "TextProcessing",
    "Tokenizer",
    "Vocab",
    "build",
    "load_text_processing",
    "normalize_tutorial",
    "read_data_stats",
    "read_tsv",
    "synthetic_splits",
    "tutorial_filter",
    "word_detokenize",
    "word_tokenize",
]
