"""Side by side: Parley's embedded engine against llama.cpp's llama-server, same GGUF.

Starts `parley serve` on the bundled SmolLM2 GGUF and llama-server (built by
`make peer-llama-server` from the llama.cpp that llama-cpp-python vendors, with the
same CPU flags) on the same file, then drives both with the same client over the
Claude API (`POST /v1/messages`, streamed; llama-server serves it itself). Each cell
runs round-robin over the servers, one request group at a time, for --rounds rounds;
it prints best and median per server, the ratio (> 1: Parley is faster) and the load
average. Run from the repository root:

    .venv/bin/python bench/engine.py [--rounds 3] [--cells decode,agg4,agg8,ttft,cached,agent]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for bench.peers and tests.serverproc

import httpx  # noqa: E402
import llama_cpp  # noqa: E402

from bench.peers import (  # noqa: E402
    LLAMA_SERVER,
    LlamaServerProcess,
    best,
    fmt,
    load_avg,
    machine,
    median,
    peak_rss_mib,
    rotations,
    rss_mib,
    speed_ratio,
)
from parley.config import DEFAULT_MODEL_ID  # noqa: E402
from parley.engines.llamacpp import bundled_model_path  # noqa: E402
from tests.serverproc import ParleyProcess  # noqa: E402

ALIAS = "smollm2"
CELLS = ("decode", "agg4", "agg8", "ttft", "cached", "agent", "mem8k")
DEFAULT_CELLS = "decode,agg4,agg8,ttft,cached,agent"

# One llama.cpp context per model with `slots` sequences decoded together, on `threads`
# threads in all: the same as llama-server's `-t 2 --parallel 8`. Each sequence holds
# 6,144 tokens (the agent probe's conversation grows to about 4,000). Override with
# --parley-option KEY=VALUE.
PARLEY_MODEL_OPTIONS = {"slots": "8", "threads": "2", "context_per_sequence": "6144"}
# For the memory cell: 8 sequences of 8k tokens at once.
PARLEY_MEM_OPTIONS = {"slots": "8", "threads": "2", "context_per_sequence": "8192"}


def parley_config(options: dict[str, str]) -> str:
    """The config file of the Parley under test: one model, the bundled GGUF. Values are
    TOML literals (`threads = 2`, `mode = "stream"`), as given."""
    lines = [f'id = "{DEFAULT_MODEL_ID}"', f'aliases = ["{ALIAS}"]', 'engine = "llamacpp"']
    lines += [f"{key} = {value}" for key, value in options.items()]
    return "[[models]]\n" + "\n".join(lines) + "\n"


def llama_server_args(args: argparse.Namespace, ctx: int) -> list[str]:
    # --jinja: the GGUF's own chat template (as Parley renders it) and tool calls.
    # A unified KV cache lets one sequence use the whole -c (else each of --parallel
    # gets -c / --parallel tokens: 2,048 of 16,384, too few for the agent probe); it is
    # llama-server's own default when --parallel is not given.
    out = ["--jinja", "-t", str(args.llama_threads), "--parallel", str(args.llama_parallel)]
    out += ["-c", str(ctx), "--kv-unified" if args.llama_kv_unified else "--no-kv-unified"]
    return out + list(args.llama_arg)


# -- prompts ------------------------------------------------------------------------------------

_WORDS = (
    "the of and to in a is that for it as was with be by on not he this are or his from at "
    "which but have an they you were her she there been one all we their has would when if "
    "so no will more can out up who its into only than other some time could them these two "
    "may then do first any my now such like over our even most made after also did many "
    "before must through back years where much your way well down should because each just "
    "those people how too little state good very make world still own see men work long get "
    "here between both life being under never day same another know while last might us "
    "great old year off come since against go came right used take three harbor lamp signal "
    "river engine market garden letter window winter bridge station ledger copper valley"
)
WORDS = _WORDS.split()
TOPICS = (
    "a lighthouse keeper",
    "a clockmaker in a mountain village",
    "a river pilot",
    "a baker who bakes at midnight",
    "a cartographer lost at sea",
    "an astronomer and her old telescope",
    "a beekeeper and a storm",
    "a librarian who finds a map",
    "a blacksmith's apprentice",
    "a tram driver in winter",
    "a glassblower's last commission",
    "a ferryman and a stranger",
)


class Tokenizer:
    """The GGUF's own tokenizer (both servers run the same file), to size prompts."""

    def __init__(self, path: Path) -> None:
        self._llm = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)

    def count(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode(), add_bos=False, special=False))


