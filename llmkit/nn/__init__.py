"""Building blocks and the one model class, all configured by a ModelSpec.

``norm`` (RMSNorm, LayerNorm), ``position`` (sinusoidal, T5 buckets, ALiBi, RoPE ...), ``attention``
(scaled dot-product, MHA/GQA/MQA, masks, cross-attention), ``ffn`` (MLP, GLU, MoE), ``block``
(pre- or post-norm block), ``model`` (Transformer: encoder, decoder, encoder-decoder).
"""

from llmkit.nn.model import BoundDecoder, EncoderOutput, Transformer

__all__ = ["BoundDecoder", "EncoderOutput", "Transformer"]
