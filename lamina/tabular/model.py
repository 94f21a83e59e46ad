"""The path of fastai.tabular.model: `TabularModel`, ``tabular_config``, ``get_emb_sz`` and ``emb_sz_rule``.

lamina's homes are `lamina.models.tabular`, `lamina.models.embedding_sizes` and `lamina.models.layers`; nothing is
defined here.
"""

from ..models.embedding_sizes import get_emb_sz
from ..models.layers import emb_sz_rule
from ..models.tabular import TabularModel, tabular_config

__all__ = ["TabularModel", "tabular_config", "get_emb_sz", "emb_sz_rule"]