def filler(tokenizer: Tokenizer, tokens: int, seed: str) -> str:
    """About `tokens` tokens of prose-like text that starts with `seed`, so texts of
    different seeds share no prefix a server could reuse."""
    rng = random.Random(seed)
    parts, total = [f"Document {seed}."], 0
    total = tokenizer.count(parts[0])
    while total < tokens:
        words = rng.choices(WORDS, k=rng.randint(8, 16))
        sentence = " " + " ".join(words).capitalize() + "."
        if rng.random() < 0.15:
            sentence += "\n"
        parts.append(sentence)
        total += tokenizer.count(sentence)
    return "".join(parts)


AGENT_TOOLS: list[dict[str, Any]] = [
    {
        "name": "read_file",
        "description": "Read a file of the repository and return its contents with line numbers.",
        "input_schema": {
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "Path from the repository root."},
                "offset": {"type": "integer", "description": "First line to read (1-based)."},
                "limit": {"type": "integer", "description": "How many lines to read."},
            },
            "required": ["path"],
        },
    },
    {
        "name": "list_directory",
        "description": "List the files and folders in a directory of the repository.",
        "input_schema": {
            "type": "object",
            "properties": {"path": {"type": "string", "description": "Directory path."}},
            "required": ["path"],
        },
    },
    {
        "name": "run_command",
        "description": "Run a shell command in the repository and return its output.",
        "input_schema": {
            "type": "object",
            "properties": {
                "command": {"type": "string", "description": "The command line."},
                "timeout": {"type": "integer", "description": "Seconds before it is stopped."},
            },
            "required": ["command"],
        },
    },
    {
        "name": "write_file",
        "description": "Write a file of the repository, replacing what it held.",
        "input_schema": {
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "Path from the repository root."},
                "content": {"type": "string", "description": "The whole new content."},
            },
            "required": ["path", "content"],
        },
    },
]
AGENT_TASK = "Find where the configuration file is parsed and explain it in two sentences."
EPHEMERAL = {"type": "ephemeral"}


@dataclass
class Prompts:
    """Every text the cells send, made once so both servers get the same ones per round."""

    story: list[str]  # decode cells: one topic each (different per round and request)
    uncached: list[str]  # ~--prompt-tokens, one per round
    prefix: list[str]  # ~--prefix-tokens system prompts, one per round
    agent_system: list[str]  # ~--agent-tokens with the tools, one per round
    agent_results: list[list[str]]  # tool results per round and turn
    sizes: dict[str, int] = field(default_factory=dict)


def make_prompts(args: argparse.Namespace, tokenizer: Tokenizer, nonce: str) -> Prompts:
    rounds = args.rounds
    story = [
        f"Write a long story about {TOPICS[i % len(TOPICS)]} (tale {nonce}-{i})."
        for i in range(rounds * 8 + rounds)
    ]
    uncached = [
        filler(tokenizer, args.prompt_tokens, f"{nonce}-u{r}")
        + "\n\nSummarize the document above in one sentence."
        for r in range(rounds)
    ]
    prefix = [
        "You answer questions about the reference document below.\n\n"
        + filler(tokenizer, args.prefix_tokens, f"{nonce}-p{r}")
        for r in range(rounds)
    ]
    tools_tokens = tokenizer.count(json.dumps(AGENT_TOOLS))
    agent_system = [
        "You are a coding agent. Use the tools to inspect the repository, one call at a "
        "time, then answer.\n\n"
        + filler(tokenizer, max(args.agent_tokens - tools_tokens, 100), f"{nonce}-a{r}")
        for r in range(rounds)
    ]
    agent_results = [
        [filler(tokenizer, 120, f"{nonce}-r{r}-{t}") for t in range(args.agent_turns)]
        for r in range(rounds)
    ]
    sizes = {
        "uncached prompt": tokenizer.count(uncached[0]),
        "cached system prompt": tokenizer.count(prefix[0]),
        "agent system prompt": tokenizer.count(agent_system[0]),
        "agent tools (as JSON)": tools_tokens,
    }
    return Prompts(story, uncached, prefix, agent_system, agent_results, sizes)


# -- the client ---------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    base_url: str
    headers: dict[str, str]
    pid: int
    idle_rss_mib: float = math.nan


