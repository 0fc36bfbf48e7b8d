"""Serving throughput with batching on vs off: N concurrent OpenAI clients against ``diffucoder serve``.

    .venv/bin/python benchmarks/serving.py                         # tiny random model, 16 clients
    .venv/bin/python benchmarks/serving.py --clients 16 --requests 8 --max-tokens 32 --rounds 2
    .venv/bin/python benchmarks/serving.py --model runs/demo/model --server-threads 1 --json out.json

Two real servers run side by side on 127.0.0.1 (subprocesses, the same model): one with
dynamic batching (``batching.max_batch_size`` = clients), one with ``batching.enabled=false``
(every request decoded alone). Each round measures one server, then the other (rounds
alternate, so load from other jobs on the machine spreads over both): ``--clients`` threads,
each an ``openai.OpenAI`` client sending ``--requests`` greedy completions one after another
(``max_tokens`` = ``steps`` = ``--max-tokens``, prompts of 4-40 tokens). Reported per mode:
requests/s, tokens/s (decoded: requests x max_tokens, the work a diffusion decode does whatever
the text; and the usage's completion tokens, cut at EOS), p50/p99 latency, mean rows per
batch (the server's /metrics) and the server's peak RSS (psutil, sampled every 20 ms). Last, the
ceiling: one model forward per row at batch 1 vs at batch ``--clients`` (every diffusion step is a
full forward over prompt + completion, so on a CPU a single request already keeps the cores busy
and batching can gain only what that ratio allows). Without
``--model`` a random-weight ``tiny`` model (4 layers, width 256) with a small BPE is made in a
temp dir: speed is representative, the text is noise.
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
    text = httpx.get(f"{url}/metrics", timeout=10).text
    values = {}
    for name in ("diffucoder_batch_size_sum", "diffucoder_batch_size_count"):
        values[name] = float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))
    return values["diffucoder_batch_size_sum"], values["diffucoder_batch_size_count"]


def load(url: str, clients: int, per_client: int, max_tokens: int, seed: int) -> dict:
    """``clients`` threads x ``per_client`` sequential completions; latencies and token counts."""
    work = prompts(clients * per_client, seed)
    latencies: list[float] = []
    usage_tokens = [0]
    lock = threading.Lock()

    def client(index: int) -> None:
        api = OpenAI(base_url=f"{url}/openai/v1", api_key="unused", max_retries=0, timeout=600)
        for prompt in work[index::clients]:
            started = time.perf_counter()
            answer = api.completions.create(model="diffucoder", prompt=prompt, max_tokens=max_tokens,
                                            extra_body={"steps": max_tokens})
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                usage_tokens[0] += answer.usage.completion_tokens

    rows_before, batches_before = batch_stats(url)
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    wall = time.perf_counter() - started
    rows_after, batches_after = batch_stats(url)
    return {"wall_s": wall, "latencies": latencies, "requests": len(latencies), "usage_tokens": usage_tokens[0],
            "rows": rows_after - rows_before, "batches": batches_after - batches_before}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summarize(name: str, runs: list[dict], max_tokens: int, peak_rss: int) -> dict:
    wall = sum(r["wall_s"] for r in runs)
    requests = sum(r["requests"] for r in runs)
    latencies = [x for r in runs for x in r["latencies"]]
    return {"mode": name, "requests": requests, "wall_s": round(wall, 2),
            "requests_per_s": requests / wall, "decoded_tokens_per_s": requests * max_tokens / wall,
            "completion_tokens_per_s": sum(r["usage_tokens"] for r in runs) / wall,
            "p50_s": statistics.median(latencies), "p99_s": percentile(latencies, 0.99),
            "mean_batch_rows": sum(r["rows"] for r in runs) / max(1, sum(r["batches"] for r in runs)),
            "peak_rss_mb": peak_rss / 2**20}


def forward_ceiling(model_dir: str, rows: int, length: int, threads: int) -> tuple[float, float]:
    """(ms per row of one model forward at batch 1, at batch ``rows``), ``length`` tokens a row, in this
    process with the servers' thread count: what batching can gain at most, since every diffusion
    step is one forward over prompt + completion, whatever the server does around it."""
    import torch

    from diffucoder.model import load_model
    if threads:
        torch.set_num_threads(threads)
    model = load_model(model_dir).eval()
    vocab = model.config.vocab_size
    per_row = []
    for batch in (1, rows):
        tokens = torch.randint(0, vocab - 4, (batch, length))
        with torch.no_grad():
            for _ in range(3):
                model(tokens)
            started = time.perf_counter()
            for _ in range(10):
                model(tokens)
        per_row.append((time.perf_counter() - started) / 10 / batch * 1000)
    return per_row[0], per_row[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="model directory (default: a random tiny model in a temp dir)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=8, help="requests per client per round")
    parser.add_argument("--rounds", type=int, default=2, help="measured rounds per mode (alternating)")
    parser.add_argument("--max-tokens", type=int, default=32, help="max_tokens = steps of every request")
    parser.add_argument("--max-wait-ms", type=float, default=10.0, help="batching.max_wait_ms of the batching server")
    parser.add_argument("--server-threads", type=int, default=0,
                        help="torch threads of each server (0 = torch's default: one per core)")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="diffucoder-bench-") as scratch:
        model = args.model or str(random_model_dir(Path(scratch) / "tiny-random", preset="tiny", vocab_size=1024))
        common = ("access_log=false", f"torch_threads={args.server_threads}", "batching.queue_size=4096",
                  f"limits.max_tokens={max(256, args.max_tokens)}", f"limits.steps={max(256, args.max_tokens)}")
        modes = {
            "batching on": common + (f"batching.max_batch_size={args.clients}",
                                     f"batching.max_wait_ms={args.max_wait_ms}"),
            "batching off": common + ("batching.enabled=false",),
        }
        servers = {name: ServerProcess(server_command(model, overrides=overrides), Path(scratch) / f"{i}.log")
                   for i, (name, overrides) in enumerate(modes.items())}
        monitors = {}
        try:
            for name, server in servers.items():
                server.start(timeout_s=300)
                monitors[name] = PeakRSS(server.process.pid)
                monitors[name].start()
                load(server.url, 2, 2, args.max_tokens, seed=99)  # warm-up: first calls pay one-off costs
            print(f"model: {'random tiny' if not args.model else args.model}; {args.clients} clients x "
                  f"{args.requests} requests x {args.rounds} rounds per mode; max_tokens = steps = "
                  f"{args.max_tokens}; greedy; server torch threads: "
                  f"{args.server_threads or 'default'} (cores: {os.cpu_count()}); "
                  f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}", flush=True)
            runs: dict[str, list[dict]] = {name: [] for name in servers}
            for round_index in range(args.rounds):
                for name, server in servers.items():
                    result = load(server.url, args.clients, args.requests, args.max_tokens, seed=round_index)
                    runs[name].append(result)
                    print(f"  round {round_index + 1} {name}: {result['requests'] / result['wall_s']:.2f} req/s",
                          flush=True)
            figures = [summarize(name, runs[name], args.max_tokens, monitors[name].stop()) for name in servers]
        finally:
            for server in servers.values():
                server.stop()
        typical = round(statistics.mean(len(p.split()) for p in prompts(64, 0))) + args.max_tokens
        alone, batched = forward_ceiling(model, args.clients, typical, args.server_threads)
    print(f"\n{'mode':<14} {'req/s':>7} {'dec tok/s':>10} {'usage tok/s':>12} {'p50 s':>7} {'p99 s':>7} "
          f"{'rows/batch':>10} {'peak RSS MB':>12}")
    for f in figures:
        print(f"{f['mode']:<14} {f['requests_per_s']:>7.2f} {f['decoded_tokens_per_s']:>10.1f} "
              f"{f['completion_tokens_per_s']:>12.1f} {f['p50_s']:>7.2f} {f['p99_s']:>7.2f} "
              f"{f['mean_batch_rows']:>10.2f} {f['peak_rss_mb']:>12.0f}")
    gain = figures[0]["requests_per_s"] / figures[1]["requests_per_s"]
    ceiling = alone / batched
    print(f"\nthroughput with batching / without: {gain:.2f}x at {args.clients} concurrent clients")
    print(f"model forward alone (servers stopped), ~{typical} tokens a row: {alone:.1f} ms per row at batch 1, "
          f"{batched:.1f} ms per row at batch {args.clients}: batching can gain at most {ceiling:.2f}x here; "
          f"the server reached {gain / ceiling:.0%} of that")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "figures": figures, "gain": gain,
                                               "forward_ms_per_row": {"batch_1": alone, f"batch_{args.clients}": batched},
                                               "ceiling": ceiling}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
