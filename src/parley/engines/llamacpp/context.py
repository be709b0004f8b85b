"""One llama.cpp context with a KV stream per sequence, and the calls the loop makes on it."""

from __future__ import annotations

import ctypes
import logging

import llama_cpp
import numpy as np
import numpy.typing as npt

from parley.engines.llamacpp.batch import TokenBatch
from parley.engines.llamacpp.model import LlamaModel

log = logging.getLogger(__name__)

_U8P = ctypes.POINTER(ctypes.c_uint8)


class LlamaContext:
    def __init__(
        self,
        model: LlamaModel,
        *,
        sequences: int,
        context_per_sequence: int,
        threads: int,
        step_tokens: int,
    ) -> None:
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = context_per_sequence * sequences
        params.n_batch = params.n_ubatch = step_tokens
        params.n_seq_max = sequences
        params.n_threads = params.n_threads_batch = threads
        # Stream mode: a KV stream per sequence keeps each sequence's cells in position
        # order whatever else runs; flash attention's kernel depends on the batch shape.
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        params.kv_unified = False
        params.no_perf = True
        self.n_vocab = model.n_vocab
        self.ptr = llama_cpp.llama_init_from_model(model.ptr, params)
        if not self.ptr:
            raise RuntimeError("llama.cpp could not create a context")
        self._mem = llama_cpp.llama_get_memory(self.ptr)
        # n_ctx / n_seq_max, rounded up to a multiple of 256 by llama.cpp.
        self.context_per_sequence = int(llama_cpp.llama_n_ctx_seq(self.ptr))
        self.batch = TokenBatch(step_tokens)

    def close(self) -> None:
        if self.ptr:
            llama_cpp.llama_free(self.ptr)
            self.ptr = None

    def decode(self) -> int:
        """0: done; 1: no KV room, nothing changed; else the cache may be half-written."""
        return int(llama_cpp.llama_decode(self.ptr, self.batch.struct))

    def logits(self, index: int) -> npt.NDArray[np.float32]:
        row = llama_cpp.llama_get_logits_ith(self.ptr, index)
        return np.ctypeslib.as_array(row, shape=(self.n_vocab,)).copy()

    def clear(self, seq: int) -> None:
        llama_cpp.llama_memory_seq_rm(self._mem, seq, -1, -1)

    def clear_all(self) -> None:
        llama_cpp.llama_memory_clear(self._mem, True)

    def snapshot(self, seq: int, limit: int) -> npt.NDArray[np.uint8] | None:
        """The sequence's KV state, unless it takes more than `limit` bytes."""
        size = llama_cpp.llama_state_seq_get_size(self.ptr, seq)
        if size > limit:
            return None
        state = np.empty(size, dtype=np.uint8)
        written = llama_cpp.llama_state_seq_get_data(
            self.ptr, state.ctypes.data_as(_U8P), size, seq
        )
        if written != size:
            log.warning("snapshot of sequence %d: %d of %d bytes", seq, written, size)
            return None
        return state

    def restore(self, seq: int, state: npt.NDArray[np.uint8], keep: int, held: int) -> int:
        """Load a snapshot holding `held` tokens into the empty `seq` and keep its
        first `keep`; returns the tokens kept (0 if llama.cpp refused the state)."""
        ptr = state.ctypes.data_as(_U8P)
        if not llama_cpp.llama_state_seq_set_data(self.ptr, ptr, state.nbytes, seq):
            log.warning("restoring a cached prefix into sequence %d failed", seq)
            self.clear(seq)
            return 0
        if keep < held:
            llama_cpp.llama_memory_seq_rm(self._mem, seq, keep, -1)
        return keep
