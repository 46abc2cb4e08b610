"""Building blocks and the one model class, all configured by a ModelSpec.

``norm`` (RMSNorm, LayerNorm), ``position`` (RoPE), ``attention`` (scaled dot-product,
MHA/GQA/MQA), ``ffn`` (MLP, SwiGLU), ``block`` (pre-norm block), ``model`` (Transformer).
"""

from llmkit.nn.model import Transformer

__all__ = ["Transformer"]
