"""Serving throughput and latency: one at a time, whole batches, continuous batching, and continuous
batching with a fast decoding mode, each against the forward-pass ceiling measured in the same run.

    .venv/bin/python benchmarks/serving.py                         # tiny random model; 1, 4 and 16 clients
    .venv/bin/python benchmarks/serving.py --clients 1,4,16 --requests 8 --max-tokens 32 --rounds 2
    .venv/bin/python benchmarks/serving.py --preset small --clients 16 --requests 4   # a larger random model
    .venv/bin/python benchmarks/serving.py --model /tmp/lift/sft/model --fast threshold=0.9 --json out.json

Four real servers run side by side on 127.0.0.1 (subprocesses, the same model, one measured at a
time): ``one at a time`` (``batching.enabled=false``), ``whole batches`` (``batching.continuous=false``:
a batch of equal-key rows decoded start to end while new rows wait), ``continuous`` (rows join and
leave the running set at denoising-step boundaries) and ``continuous + ...`` (the same, each
request asking for a fast decoding mode, ``--fast``: by default a quarter of the steps, the
fastest exact-mode setting whose held-out pass@1 stayed inside exact decoding's 95 % interval in
``benchmarks/sampling.py --quality``; ``--fast threshold=0.9`` asks for threshold decoding). For
each client count in ``--clients``, rounds alternate over the servers (so load from other jobs
spreads over all): that many threads, each an ``openai.OpenAI`` client (made once, its connection
reused) sending ``--requests`` greedy completions one after another (``max_tokens`` = ``steps`` =
``--max-tokens``, prompts of 4-40 words). Reported per mode and client count: requests/s,
decoded tokens/s (requests x max_tokens: the work a diffusion decode does whatever the text),
p50/p99 latency, rows per forward (the server's /metrics: per whole batch, or per step of the
running set), the share of the ceiling, this process's CPU per request (the clients, on the
cores the servers use) and the server's peak RSS (psutil, every 20 ms).

The ceiling: one decoding step's model work for rows of the prompts' mean token count +
``max_tokens`` (the layers over every token, the LM head at the completion columns), at batch 1
and at batch = clients, in this process with the servers' thread count, timed after every round
while the servers are idle (so it shares the round's stretch of time: these machines drift by a
third within minutes) and averaged over the rounds. An exact decode of ``max_tokens`` in as many
steps is that many forwards, so the ceiling is ``clients x max_tokens / (max_tokens x step seconds
at batch = clients)`` tokens/s: what a server doing nothing but the model work of equal-length
rows could decode. A fast mode runs fewer forwards per token, so its share can pass 100 %.
Beside the ceiling, the decoder alone: ``step_rows`` (the server's step) over ``clients`` of the
prompts, in this process, with the servers' sampler settings; the gap between it and the
ceiling is the sampler's and the packing's, the gap between it and ``continuous`` the server's.
Without ``--model`` a random-weight model of ``--preset`` with a BPE of 1024 tokens is made in a
temp dir: speed is representative, the text is noise (and a random model is rarely confident,
so a threshold gains little on it).

Measured (2 cores, nothing else running). Defaults (tiny: 4 layers, width 256; 32 tokens in 32
steps; 8 requests per client, 2 rounds): decoded tokens/s and share of the ceiling at 1 / 4 / 16
clients: one at a time 204 (85 %) / 209 (51 %) / 216 (38 %); whole batches 190 / 283 / 363 (63 %);
continuous 176 / 310 / 441 (77 %, 15.5 rows per forward against 8); continuous with a quarter of
the steps 544 / 981 / 1503 (263 %). The decoder alone: 82 % of the ceiling at 16 rows. p50
latency at 16 clients: 2.35 s, 1.40 s, 1.17 s, 0.33 s; peak RSS 560-606 MB; 2.6-5.5 ms of client
CPU a request. The ceiling gains at most 2.40x at 16 clients (one step's work: 4.2 ms at batch
1, 28.0 ms at batch 16, rows of 62 tokens). What a tiny step cannot hide is what does not grow
with the model: the top-p filter's sort of every masked position's vocabulary (1.6 ms a step at
16 rows), attention row by row in a packed forward (16 small calls a layer), and HTTP and the
clients on the same two cores. ``--preset small --clients 16 --requests 4`` (8 layers, width
512: 194 ms a step at batch 16): continuous 78.1 tokens/s, 94 % of the ceiling (15.4 rows per
forward), the decoder alone 97 %, whole batches 71 %, one at a time 51 %.
Earlier runs, before freed memory was kept in the process (``model.allocator``): continuous 322
tokens/s at 16 clients (78 % of a ceiling then timed at 38.6 ms a step); before packing, 240.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
from openai import OpenAI

from diffucoder.config import load_config
from diffucoder.serving.config import ServeConfig
from diffucoder.serving.requests import RequestParser
from diffucoder.serving.smoke import ServerProcess, random_model_dir, server_command

WORDS = ["def", "add", "(", "a", ",", "b", ")", ":", "return", "x", "=", "for", "i", "in", "range", "print",
         "class", "Point", "self", "import", "os", "if", "else", "while", "True", "[", "]", "+", "*", "1", "2"]


class PeakRSS(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.process, self.peak, self._done = psutil.Process(pid), 0, threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.02)

    def stop(self) -> int:
        self._done.set()
        self.join()
        return self.peak


def prompts(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 40))) for _ in range(count)]


def batch_stats(url: str) -> tuple[float, float]:
    """(rows, forwards) so far: whole batches' rows and batches plus the running set's row-steps and steps."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    values = {}
    for name in ("diffucoder_batch_size_sum", "diffucoder_batch_size_count", "diffucoder_step_rows_sum",
                 "diffucoder_step_rows_count"):
        values[name] = float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))
    return (values["diffucoder_batch_size_sum"] + values["diffucoder_step_rows_sum"],
            values["diffucoder_batch_size_count"] + values["diffucoder_step_rows_count"])


