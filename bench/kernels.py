"""CPU cost of llama.cpp's kernels in the batch loop's context, across builds.

    .venv/bin/python bench/kernels.py --also .venv-default/bin/python [--rounds 4]

On a shared machine wall-clock figures swing with the load, so this measures
the CPU time of the decoding thread instead, with one compute thread (no
barrier spinning), best of `--rounds` interleaved runs per interpreter. It
decodes, through `LlamaContext` (8 KV streams, 256-token steps, as the loop
sets it up): a 512- and a 1,536-token prompt in 256-token chunks; then 40 steps
of one token for 1 and for 8 sequences holding 200 tokens each. The prompt
figures are seconds, the step figures milliseconds per `llama_decode`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))


def worker() -> dict[str, object]:
    from parley.engines.llamacpp import bundled_model_path
    from parley.engines.llamacpp.context import LlamaContext
    from parley.engines.llamacpp.model import LlamaModel

    model = LlamaModel(bundled_model_path())
    ctx = LlamaContext(model, sequences=8, context_per_sequence=2048, threads=1, step_tokens=256)
    text = "the harbour keeper lit the lantern at night " * 300
    tokens = model.tokenize(text, add_bos=False, special=False)[:1536]

    def decode() -> float:
        started = time.thread_time()
        if ctx.decode() != 0:
            raise RuntimeError("llama_decode failed")
        return time.thread_time() - started

    result: dict[str, object] = {"build": "LLAMAFILE=OFF"}
    import llama_cpp

    if b"LLAMAFILE = 1" in llama_cpp.llama_print_system_info():
        result["build"] = "default (LLAMAFILE on)"
    for n in (512, 1536):
        ctx.clear_all()
        seconds = 0.0
        for i in range(0, n, 256):
            ctx.batch.clear()
            ctx.batch.add(0, tokens[i : i + 256], i, logits=i + 256 == n)
            seconds += decode()
        result[f"prompt_{n}"] = seconds
    for n in (1, 8):
        ctx.clear_all()
        for seq in range(n):
            ctx.batch.clear()
            ctx.batch.add(seq, tokens[:200], 0, logits=False)
            decode()
        steps = []
        for step in range(40):
            ctx.batch.clear()
            for seq in range(n):
                ctx.batch.add(seq, [tokens[200 + step]], 200 + step, logits=True)
            steps.append(decode())
        result[f"step_{n}"] = statistics.median(steps) * 1000
    ctx.close()
    model.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--also", action="append", default=[], help="another interpreter")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker()))
        return
    pythons = [sys.executable, *args.also]
    runs: dict[str, list[dict[str, float | str]]] = {p: [] for p in pythons}
    for _ in range(args.rounds):
        for python in pythons:
            out = subprocess.run(
                [python, __file__, "--worker"], check=True, capture_output=True, text=True
            ).stdout
            runs[python].append(json.loads(out.strip().splitlines()[-1]))
    rows = [
        ("512-token prompt, CPU s", "prompt_512"),
        ("1,536-token prompt, CPU s", "prompt_1536"),
        ("1-sequence step, CPU ms", "step_1"),
        ("8-sequence step, CPU ms", "step_8"),
    ]
    best = [{k: min(float(r[k]) for r in runs[p]) for _, k in rows} for p in pythons]
    builds = [str(runs[p][0]["build"]) for p in pythons]
    print(f"best of {args.rounds} rounds, one thread")
    print(
        f"{'':28}" + "".join(f"{b:>24}" for b in builds) + ("  ratio" if len(pythons) > 1 else "")
    )
    for label, key in rows:
        line = f"{label:28}" + "".join(f"{b[key]:>24.2f}" for b in best)
        if len(pythons) > 1:
            line += f"{best[0][key] / best[1][key]:>7.2f}"
        print(line)


if __name__ == "__main__":
    main()
