"""The embedded engine: GGUF models run by llama.cpp through llama-cpp-python.

This package is the only home of `llama_cpp` (the import-linter contract in
pyproject.toml). `engine` is the Engine the registry builds; the rest is its
machinery: a request's prompt and cache breakpoints (`prompt`), one generation's
jobs and events (`run`), the batch loop (`loop`, with `context`, `batch`,
`sampling`, `sequence`, `jobs`), the prompt cache (`cache`), the model and its
vocabulary (`model`) and the GBNF grammars for tool calls and output formats
(`grammar`).
"""

from parley.engines.llamacpp.engine import LlamaCppEngine, bundled_model_path

__all__ = ["LlamaCppEngine", "bundled_model_path"]
