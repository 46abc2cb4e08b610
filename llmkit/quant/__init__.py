"""Quantization formats and quantized layers.

- ``llmkit.quant.ggml``: GGML block formats (F32 ... Q6_K), their byte layouts and dequantization.
"""
