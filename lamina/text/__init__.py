"""Text: tokenization, numericalization, language-model and classifier loaders, AWD-LSTM learners (ULMFiT).

Users import the star surface, ``from lamina.text.all import *``; the submodules are ``core`` (rules, special
tokens, word tokenizers), ``corpus`` (compact tokens, parallel tokenization, the disk cache), ``subword``
(`SubwordTokenizer`), ``tokenizer`` (`Tokenizer`), ``vocab`` (`Numericalize`), ``loaders`` (`LMDataLoader`,
`SortedDL`), ``data`` (`TextBlock`, `TextDataLoaders`), ``learner`` (the learners), ``callbacks``, ``pretrained``
(WikiText-103 weights) and ``synth`` (tiny synthetic reviews for tests and examples); this package re-exports
nothing.
"""