@dataclass
class Reply:
    sent: float
    first: float = math.nan  # first content_block_delta of any kind
    last: float = math.nan  # last content_block_delta
    end: float = math.nan  # message_delta
    stop: str = "?"
    output_tokens: int = 0
    start_usage: dict[str, Any] = field(default_factory=dict)  # message_start's
    final_usage: dict[str, Any] = field(default_factory=dict)  # message_delta's

    @property
    def ttft_ms(self) -> float:
        first = self.first if not math.isnan(self.first) else self.end
        return (first - self.sent) * 1000

    @property
    def decode_tok_s(self) -> float:
        # The end-of-turn token sends no text: its decode ends with message_delta.
        stop = self.end if self.stop == "end_turn" else self.last
        seconds = stop - self.first
        return (self.output_tokens - 1) / seconds if self.output_tokens > 1 and seconds > 0 else 0

    def usage(self, key: str) -> float:
        """A usage field, from message_delta when it has it, else from message_start."""
        for usage in (self.final_usage, self.start_usage):
            if usage.get(key) is not None:
                return float(usage[key])
        return math.nan


def new_client(timeout: float) -> httpx.AsyncClient:
    """A connection per request: llama-server (cpp-httplib) closes a kept-alive connection
    after a few requests or seconds, and a reused one then fails at random; a loopback
    connect costs far less than anything measured here, alike for both servers."""
    return httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_keepalive_connections=0))


async def stream(client: httpx.AsyncClient, target: Target, body: dict[str, Any]) -> Reply:
    body = {"model": ALIAS, "stream": True, **body}
    reply = Reply(sent=time.perf_counter())
    url = f"{target.base_url}/v1/messages"
    async with client.stream("POST", url, json=body, headers=target.headers) as response:
        if response.status_code != 200:
            await response.aread()
            raise RuntimeError(f"{target.name}: HTTP {response.status_code}: {response.text}")
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            now = time.perf_counter()
            event = json.loads(line[5:])
            kind = event.get("type")
            if kind == "content_block_delta":
                if math.isnan(reply.first):
                    reply.first = now
                reply.last = now
            elif kind == "message_start":
                reply.start_usage = event["message"].get("usage") or {}
            elif kind == "message_delta":
                reply.end = now
                reply.final_usage = event.get("usage") or {}
                reply.output_tokens = int(reply.final_usage.get("output_tokens") or 0)
                reply.stop = str(event.get("delta", {}).get("stop_reason"))
            elif kind == "error":
                raise RuntimeError(f"{target.name}: stream error: {event}")
    return reply


# -- the cells ----------------------------------------------------------------------------------


@dataclass
class Metric:
    key: str
    label: str
    higher_is_better: bool | None  # None: a count, shown but not compared
    digits: int = 1


Figures = dict[str, float]
CellRun = Callable[[httpx.AsyncClient, Target, int], Awaitable[Figures]]


@dataclass
class Cell:
    name: str
    title: str
    metrics: list[Metric]
    run: CellRun


