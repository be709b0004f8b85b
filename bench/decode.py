"""Decode speed: bare llama-cpp-python against the same model served by Parley.

Both paths use the bundled SmolLM2 GGUF with the same settings Parley uses
(n_ctx from the GGUF, the same thread count, greedy sampling) and the same
prompt rendered through Parley's own chat template. Run from the repository root:

    .venv/bin/python bench/decode.py [--tokens N] [--repeats R] [--threads T]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for tests.serverproc

import httpx  # noqa: E402
import llama_cpp  # noqa: E402

from parley.config import DEFAULT_MODEL_ID  # noqa: E402
from parley.core.generation import GenerationRequest, Sampling, Turn  # noqa: E402
from parley.engines.chat_template import ChatTemplate  # noqa: E402
from parley.engines.llamacpp import bundled_model_path  # noqa: E402
from tests.serverproc import ParleyProcess  # noqa: E402

PROMPT = "Write a long story about a lighthouse keeper."


@dataclass
class Run:
    ttft_s: float  # request (or generate call) to first token
    tokens_per_s: float  # decode rate after the first token
    output_tokens: int
    stop: str
    text: str


def median_run(runs: list[Run]) -> tuple[float, float, int]:
    return (
        statistics.median(r.ttft_s for r in runs),
        statistics.median(r.tokens_per_s for r in runs),
        int(statistics.median(r.output_tokens for r in runs)),
    )


def rate(tokens: int, seconds: float) -> float:
    return tokens / seconds if tokens > 0 and seconds > 0 else math.nan


# -- 1. bare llama-cpp-python ---------------------------------------------------------------


def _token_text(llm: llama_cpp.Llama, token: int) -> str:
    if token < 0:
        return ""
    return str(llm.detokenize([token], special=True).decode("utf-8", errors="ignore"))


def bench_bare(path: Path, request: GenerationRequest, threads: int, repeats: int) -> list[Run]:
    # Context length from the GGUF metadata, as the engine's default.
    vocab = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
    meta = vocab.metadata
    n_ctx = int(meta.get(f"{meta.get('general.architecture', 'llama')}.context_length", 0)) or 4096
    template = ChatTemplate(
        meta.get("tokenizer.chat_template"),
        _token_text(vocab, vocab.token_bos()),
        _token_text(vocab, vocab.token_eos()),
    )
    add_bos = meta.get("tokenizer.ggml.add_bos_token", "false") == "true"
    prompt = vocab.tokenize(template.render(request).encode(), add_bos=add_bos, special=True)
    vocab.close()
    llm = llama_cpp.Llama(
        str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, verbose=False
    )
    print(f"bare: n_ctx={n_ctx} prompt={len(prompt)} tokens", flush=True)
    model_vocab = llm._model.vocab
    runs = []
    try:
        for _ in range(repeats):
            # Each run evaluates the whole prompt. Parley's engine keeps a finished
            # sequence's KV and reuses it for the same prompt, so its TTFT after the
            # first run is lower than this; decode rates are unaffected.
            llm.reset()  # type: ignore[no-untyped-call]
            tokens: list[int] = []
            start = time.perf_counter()
            first = start
            # Greedy, as Parley samples at temperature 0 (engines/llamacpp/sampling.py);
            # with temp 0 llama-cpp-python samples greedily and the others have no effect.
            generate = llm.generate(
                prompt, temp=0.0, top_k=0, top_p=1.0, min_p=0.05, repeat_penalty=1.0
            )
            for token in generate:
                if not tokens:
                    first = time.perf_counter()
                tokens.append(token)
                if len(tokens) >= request.max_tokens:
                    break
            end = time.perf_counter()
            # Text up to the first end-of-generation token: what Parley should send.
            shown = []
            for token in tokens:
                if llama_cpp.llama_vocab_is_eog(model_vocab, token):
                    break
                shown.append(token)
            runs.append(
                Run(
                    ttft_s=first - start,
                    tokens_per_s=rate(len(tokens) - 1, end - first),
                    output_tokens=len(tokens),
                    stop="max_tokens (end-of-turn ignored)",
                    text=llm.detokenize(shown).decode("utf-8", errors="replace"),
                )
            )
    finally:
        llm.close()
    return runs


# -- 2. through Parley's HTTP API ---------------------------------------------------------


def parley_config(threads: int) -> str:
    return (
        f'[[models]]\nid = "{DEFAULT_MODEL_ID}"\nengine = "llamacpp"\n'
        f"slots = 1\nthreads = {threads}\n"
    )


def stream_once(http: httpx.Client, body: dict[str, object]) -> Run:
    first = last = end = math.nan
    output_tokens = 0
    stop = "?"
    text: list[str] = []
    start = time.perf_counter()
    with http.stream("POST", "/v1/messages", json=body) as response:
        if response.status_code != 200:
            response.read()
            raise RuntimeError(f"HTTP {response.status_code}: {response.text}")
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            now = time.perf_counter()
            event = json.loads(line[5:])
            kind = event.get("type")
            if kind == "content_block_delta" and event["delta"].get("type") == "text_delta":
                if math.isnan(first):
                    first = now
                last = now
                text.append(event["delta"]["text"])
            elif kind == "message_delta":
                end = now
                output_tokens = event["usage"]["output_tokens"]
                stop = event["delta"]["stop_reason"]
            elif kind == "error":
                raise RuntimeError(f"stream error: {event}")
    # The decode of the last token ends at the last text_delta, except when the reply ends
    # with the end-of-turn token: that token (counted in output_tokens) sends no text, so
    # its decode ends when message_delta arrives.
    stop_time = end if stop == "end_turn" else last
    return Run(
        ttft_s=first - start,
        tokens_per_s=rate(output_tokens - 1, stop_time - first),
        output_tokens=output_tokens,
        stop=stop,
        text="".join(text),
    )


def bench_parley(threads: int, tokens: int, repeats: int) -> list[Run]:
    body: dict[str, object] = {
        "model": DEFAULT_MODEL_ID,
        "max_tokens": tokens,
        "temperature": 0,
        "stream": True,
        "messages": [{"role": "user", "content": PROMPT}],
    }
    with tempfile.TemporaryDirectory(prefix="parley-bench-") as data_dir:
        server = ParleyProcess(Path(data_dir), config=parley_config(threads))
        server.start()
        try:
            print(f"parley: serving on {server.base_url} (slots=1)", flush=True)
            headers = {"x-api-key": server.api_key, "anthropic-version": "2023-06-01"}
            with httpx.Client(base_url=server.base_url, headers=headers, timeout=600) as http:
                return [stream_once(http, body) for _ in range(repeats)]
        finally:
            server.stop()


# -- 3. report ----------------------------------------------------------------------------


def print_runs(name: str, runs: list[Run]) -> None:
    for i, r in enumerate(runs, 1):
        print(
            f"  {name} run {i}: ttft {r.ttft_s * 1000:8.1f} ms  {r.tokens_per_s:7.1f} tok/s  "
            f"{r.output_tokens:4d} tokens  stop={r.stop}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128, help="tokens to decode (default 128)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per path (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads (default 1)")
    args = parser.parse_args()
    if args.tokens < 2 or args.repeats < 1 or args.threads < 1:
        parser.error("need --tokens >= 2, --repeats >= 1, --threads >= 1")

    path = bundled_model_path()
    load = os.getloadavg()
    print(f"model: {path.name}  llama-cpp-python {llama_cpp.__version__}")
    cpus = os.cpu_count()
    print(f"machine: {platform.machine()}, {cpus} CPUs, python {platform.python_version()}")
    print(f"load average at start (1/5/15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"tokens={args.tokens} repeats={args.repeats} threads={args.threads}")
    print(f"prompt: {PROMPT!r} (temperature 0)")
    print(flush=True)

    request = GenerationRequest(
        model=DEFAULT_MODEL_ID,
        system=None,
        turns=(Turn.of("user", PROMPT),),
        max_tokens=args.tokens,
        sampling=Sampling(temperature=0.0),
    )
    bare = bench_bare(path, request, args.threads, args.repeats)
    print_runs("bare", bare)
    parley = bench_parley(args.threads, args.tokens, args.repeats)
    print_runs("parley", parley)

    b_ttft, b_rate, b_tokens = median_run(bare)
    p_ttft, p_rate, p_tokens = median_run(parley)
    print()
    print(f"{'path':<8} {'TTFT ms':>10} {'decode tok/s':>13} {'output tokens':>14}")
    print(f"{'bare':<8} {b_ttft * 1000:>10.1f} {b_rate:>13.1f} {b_tokens:>14d}")
    print(f"{'parley':<8} {p_ttft * 1000:>10.1f} {p_rate:>13.1f} {p_tokens:>14d}")
    print("(medians over the repeats)")
    print()
    print(f"parley/bare decode tok/s: {p_rate / b_rate:.3f}")
    print(f"parley added TTFT: {(p_ttft - b_ttft) * 1000:+.1f} ms")
    same = all(p.text == bare[0].text[: len(p.text)] for p in parley)
    print(f"greedy text identical (parley is a prefix of bare): {'yes' if same else 'NO'}")
    end_load = os.getloadavg()
    print(f"load average at end: {end_load[0]:.2f} {end_load[1]:.2f} {end_load[2]:.2f}")


if __name__ == "__main__":
    main()
