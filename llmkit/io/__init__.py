"""Checkpoints in and out: each file format turns into a ModelSpec and a state dict.

- ``llmkit.io.gguf``: GGUF files (memory-mapped reader, ``open_gguf``, ``llama_state_dict``).
"""