def build_cells(args: argparse.Namespace, prompts: Prompts) -> dict[str, Cell]:
    sampling: dict[str, Any] = {}
    if args.ttft_temperature is not None:
        sampling["temperature"] = args.ttft_temperature

    async def decode(client: httpx.AsyncClient, target: Target, r: int) -> Figures:
        body = {"max_tokens": args.tokens, "temperature": 0}
        reply = await stream(client, target, {**body, "messages": [user(prompts.story[r * 9 + 8])]})
        return {"tok_s": reply.decode_tok_s, "ttft": reply.ttft_ms, "out": reply.output_tokens}

    def aggregate(n: int) -> CellRun:
        async def run(client: httpx.AsyncClient, target: Target, r: int) -> Figures:
            body = {"max_tokens": args.tokens, "temperature": 0}
            started = time.perf_counter()
            replies = await asyncio.gather(
                *(
                    stream(client, target, {**body, "messages": [user(prompts.story[r * 9 + i])]})
                    for i in range(n)
                )
            )
            wall = max(x.end for x in replies) - started
            tokens = sum(x.output_tokens for x in replies)
            return {"agg": tokens / wall, "out": tokens / n, "wall": wall}

        return run

    async def ttft(client: httpx.AsyncClient, target: Target, r: int) -> Figures:
        body = {"max_tokens": args.probe_tokens, **sampling}
        reply = await stream(client, target, {**body, "messages": [user(prompts.uncached[r])]})
        return {
            "ttft": reply.ttft_ms,
            "input": reply.usage("input_tokens"),
            "read": reply.usage("cache_read_input_tokens"),
        }

    async def cached(client: httpx.AsyncClient, target: Target, r: int) -> Figures:
        system = [{"type": "text", "text": prompts.prefix[r], "cache_control": EPHEMERAL}]
        body = {"max_tokens": args.probe_tokens, "system": system, **sampling}
        cold = await stream(
            client, target, {**body, "messages": [user("Which words appear most often?")]}
        )
        warm = await stream(
            client, target, {**body, "messages": [user("Name three words of the document.")]}
        )
        return {
            "cold": cold.ttft_ms,
            "warm": warm.ttft_ms,
            "speedup": cold.ttft_ms / warm.ttft_ms,
            "read_cold": cold.usage("cache_read_input_tokens"),
            "read_warm": warm.usage("cache_read_input_tokens"),
            "read_warm_start": float(warm.start_usage.get("cache_read_input_tokens") or 0),
            "write_cold": cold.usage("cache_creation_input_tokens"),
            "input_warm": warm.usage("input_tokens"),
        }

    async def agent(client: httpx.AsyncClient, target: Target, r: int) -> Figures:
        system = [{"type": "text", "text": prompts.agent_system[r], "cache_control": EPHEMERAL}]
        body = {"max_tokens": args.probe_tokens, "system": system, "tools": AGENT_TOOLS}
        messages: list[dict[str, Any]] = [user(AGENT_TASK)]
        figures: Figures = {}
        for turn in range(1, args.agent_turns + 1):
            # Breakpoints as an agent sets them: the system prompt and the newest turn.
            marked = json.loads(json.dumps(messages))
            marked[-1]["content"][-1]["cache_control"] = EPHEMERAL
            reply = await stream(client, target, {**body, **sampling, "messages": marked})
            figures[f"t{turn}"] = reply.ttft_ms
            figures[f"read{turn}"] = reply.usage("cache_read_input_tokens")
            figures[f"in{turn}"] = reply.usage("input_tokens")
            # The loop goes on the same way whatever the model answered: a scripted call
            # and its result, so both servers read the same conversation.
            call_id = f"toolu_{r}_{turn}"
            messages.append(
                {
                    "role": "assistant",
                    "content": [
                        {
                            "type": "tool_use",
                            "id": call_id,
                            "name": "read_file",
                            "input": {"path": f"src/app/module_{turn}.py"},
                        }
                    ],
                }
            )
            result = prompts.agent_results[r][turn - 1]
            messages.append(
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": call_id, "content": result}],
                }
            )
        later = [figures[f"t{t}"] for t in range(2, args.agent_turns + 1)]
        figures["later"] = figures["t1"] / median(later) if later else math.nan
        return figures

    turns = range(1, args.agent_turns + 1)
    return {
        "decode": Cell(
            "decode",
            f"single stream, max_tokens {args.tokens}, temperature 0",
            [
                Metric("tok_s", "decode tokens/s", True),
                Metric("ttft", "time to first token ms", False, 0),
                Metric("out", "output tokens", None, 0),
            ],
            decode,
        ),
        **{
            f"agg{n}": Cell(
                f"agg{n}",
                f"{n} concurrent streams, max_tokens {args.tokens}, temperature 0",
                [
                    Metric("agg", f"aggregate tokens/s at {n}", True),
                    Metric("wall", "wall time s", False, 2),
                    Metric("out", "output tokens per stream", None, 0),
                ],
                aggregate(n),
            )
            for n in (4, 8)
        },
        "ttft": Cell(
            "ttft",
            f"uncached prompt of ~{args.prompt_tokens} tokens",
            [
                Metric("ttft", "time to first token ms", False, 0),
                Metric("input", "input_tokens reported", None, 0),
                Metric("read", "cache_read_input_tokens", None, 0),
            ],
            ttft,
        ),
        "cached": Cell(
            "cached",
            f"two requests sharing a ~{args.prefix_tokens}-token cache_control system prompt",
            [
                Metric("cold", "TTFT first request ms", False, 0),
                Metric("warm", "TTFT later request ms", False, 0),
                Metric("speedup", "first / later TTFT", True, 2),
                Metric("write_cold", "first: cache_creation_input_tokens", None, 0),
                Metric("read_cold", "first: cache_read_input_tokens", None, 0),
                Metric("read_warm_start", "later: cache_read (message_start)", None, 0),
                Metric("read_warm", "later: cache_read (final)", None, 0),
                Metric("input_warm", "later: input_tokens", None, 0),
            ],
            cached,
        ),
        "agent": Cell(
            "agent",
            f"{args.agent_turns}-turn tool loop, ~{args.agent_tokens}-token system prompt with "
            f"{len(AGENT_TOOLS)} tools",
            [Metric(f"t{t}", f"turn {t} TTFT ms", False, 0) for t in turns]
            + [Metric("later", "turn 1 / median later TTFT", True, 2)]
            + [Metric(f"read{t}", f"turn {t} cache_read_input_tokens", None, 0) for t in turns]
            + [Metric("in1", "turn 1 input_tokens", None, 0)],
            agent,
        ),
    }


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": text}]}