_CLIENTS: dict[tuple[str, int], OpenAI] = {}


def openai_client(url: str, index: int) -> OpenAI:
    """Client ``index`` of the server at ``url``, made once: every round reuses its connection
    (as a real client would), so setting clients up costs the shared cores nothing per round."""
    if (url, index) not in _CLIENTS:
        _CLIENTS[(url, index)] = OpenAI(base_url=f"{url}/openai/v1", api_key="unused", max_retries=0, timeout=600)
    return _CLIENTS[(url, index)]


def load(url: str, clients: int, per_client: int, max_tokens: int, seed: int, fields: dict | None = None) -> dict:
    """``clients`` threads x ``per_client`` sequential completions (``fields`` added to each request);
    latencies and token counts."""
    work = prompts(clients * per_client, seed)
    latencies: list[float] = []
    usage_tokens = [0]
    lock = threading.Lock()

    def client(index: int) -> None:
        api = openai_client(url, index)
        for prompt in work[index::clients]:
            started = time.perf_counter()
            answer = api.completions.create(model="diffucoder", prompt=prompt, max_tokens=max_tokens,
                                            extra_body={"steps": max_tokens, **(fields or {})})
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                usage_tokens[0] += answer.usage.completion_tokens

    rows_before, batches_before = batch_stats(url)
    started, cpu_started = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    wall, client_cpu = time.perf_counter() - started, time.process_time() - cpu_started
    rows_after, batches_after = batch_stats(url)
    return {"wall_s": wall, "latencies": latencies, "requests": len(latencies), "usage_tokens": usage_tokens[0],
            "rows": rows_after - rows_before, "batches": batches_after - batches_before, "client_cpu_s": client_cpu}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summarize(name: str, clients: int, runs: list[dict], max_tokens: int, peak_rss: int) -> dict:
    wall = sum(r["wall_s"] for r in runs)
    requests = sum(r["requests"] for r in runs)
    latencies = [x for r in runs for x in r["latencies"]]
    return {"mode": name, "clients": clients, "requests": requests, "wall_s": round(wall, 2),
            "requests_per_s": requests / wall, "decoded_tokens_per_s": requests * max_tokens / wall,
            "completion_tokens_per_s": sum(r["usage_tokens"] for r in runs) / wall,
            "p50_s": statistics.median(latencies), "p99_s": percentile(latencies, 0.99),
            "rows_per_forward": sum(r["rows"] for r in runs) / max(1, sum(r["batches"] for r in runs)),
            "client_cpu_ms_per_request": 1000 * sum(r["client_cpu_s"] for r in runs) / requests,
            "peak_rss_mb": peak_rss / 2**20}


def prompt_ids(model_dir: str, texts: list[str]) -> list[list[int]]:
    """``texts`` tokenized as the servers tokenize prompts (special tokens added)."""
    from diffucoder.sampling import load_tokenizer
    return list(load_tokenizer(model_dir)(texts, add_special_tokens=True)["input_ids"])


class StepWork:
    """One decoding step's model work for ``batch`` rows, timed in this process with the servers'
    thread count: the layers over ``length`` tokens a row (prompt + completion: every diffusion step
    is one forward over both) and the LM head at the ``new`` completion columns (the only logits a
    step reads). Rows of one length: no padding, no packing."""

    def __init__(self, model_dir: str, length: int, new: int, threads: int):
        import torch

        from diffucoder.model import load_model
        if threads:
            torch.set_num_threads(threads)
        self.torch, self.length, self.new = torch, length, new
        self.model = load_model(model_dir).eval()

    def step(self, tokens):
        hidden = self.model.model(input_ids=tokens).last_hidden_state
        return self.model.lm_head(hidden[:, -self.new - 1:-1])

    def seconds(self, batch: int, repeats: int = 5) -> float:
        tokens = self.torch.randint(0, self.model.config.vocab_size - 4, (batch, self.length))
        with self.torch.no_grad():
            for _ in range(2):
                self.step(tokens)
            started = time.perf_counter()
            for _ in range(repeats):
                self.step(tokens)
        return (time.perf_counter() - started) / repeats


