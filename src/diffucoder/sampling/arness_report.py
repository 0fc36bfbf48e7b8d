"""Measure AR-ness@k of a model over a prompt set at several temperatures; write table, JSON, plot.

    from diffucoder.sampling.arness_report import measure_arness, read_prompts, write_arness_report
    result = measure_arness(model, tokenizer, read_prompts("prompts.jsonl"), temperatures=[0.2, 1.0],
                            max_new_tokens=64, ks=range(1, 9))
    paths = write_arness_report(result, "out/arness")   # arness.md, arness.json, arness.png

Every decode commits one token per step (steps = max_new_tokens, docs/method.md, section 3.5)
with the given sampling config (default: the recommended one) and only the
temperature changed; AR-ness is averaged over prompts.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from diffucoder.errors import DiffucoderError
from diffucoder.plots import pyplot, save_figure
from diffucoder.sampling.arness import arness_curves
from diffucoder.sampling.config import SamplingConfig, resolve_config
from diffucoder.sampling.generate import diffusion_generate
from diffucoder.sampling.text import encode_prompts


def read_prompts(path: str | os.PathLike) -> list[str]:
    """Prompts from a ``.jsonl`` file (a ``"prompt"`` field per line) or a text file (one per line)."""
    path = Path(path)
    if not path.is_file():
        raise DiffucoderError(f"{path}: prompt file not found")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if path.suffix != ".jsonl":
        prompts = lines
    else:
        prompts = []
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DiffucoderError(f"{path}:{number}: not JSON ({err})") from None
            if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
                raise DiffucoderError(f"{path}:{number}: expected an object with a string 'prompt' field")
            prompts.append(record["prompt"])
    if not prompts:
        raise DiffucoderError(f"{path}: no prompts")
    return prompts


def measure_arness(model, tokenizer, prompts: Sequence[str], temperatures: Iterable[float], max_new_tokens: int,
                   ks: Iterable[int] = range(1, 9), config: SamplingConfig | None = None, batch_size: int = 8,
                   seed: int = 0) -> dict:
    """AR-ness curves per temperature: ``{"temperatures": {"0.2": {"k", "local", "global"}}, ...}``."""
    temperatures, ks = [float(t) for t in temperatures], list(ks)
    if not temperatures:
        raise DiffucoderError("give at least one temperature")
    if batch_size < 1:
        raise DiffucoderError(f"batch_size must be >= 1, got {batch_size}")
    base = resolve_config(config, max_new_tokens=max_new_tokens, steps=max_new_tokens, mode="exact")
    curves = {}
    for temperature in temperatures:
        cfg = resolve_config(base, temperature=temperature)
        generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
        orders = []
        for start in range(0, len(prompts), batch_size):
            ids, mask = encode_prompts(tokenizer, prompts[start:start + batch_size])
            out = diffusion_generate(model, ids, mask, cfg, generator=generator, return_commit_order=True)
            orders.extend(out.commit_order.tolist())
        curves[f"{temperature:g}"] = arness_curves(orders, ks)
    return {"max_new_tokens": max_new_tokens, "steps": max_new_tokens, "prompts": len(prompts), "ks": ks,
            "sampling": dataclasses.asdict(base), "temperatures": curves}


def arness_table(result: dict) -> str:
    """Markdown table: one row per temperature, local and global AR-ness@k columns."""
    ks = result["ks"]
    head = "| temperature | " + " | ".join(f"local@{k}" for k in ks) + " | " + \
        " | ".join(f"global@{k}" for k in ks) + " |"
    rule = "|---" * (1 + 2 * len(ks)) + "|"
    rows = [f"| {name} | " + " | ".join(f"{v:.3f}" for v in curve["local"]) + " | " +
            " | ".join(f"{v:.3f}" for v in curve["global"]) + " |"
            for name, curve in result["temperatures"].items()]
    intro = (f"# AR-ness@k\n\n{result['prompts']} prompts, {result['max_new_tokens']} new tokens in "
             f"{result['steps']} steps (one commit per step), alg {result['sampling']['alg']}.\n\n")
    return intro + "\n".join([head, rule, *rows]) + "\n"


def _write_atomic(path: Path, write) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _plot(result: dict, path: Path) -> None:
    plt = pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for name, curve in result["temperatures"].items():
        for axis, kind in zip(axes, ("local", "global")):
            axis.plot(curve["k"], curve[kind], marker="o", label=f"T = {name}")
    for axis, kind in zip(axes, ("local", "global")):
        axis.set_title(f"{kind} AR-ness@k")
        axis.set_xlabel("k")
        axis.set_ylim(-0.02, 1.02)
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("AR-ness")
    axes[1].legend()
    save_figure(figure, path)


def write_arness_report(result: dict, output_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``arness.md``, ``arness.json`` and ``arness.png`` into ``output_dir`` (each atomically)."""
    directory = Path(output_dir)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"table": directory / "arness.md", "json": directory / "arness.json", "plot": directory / "arness.png"}
    _write_atomic(paths["table"], lambda tmp: Path(tmp).write_text(arness_table(result), encoding="utf-8"))
    _write_atomic(paths["json"], lambda tmp: Path(tmp).write_text(json.dumps(result, indent=2), encoding="utf-8"))
    _plot(result, paths["plot"])
    return paths