# -- running and reporting ----------------------------------------------------------------------


@dataclass
class Row:
    cell: str
    metric: Metric
    values: dict[str, list[float]]
    load: str


def print_cell(cell: Cell, names: list[str], results: dict[str, list[Figures]], load: str) -> None:
    ours, theirs = names
    width = max(len(m.label) for m in cell.metrics)
    head = (
        f"  {'':{width}}  {ours + ' best':>14} {'median':>9}  {theirs + ' best':>18} "
        f"{'median':>9}  {'ratio best':>10} {'median':>7}"
    )
    print(head)
    for m in cell.metrics:
        a = [f[m.key] for f in results[ours]]
        b = [f[m.key] for f in results[theirs]]
        up = m.higher_is_better is not False
        line = (
            f"  {m.label:{width}}  {fmt(best(a, up), m.digits):>14} {fmt(median(a), m.digits):>9}"
            f"  {fmt(best(b, up), m.digits):>18} {fmt(median(b), m.digits):>9}"
        )
        if m.higher_is_better is not None:
            rb = speed_ratio(best(a, up), best(b, up), up)
            rm = speed_ratio(median(a), median(b), up)
            line += f"  {fmt(rb, 2):>10} {fmt(rm, 2):>7}"
        print(line)
    print(f"  load average during the cell: {load}", flush=True)


async def run_cells(
    cells: list[Cell], targets: list[Target], rounds: int, request_timeout: float
) -> list[Row]:
    rows: list[Row] = []
    names = [t.name for t in targets]
    async with new_client(request_timeout) as client:
        for target in targets:  # warm-up: first-request costs stay out of the cells
            body = {"max_tokens": 4, "messages": [user("Hello!")]}
            await stream(client, target, body)
            target.idle_rss_mib = rss_mib(target.pid)
        for cell in cells:
            print(f"\n[{cell.name}] {cell.title}")
            start_load = load_avg()
            results: dict[str, list[Figures]] = {n: [] for n in names}
            for r, order in enumerate(rotations(targets, rounds)):
                for target in order:
                    try:
                        figures = await cell.run(client, target, r)
                    except (RuntimeError, httpx.HTTPError) as exc:  # a failed run is a gap
                        print(f"  round {r + 1} {target.name:>12}: FAILED {exc!r:.300}")
                        figures = {m.key: math.nan for m in cell.metrics}
                        results[target.name].append(figures)
                        continue
                    results[target.name].append(figures)
                    shown = " ".join(
                        f"{m.key}={fmt(figures[m.key], m.digits)}" for m in cell.metrics[:3]
                    )
                    print(f"  round {r + 1} {target.name:>12}: {shown}  load {load_avg()}")
            load = f"{start_load} -> {load_avg()}"
            print_cell(cell, names, results, load)
            rows += [
                Row(cell.name, m, {n: [f[m.key] for f in results[n]] for n in names}, load)
                for m in cell.metrics
            ]
    return rows


