"""A GGUF model loaded through llama.cpp's C API, and the facts its vocabulary gives.

The vocabulary calls used here (tokenize, token pieces) only read tables built
at load time, so the event loop may tokenize while the engine thread decodes.
"""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path

import llama_cpp

_BACKEND_READY = False


def _quiet_llama_logs() -> None:
    # llama-cpp-python forwards llama.cpp's log lines to stderr unless its logger is
    # set above INFO; Llama(verbose=False) does the same.
    logger = logging.getLogger("llama-cpp-python")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.ERROR)


class LlamaModel:
    """Weights and vocabulary, shared by every sequence of the batch loop."""

    def __init__(self, path: Path) -> None:
        global _BACKEND_READY
        if not path.is_file():
            raise FileNotFoundError(f"model file not found: {path}")
        _quiet_llama_logs()
        if not _BACKEND_READY:
            llama_cpp.llama_backend_init()
            _BACKEND_READY = True
        params = llama_cpp.llama_model_default_params()
        self.path = path
        self.ptr = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
        if not self.ptr:
            raise RuntimeError(f"llama.cpp could not load {path}")
        self.vocab = llama_cpp.llama_model_get_vocab(self.ptr)
        self.n_vocab: int = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.n_ctx_train: int = llama_cpp.llama_model_n_ctx_train(self.ptr)
        self.add_bos: bool = bool(llama_cpp.llama_vocab_get_add_bos(self.vocab))
        self.bos: int = llama_cpp.llama_vocab_bos(self.vocab)
        self.eos: int = llama_cpp.llama_vocab_eos(self.vocab)
        self.metadata = self._metadata()
        template = llama_cpp.llama_model_chat_template(self.ptr, None)
        self.chat_template: str | None = template.decode("utf-8") if template else None
        # Every token's piece, once: the engine thread looks one up per sampled token.
        self._pieces = [self._piece(t, special=False) for t in range(self.n_vocab)]
        self._eog = frozenset(
            t for t in range(self.n_vocab) if llama_cpp.llama_vocab_is_eog(self.vocab, t)
        )

    def close(self) -> None:
        if self.ptr:
            llama_cpp.llama_model_free(self.ptr)
            self.ptr = None

    @property
    def bos_text(self) -> str:
        return self.token_text(self.bos)

    @property
    def eos_text(self) -> str:
        return self.token_text(self.eos)

    def token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self._piece(token, special=True).decode("utf-8", errors="ignore")

    def is_eog(self, token: int) -> bool:
        return token in self._eog

    def piece(self, token: int) -> bytes:
        """The bytes a sampled token adds to the reply (special tokens add none)."""
        return self._pieces[token]

    def tokenize(self, text: str | bytes, *, add_bos: bool, special: bool) -> list[int]:
        data = text.encode("utf-8") if isinstance(text, str) else text
        capacity = len(data) + 2
        while True:
            buf = (llama_cpp.llama_token * capacity)()
            n = llama_cpp.llama_tokenize(
                self.vocab, data, len(data), buf, capacity, add_bos, special
            )
            if n >= 0:
                return list(buf[:n])
            capacity = -n

    def detokenize(self, tokens: list[int], *, special: bool = False) -> bytes:
        arr = (llama_cpp.llama_token * len(tokens))(*tokens)
        size = 8 * len(tokens) + 16
        while True:
            buf = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_detokenize(self.vocab, arr, len(tokens), buf, size, False, special)
            if n >= 0:
                return buf.raw[:n]
            size = -n

    def _piece(self, token: int, *, special: bool) -> bytes:
        size = 32
        while True:
            buf = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, size, 0, special)
            if n >= 0:
                return buf.raw[:n]
            size = -n

    def _metadata(self) -> dict[str, str]:
        found: dict[str, str] = {}
        buf = ctypes.create_string_buffer(1 << 16)
        for i in range(llama_cpp.llama_model_meta_count(self.ptr)):
            n = llama_cpp.llama_model_meta_key_by_index(self.ptr, i, buf, len(buf))
            if n < 0:
                continue
            key = buf.value.decode("utf-8", errors="replace")
            n = llama_cpp.llama_model_meta_val_str_by_index(self.ptr, i, buf, len(buf))
            if n < 0 or n >= len(buf):
                continue  # too long to matter here (token tables)
            found[key] = buf.value.decode("utf-8", errors="replace")
        return found
