"""Per-sequence sampling: a llama.cpp sampler chain and, optionally, a grammar.

The chain is the one Parley has always used: `[greedy]` at temperature 0,
else `[top_k, top_p, min_p(0.05), temp, dist(seed)]`.

A grammar is applied the way llama-server does it (common/sampling.cpp): the
token is sampled without the grammar and then checked alone, which costs one
grammar step; only when the grammar rejects it is the whole vocabulary masked
and the chain sampled again. For greedy sampling this picks the same token as
masking first. The grammar sampler stays outside the chain so that each is
applied and fed tokens exactly once per step.
"""

from __future__ import annotations

import ctypes
import math
import secrets

import llama_cpp
import numpy as np
import numpy.typing as npt

from parley.engines.llamacpp.jobs import SamplingParams

# Not an API knob: a small min-p floor keeps a 135M model from sampling the far
# tail at temperature 1.0 (the API default).
MIN_P = 0.05

_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)], align=True)


class GrammarError(ValueError):
    """The GBNF text does not parse, or it left no token to choose."""


class SequenceSampler:
    def __init__(
        self, vocab: object, n_vocab: int, params: SamplingParams, grammar: str | None
    ) -> None:
        self._n_vocab = n_vocab
        self._grammar = None
        if grammar is not None:
            self._grammar = llama_cpp.llama_sampler_init_grammar(
                vocab, grammar.encode("utf-8"), b"root"
            )
            if not self._grammar:
                raise GrammarError("the grammar does not parse")
        self._chain = llama_cpp.llama_sampler_chain_init(
            llama_cpp.llama_sampler_chain_default_params()
        )
        add = llama_cpp.llama_sampler_chain_add
        if params.greedy:
            add(self._chain, llama_cpp.llama_sampler_init_greedy())
        else:
            seed = params.seed if params.seed is not None else secrets.randbits(32)
            add(self._chain, llama_cpp.llama_sampler_init_top_k(params.top_k or 0))
            top_p = 1.0 if params.top_p is None else params.top_p
            add(self._chain, llama_cpp.llama_sampler_init_top_p(top_p, 1))
            add(self._chain, llama_cpp.llama_sampler_init_min_p(MIN_P, 1))
            add(self._chain, llama_cpp.llama_sampler_init_temp(params.temperature))
            add(self._chain, llama_cpp.llama_sampler_init_dist(seed & 0xFFFFFFFF))
        # Scratch for the grammar's checks, allocated once per sequence.
        self._one = np.zeros(1, dtype=_TOKEN_DATA)
        self._all: npt.NDArray[np.void] | None = None

    def sample(self, ctx: object, index: int) -> int:
        """Sample from the logits of batch position `index` and feed the token to
        the grammar (an end-of-generation token too, which only a finished
        grammar lets through)."""
        token = int(llama_cpp.llama_sampler_sample(self._chain, ctx, index))
        if self._grammar is None:
            return token
        if not self._allowed(token):
            token = self._resample(ctx, index)
        llama_cpp.llama_sampler_accept(self._grammar, token)
        return token

    def close(self) -> None:
        if self._grammar:
            llama_cpp.llama_sampler_free(self._grammar)
            self._grammar = None
        if self._chain:
            llama_cpp.llama_sampler_free(self._chain)
            self._chain = None

    def _allowed(self, token: int) -> bool:
        one = self._one
        one["id"] = token
        one["logit"] = 1.0
        one["p"] = 0.0
        array = llama_cpp.llama_token_data_array(
            data=one.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data)),
            size=1,
            selected=-1,
            sorted=False,
        )
        llama_cpp.llama_sampler_apply(self._grammar, ctypes.byref(array))
        return math.isfinite(float(one["logit"][0]))

    def _resample(self, ctx: object, index: int) -> int:
        if self._all is None:
            self._all = np.zeros(self._n_vocab, dtype=_TOKEN_DATA)
            self._all["id"] = np.arange(self._n_vocab, dtype=np.int32)
        cur = self._all
        logits = llama_cpp.llama_get_logits_ith(ctx, index)
        cur["id"] = np.arange(self._n_vocab, dtype=np.int32)
        cur["logit"] = np.ctypeslib.as_array(logits, shape=(self._n_vocab,))
        cur["p"] = 0.0
        array = llama_cpp.llama_token_data_array(
            data=cur.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data)),
            size=self._n_vocab,
            selected=-1,
            sorted=False,
        )
        llama_cpp.llama_sampler_apply(self._grammar, ctypes.byref(array))
        llama_cpp.llama_sampler_apply(self._chain, ctypes.byref(array))
        if not 0 <= array.selected < array.size:
            raise GrammarError("the grammar allows no token here")
        # Samplers may point `data` elsewhere (a sorted copy), so read through it.
        chosen = array.data[array.selected]
        if not math.isfinite(chosen.logit):
            # Accepting a token the grammar rejects aborts the process.
            raise GrammarError("the grammar allows no token here")
        return int(chosen.id)
