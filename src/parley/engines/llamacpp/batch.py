"""A `llama_batch` whose arrays are numpy buffers, reused for every step.

`llama_batch_init` allocates each token's `seq_id` array separately; here they
all point into one contiguous int32 array, so a prompt chunk is written with a
few slice assignments instead of a Python loop over tokens.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence

import llama_cpp
import numpy as np
import numpy.typing as npt


class TokenBatch:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.token = np.zeros(capacity, dtype=np.int32)
        self.pos = np.zeros(capacity, dtype=np.int32)
        self.n_seq_id = np.ones(capacity, dtype=np.int32)
        self.seq_id = np.zeros(capacity, dtype=np.int32)
        self.logits = np.zeros(capacity, dtype=np.int8)
        int32_p = ctypes.POINTER(ctypes.c_int32)
        base = self.seq_id.ctypes.data
        self._seq_ptrs = (int32_p * capacity)(
            *(ctypes.cast(base + 4 * i, int32_p) for i in range(capacity))
        )
        self.struct = llama_cpp.llama_batch(
            n_tokens=0,
            token=self.token.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token)),
            embd=None,
            pos=self.pos.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_pos)),
            n_seq_id=self.n_seq_id.ctypes.data_as(int32_p),
            seq_id=self._seq_ptrs,
            logits=self.logits.ctypes.data_as(ctypes.POINTER(ctypes.c_int8)),
        )
        self.n_tokens = 0

    def clear(self) -> None:
        self.n_tokens = 0
        self.struct.n_tokens = 0

    def add(
        self, seq: int, tokens: Sequence[int] | npt.NDArray[np.int32], pos: int, *, logits: bool
    ) -> int:
        """Append a run of one sequence's tokens at positions pos, pos+1, ...; only
        the last may ask for logits. Returns the last token's index in the batch."""
        n = len(tokens)
        start = self.n_tokens
        end = start + n
        if n == 0 or end > self.capacity:
            raise ValueError(f"batch of {self.capacity} cannot take {n} more after {start}")
        self.token[start:end] = tokens
        self.pos[start:end] = np.arange(pos, pos + n, dtype=np.int32)
        self.seq_id[start:end] = seq
        self.logits[start:end] = 0
        self.logits[end - 1] = 1 if logits else 0
        self.n_tokens = end
        self.struct.n_tokens = end
        return end - 1