def summary(rows: list[Row], names: list[str]) -> None:
    ours, theirs = names
    print(
        "\nSummary: best of rounds | median; ratio > 1 means Parley is faster (rates: "
        "Parley/llama-server, times: llama-server/Parley); counts are max | median"
    )
    head = f"{'cell':7} {'metric':34} {ours:>17} {theirs:>17} {'ratio':>11}  load (1/5/15 min)"
    print(head)
    print("-" * (len(head) + 16))
    for row in rows:
        m = row.metric
        a, b = row.values[ours], row.values[theirs]
        up = m.higher_is_better is not False
        pair_a = f"{fmt(best(a, up), m.digits)} | {fmt(median(a), m.digits)}"
        pair_b = f"{fmt(best(b, up), m.digits)} | {fmt(median(b), m.digits)}"
        ratio = "(count)"
        if m.higher_is_better is not None:
            ratio = (
                f"{fmt(speed_ratio(best(a, up), best(b, up), up), 2)} | "
                f"{fmt(speed_ratio(median(a), median(b), up), 2)}"
            )
        print(f"{row.cell:7} {m.label:34} {pair_a:>17} {pair_b:>17} {ratio:>11}  {row.load}")


def start_servers(
    args: argparse.Namespace, tmp: Path, parley_options: dict[str, str], ctx: int, tag: str
) -> tuple[ParleyProcess, LlamaServerProcess]:
    parley = ParleyProcess(tmp / f"parley-{tag}", config=parley_config(parley_options))
    llama = LlamaServerProcess(
        args.llama_server,
        bundled_model_path(),
        tmp / f"llama-server-{tag}.log",
        llama_server_args(args, ctx),
        alias=ALIAS,
    )
    started = time.perf_counter()
    parley.start(timeout=300)
    print(f"parley: {parley.base_url} pid {parley.proc.pid if parley.proc else '?'}", end="")
    print(f"  [[models]] {parley_options}  ({time.perf_counter() - started:.1f} s to start)")
    started = time.perf_counter()
    try:
        llama.start()
    except BaseException:
        parley.stop()
        raise
    print(f"llama-server: {llama.base_url} pid {llama.proc.pid if llama.proc else '?'}", end="")
    print(f"  {' '.join(llama.args)}  ({time.perf_counter() - started:.1f} s to start)")
    return parley, llama


def targets_of(parley: ParleyProcess, llama: LlamaServerProcess) -> list[Target]:
    assert parley.proc is not None
    assert llama.proc is not None
    version = {"anthropic-version": "2023-06-01"}
    return [
        Target(
            "parley", parley.base_url, {"x-api-key": parley.api_key, **version}, parley.proc.pid
        ),
        Target(
            "llama-server", llama.base_url, {"x-api-key": llama.api_key, **version}, llama.proc.pid
        ),
    ]


def print_memory(targets: list[Target], label: str) -> None:
    print(f"\nMemory ({label}): resident MiB after the warm-up request, and peak (VmHWM)")
    for t in targets:
        print(f"  {t.name:>12}: idle {t.idle_rss_mib:8.0f}  peak {peak_rss_mib(t.pid):8.0f}")


async def memory_cell(
    args: argparse.Namespace, tokenizer: Tokenizer, nonce: str, tmp: Path
) -> None:
    """8 concurrent sequences of ~--mem-tokens each, on servers sized for 8 x 8k tokens."""
    ctx = args.llama_parallel * args.mem_ctx
    print(f"\n[mem8k] {args.llama_parallel} concurrent prompts of ~{args.mem_tokens} tokens")
    options = parse_options(args.mem_parley_option, mem=True)
    parley, llama = start_servers(args, tmp, options, ctx, "mem")
    try:
        targets = targets_of(parley, llama)
        texts = [
            filler(tokenizer, args.mem_tokens, f"{nonce}-m{i}") + "\n\nSummarize it."
            for i in range(args.llama_parallel)
        ]
        async with new_client(args.timeout) as client:
            for target in targets:
                await stream(client, target, {"max_tokens": 4, "messages": [user("Hello!")]})
                target.idle_rss_mib = rss_mib(target.pid)
            for target in targets:  # one at a time; each gets the same prompts
                started = time.perf_counter()
                await asyncio.gather(
                    *(
                        stream(client, target, {"max_tokens": 4, "messages": [user(text)]})
                        for text in texts
                    )
                )
                wall = time.perf_counter() - started
                print(f"  {target.name:>12}: {wall:.1f} s for all prompts  load {load_avg()}")
        print_memory(targets, f"{args.llama_parallel} sequences of up to {args.mem_ctx} tokens")
    finally:
        parley.stop()
        llama.stop()


