"""``from lamina.text.all import *``: everything for text, and everything of `lamina.basics`.

That is: the Learner, callbacks, losses, metrics (``accuracy``, ``Perplexity`` ...), optimizers,
``untar_data``/``URLs``, ``get_text_files``, ``load_learner``, ``np``/``pd``/``torch``/``nn``/``F``/``Path``/
``partial`` (from `lamina.basics`); the data block API (blocks, splitters, labellers); tokenization (rules, special
tokens, `Tokenizer`, `SpacyTokenizer`), `Numericalize`, `TextBlock`, `TextDataLoaders`, the text loaders; the
AWD-LSTM models and their configs and splitters; ``language_model_learner``/``text_classifier_learner`` and
their callbacks; ``SubwordTokenizer`` (SentencePiece pieces, needs the ``sentencepiece`` package).

Not provided: fastai's typed text tensors (``TensorText``, ``LMTensorText``), since batches are plain tensors whose
meaning is in the loaders' ``kinds``; the QRNN and Transformer architectures.

Example:
    >>> from lamina.text.all import *
    >>> dls = TextDataLoaders.from_folder(untar_data(URLs.IMDB), valid='test')
    >>> learn = text_classifier_learner(dls, AWD_LSTM, drop_mult=0.5, metrics=accuracy)
    >>> learn.fine_tune(4, 1e-2)
    >>> learn.predict("I really liked that movie!")
"""

from ..basics import *  # noqa: F403  (the basics surface's __all__)
from ..basics import __all__ as _basics_all
from ..data.block import (Category, CategoryBlock, Categorize, DataBlock, Datasets, MultiCategoryBlock,
                          MultiCategorize, RegressionBlock, TransformBlock)
from ..data.splitters import (ColReader, ColSplitter, EndSplitter, FileSplitter, FuncSplitter, GrandparentSplitter,
                              IndexSplitter, ItemGetter, RandomSplitter, RandomSubsetSplitter, TrainTestSplitter,
                              parent_label)
from ..models.awd_lstm import (AWD_LSTM, EmbeddingDropout, RNNDropout, WeightDropout, awd_lstm_clas_config,
                               awd_lstm_clas_split, awd_lstm_lm_config, awd_lstm_lm_split, dropout_mask)
from ..models.bodies import PretrainedWeightsError
from ..models.text import (LinearDecoder, PoolingLinearClassifier, SentenceEncoder, SequentialRNN,
                           get_language_model, get_text_classifier, masked_concat_pool)
from .callbacks import ModelResetter, RNNCallback, RNNRegularizer, rnn_cbs
from .core import (BOS, EOS, FLD, PAD, TK_MAJ, TK_REP, TK_UP, TK_WREP, UNK, BaseTokenizer, SpacyTokenizer,
                   TokenizeWithRules, WordTokenizer, decode_spec_tokens, fix_html, lowercase,
                   replace_all_caps, replace_maj, replace_rep, replace_space, replace_wrep, rm_useless_spaces,
                   spec_add_spaces, tokenize1)
from .corpus import Tokens
from .data import TextBlock, TextDataLoaders
from .learner import LMLearner, TextLearner, language_model_learner, text_classifier_learner
from .loaders import LMDataLoader, SortedDL, pad_batch
from .pretrained import match_embeds, read_vocab
from .synth import synth_review_folder, synth_reviews
from .subword import SentencePieceTokenizer, SubwordTokenizer
from .tokenizer import Tokenizer
from .vocab import Numericalize, make_vocab

__all__ = [
    *_basics_all,
    # data block API
    "TransformBlock", "CategoryBlock", "MultiCategoryBlock", "RegressionBlock", "Category", "Categorize",
    "MultiCategorize", "DataBlock", "Datasets", "ColReader", "ColSplitter", "EndSplitter", "FileSplitter",
    "FuncSplitter", "GrandparentSplitter", "IndexSplitter", "ItemGetter", "RandomSplitter", "RandomSubsetSplitter",
    "TrainTestSplitter", "parent_label",
    # tokenization and numericalization
    "UNK", "PAD", "BOS", "EOS", "FLD", "TK_REP", "TK_WREP", "TK_UP", "TK_MAJ", "spec_add_spaces",
    "rm_useless_spaces", "replace_rep", "replace_wrep", "fix_html", "replace_all_caps", "replace_maj", "lowercase",
    "replace_space", "BaseTokenizer", "SpacyTokenizer", "WordTokenizer", "TokenizeWithRules", "tokenize1",
    "decode_spec_tokens", "Tokenizer", "Tokens", "SubwordTokenizer", "SentencePieceTokenizer", "Numericalize",
    "make_vocab",
    # data
    "TextBlock", "TextDataLoaders", "LMDataLoader", "SortedDL", "pad_batch", "synth_reviews", "synth_review_folder",
    # models
    "AWD_LSTM", "dropout_mask", "RNNDropout", "WeightDropout", "EmbeddingDropout", "awd_lstm_lm_config",
    "awd_lstm_clas_config", "awd_lstm_lm_split", "awd_lstm_clas_split", "LinearDecoder", "SequentialRNN",
    "SentenceEncoder", "PoolingLinearClassifier", "masked_concat_pool", "get_language_model", "get_text_classifier",
    # learners
    "TextLearner", "LMLearner", "language_model_learner", "text_classifier_learner", "ModelResetter",
    "RNNCallback", "RNNRegularizer", "rnn_cbs", "match_embeds", "read_vocab", "PretrainedWeightsError",
]