class DecoderAlone:
    """Continuous batching's decode loop without the server: ``step_rows`` (what the server's
    decoder thread runs each step) over ``batch`` of the benchmark's prompts, decoded together
    start to end with the servers' own sampler settings, on the ceiling's model in this process.
    Against the ceiling it shows what the sampler and the packing of unlike rows cost; the
    server's further gap is HTTP, tokenizing, scheduling and the clients, on the same cores."""

    def __init__(self, model, prompts: list[list[int]], sampling):
        self.model, self.prompts, self.sampling = model, prompts, sampling

    def tokens_per_s(self, batch: int, first: int = 0) -> float:
        import torch

        from diffucoder.sampling.stepwise import RowDecode, step_rows
        model = self.model
        picked = [self.prompts[(first + i) % len(self.prompts)] for i in range(batch)]
        rows = [RowDecode.start(model, ids, self.sampling, torch.Generator().manual_seed(0)) for ids in picked]
        started = time.perf_counter()
        while not rows[0].done:   # one schedule: every row ends at the same step
            step_rows(model, rows)
        return batch * self.sampling.max_new_tokens / (time.perf_counter() - started)


def fast_fields(text: str, max_tokens: int) -> dict[str, float]:
    """``'steps=/4,threshold=0.9'`` -> {"steps": max_tokens // 4, "threshold": 0.9}."""
    fields: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if key not in ("steps", "threshold", "max_per_step") or not sep:
            raise ValueError(f"{part!r}: expected steps=K, steps=/D, threshold=T or max_per_step=K")
        if key == "steps" and value.startswith("/"):
            fields[key] = max(1, max_tokens // int(value[1:]))
        else:
            fields[key] = int(value) if key != "threshold" else float(value)
    return fields


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="model directory (default: a random model of --preset in a temp dir)")
    parser.add_argument("--preset", default="tiny", choices=("tiny", "small"),
                        help="the random model's preset when no --model (default tiny; 7b does not fit a CPU run)")
    parser.add_argument("--clients", default="1,4,16", help="comma-separated client counts (default 1,4,16)")
    parser.add_argument("--requests", type=int, default=8, help="requests per client per round")
    parser.add_argument("--rounds", type=int, default=2, help="measured rounds per mode (alternating)")
    parser.add_argument("--max-tokens", type=int, default=32, help="max_tokens = steps of every request")
    parser.add_argument("--max-wait-ms", type=float, default=10.0, help="batching.max_wait_ms of the batching servers")
    parser.add_argument("--fast", default="steps=/4",
                        help="request fields of the fast mode, key=value[,key=value]: 'steps=/4' is a quarter of "
                             "--max-tokens, 'threshold=0.9' threshold decoding ('' = leave that mode out)")
    parser.add_argument("--server-threads", type=int, default=0,
                        help="torch threads of each server (0 = torch's default: one per core)")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args(argv)
    clients = sorted({int(part) for part in args.clients.split(",") if part.strip()})
    if not clients or clients[0] < 1:
        parser.error(f"--clients: positive counts, got {args.clients!r}")
    try:
        fast = fast_fields(args.fast, args.max_tokens)
    except ValueError as err:
        parser.error(f"--fast: {err}")

    with tempfile.TemporaryDirectory(prefix="diffucoder-bench-") as scratch:
        model = args.model or str(random_model_dir(Path(scratch) / f"{args.preset}-random", preset=args.preset,
                                                   vocab_size=1024))
        common = ("access_log=false", f"torch_threads={args.server_threads}", "batching.queue_size=4096",
                  f"limits.max_tokens={max(256, args.max_tokens)}", f"limits.steps={max(256, args.max_tokens)}",
                  f"batching.max_batch_size={max(clients)}", f"batching.max_wait_ms={args.max_wait_ms}")
        servers_of = {"one at a time": common + ("batching.enabled=false",),
                      "whole batches": common + ("batching.continuous=false",),
                      "continuous": common}
        modes = {"one at a time": ("one at a time", {}), "whole batches": ("whole batches", {}),
                 "continuous": ("continuous", {})}
        if fast:
            modes["continuous + " + ", ".join(f"{k} {v:g}" for k, v in fast.items())] = ("continuous", fast)
        servers = {name: ServerProcess(server_command(model, overrides=overrides), Path(scratch) / f"{i}.log")
                   for i, (name, overrides) in enumerate(servers_of.items())}
        monitors = {}
        try:
            for name, server in servers.items():
                server.start(timeout_s=300)
                monitors[name] = PeakRSS(server.process.pid)
                monitors[name].start()
                load(server.url, max(clients), 1, args.max_tokens, seed=99)  # warm-up: one-off costs, clients made
            print(f"model: {'random ' + args.preset if not args.model else args.model}; clients {clients} x "
                  f"{args.requests} requests x {args.rounds} rounds per mode; max_tokens = steps = "
                  f"{args.max_tokens}; greedy; server torch threads: "
                  f"{args.server_threads or 'default'} (cores: {os.cpu_count()}); "
                  f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}", flush=True)
            sent = [p for count in clients for r in range(args.rounds) for p in prompts(count * args.requests, r)]
            sent_ids = prompt_ids(model, sent)
            typical = round(statistics.mean(map(len, sent_ids))) + args.max_tokens
            work = StepWork(model, typical, args.max_tokens, args.server_threads)
            served = RequestParser(load_config(ServeConfig, None, common), None).sampling(
                {"max_tokens": args.max_tokens, "steps": args.max_tokens})[0]   # what the servers decode with
            alone = DecoderAlone(work.model, sent_ids, served)
            runs: dict[tuple[str, int], list[dict]] = {(m, c): [] for m in modes for c in clients}
            timed: dict[int, list[float]] = {b: [] for b in {1, *clients}}
            decoder_alone: dict[int, list[float]] = {c: [] for c in clients}
            for count in clients:
                for round_index in range(args.rounds):
                    for name, (server, fields) in modes.items():
                        result = load(servers[server].url, count, args.requests, args.max_tokens,
                                      seed=round_index, fields=fields)
                        runs[(name, count)].append(result)
                        print(f"  {count} clients, round {round_index + 1}, {name}: "
                              f"{result['requests'] / result['wall_s']:.2f} req/s", flush=True)
                    for batch in {1, count}:   # the ceiling in the same stretch of time (these machines drift)
                        timed[batch].append(work.seconds(batch))
                    decoder_alone[count].append(alone.tokens_per_s(count, first=round_index * count))
            peaks = {name: monitor.stop() for name, monitor in monitors.items()}
            figures = [summarize(name, count, runs[(name, count)], args.max_tokens, peaks[modes[name][0]])
                       for count in clients for name in modes]
        finally:
            for server in servers.values():
                server.stop()
        forward = {batch: statistics.mean(seconds) for batch, seconds in timed.items()}
    for f in figures:   # a server doing nothing but the model work of ``clients`` rows, one step at a time
        f["ceiling_tokens_per_s"] = f["clients"] / forward[f["clients"]]
        f["share_of_ceiling"] = f["decoded_tokens_per_s"] / f["ceiling_tokens_per_s"]
    alone_figures = {count: statistics.mean(values) for count, values in decoder_alone.items()}
    print(f"\n{'mode':<28} {'clients':>7} {'req/s':>7} {'dec tok/s':>10} {'p50 s':>7} {'p99 s':>7} "
          f"{'rows/fwd':>8} {'ceiling':>8} {'share':>6} {'client ms':>9} {'peak RSS MB':>12}")
    for f in figures:
        print(f"{f['mode']:<28} {f['clients']:>7} {f['requests_per_s']:>7.2f} {f['decoded_tokens_per_s']:>10.1f} "
              f"{f['p50_s']:>7.2f} {f['p99_s']:>7.2f} {f['rows_per_forward']:>8.2f} "
              f"{f['ceiling_tokens_per_s']:>8.1f} {f['share_of_ceiling']:>6.0%} "
              f"{f['client_cpu_ms_per_request']:>9.1f} {f['peak_rss_mb']:>12.0f}")
    print("\nthe decoder alone (step_rows in this process, no server, timed after each round): "
          + ", ".join(f"{tokens:.0f} tokens/s at {count} rows ({tokens * forward[count] / count:.0%} of the ceiling)"
                      for count, tokens in sorted(alone_figures.items())))
    print(f"\nthe ceiling, ~{typical} tokens a row (timed after each round, servers idle): one step's work takes "
          + ", ".join(f"{1000 * forward[b]:.1f} ms at batch {b}" for b in sorted(forward))
          + f"; batching can gain at most {forward[1] * max(clients) / forward[max(clients)]:.2f}x at "
            f"{max(clients)} clients")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "figures": figures, "typical_tokens": typical,
                                               "forward_s": {str(b): v for b, v in forward.items()},
                                               "decoder_alone_tokens_per_s": alone_figures}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