def parse_options(pairs: list[str], *, mem: bool) -> dict[str, str]:
    options = dict(PARLEY_MEM_OPTIONS if mem else PARLEY_MODEL_OPTIONS)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--parley-option wants KEY=VALUE, not {pair!r}")
        if value == "":
            options.pop(key.strip(), None)  # KEY= drops a default
        else:
            options[key.strip()] = value.strip()
    return options


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="rounds per cell (default 3)")
    p.add_argument("--cells", default=DEFAULT_CELLS, help=f"of {','.join(CELLS)}")
    p.add_argument("--tokens", type=int, default=128, help="max_tokens, decode cells (128)")
    p.add_argument("--probe-tokens", type=int, default=8, help="max_tokens, TTFT cells (8)")
    p.add_argument("--prompt-tokens", type=int, default=500, help="uncached prompt (500)")
    p.add_argument("--prefix-tokens", type=int, default=1500, help="cached prefix (1500)")
    p.add_argument("--agent-tokens", type=int, default=3000, help="agent system+tools (3000)")
    p.add_argument("--agent-turns", type=int, default=5, help="agent turns (5)")
    p.add_argument(
        "--ttft-temperature",
        type=float,
        default=None,
        help="temperature of the TTFT cells (default: none sent, the API's 1.0)",
    )
    p.add_argument(
        "--parley-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"set a key of Parley's [[models]] table (default {PARLEY_MODEL_OPTIONS}); "
        "KEY= drops one",
    )
    p.add_argument("--llama-server", type=Path, default=LLAMA_SERVER, help="the binary")
    p.add_argument("--llama-threads", type=int, default=2, help="llama-server -t (2)")
    p.add_argument("--llama-parallel", type=int, default=8, help="llama-server --parallel (8)")
    p.add_argument("--llama-ctx", type=int, default=16384, help="llama-server -c (16384)")
    p.add_argument(
        "--llama-kv-unified",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="llama-server --kv-unified (default on)",
    )
    p.add_argument(
        "--llama-arg", action="append", default=[], help="one more llama-server argument"
    )
    p.add_argument("--mem-tokens", type=int, default=7800, help="mem8k: prompt tokens (7800)")
    p.add_argument("--mem-ctx", type=int, default=8192, help="mem8k: tokens per sequence")
    p.add_argument(
        "--mem-parley-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"mem8k: Parley's [[models]] keys (default {PARLEY_MEM_OPTIONS})",
    )
    p.add_argument("--timeout", type=float, default=900, help="per request, seconds")
    p.add_argument("--log-dir", type=Path, help="keep the servers' logs here (default: dropped)")
    args = p.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    chosen = [c.strip() for c in args.cells.split(",") if c.strip()]
    unknown = set(chosen) - set(CELLS)
    if unknown or args.rounds < 1:
        p.error(f"unknown cells {sorted(unknown)}" if unknown else "--rounds must be >= 1")

    model = bundled_model_path()
    print(f"model: {model.name}  llama-cpp-python {llama_cpp.__version__}")
    print(f"machine: {machine()}")
    print(f"load average at start (1/5/15 min): {load_avg()}")
    print(f"rounds={args.rounds} cells={','.join(chosen)}")
    tokenizer = Tokenizer(model)
    nonce = f"{random.randrange(16**6):06x}"
    prompts = make_prompts(args, tokenizer, nonce)
    print(
        "prompt sizes (tokens, by the GGUF's tokenizer): "
        + ", ".join(f"{k} {v}" for k, v in prompts.sizes.items())
    )
    all_cells = build_cells(args, prompts)
    cells = [all_cells[c] for c in chosen if c in all_cells]

    with tempfile.TemporaryDirectory(prefix="parley-engine-") as tmp_name:
        # Parley prints a key only into an empty data dir: a fresh folder every run.
        tmp = (
            Path(args.log_dir) / time.strftime("%Y%m%d-%H%M%S") if args.log_dir else Path(tmp_name)
        )
        tmp.mkdir(parents=True, exist_ok=True)
        print(f"server logs: {tmp}")
        if cells:
            options = parse_options(args.parley_option, mem=False)
            parley, llama = start_servers(args, tmp, options, args.llama_ctx, "main")
            try:
                targets = targets_of(parley, llama)
                rows = asyncio.run(run_cells(cells, targets, args.rounds, args.timeout))
                summary(rows, [t.name for t in targets])
                print_memory(targets, "over the cells above")
            finally:
                parley.stop()
                llama.stop()
        if "mem8k" in chosen:
            asyncio.run(memory_cell(args, tokenizer, nonce, tmp))
    print(f"\nload average at end: {load_avg()}")


if __name__ == "__main__":
    main()
