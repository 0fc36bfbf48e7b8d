"""``diffucoder serve``: serve a model over HTTP (KServe v1/v2 + OpenAI-style routes) until SIGTERM.

    diffucoder serve --model runs/demo/model --port 8080
    diffucoder serve --model s3://diffucoder/runs/r1/sft --port 8080 --config configs/7b-gpu/serve.yaml
    diffucoder serve --model /mnt/models --port 8080 --model-name coder batching.max_batch_size=8
    diffucoder serve --estimate --model-preset 7b --config configs/7b-gpu/serve.yaml --gpu-memory-gib 80

``--host`` defaults to 127.0.0.1 (nothing outside the machine can connect), except inside
a Kubernetes pod (``KUBERNETES_SERVICE_HOST`` is set), where it is 0.0.0.0 so the kubelet's
probes and KServe's router reach it — which is how the chart's ServingRuntime runs
``diffucoder serve --model /mnt/models --port 8080 --config <preset's serve.yaml>
--model_name=<InferenceService name>``. KServe-style spellings (``--model_name``,
``--http_port``, ``--model_dir``) are accepted too. Trailing ``key=value`` arguments
override ``ServeConfig`` (see ``--help``).

The port answers at once; the model loads in the background (``/v2/health/ready`` says
when it is ready). Exit codes: 0 after SIGTERM, 1 if the model could not be loaded, 2 for
bad input. ``--estimate`` prints the GPU memory the settings need (weights, KV cache, one
batch at the largest request; ``diffucoder.serving.memory``) and exits without serving.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

# The functions below import the project's modules when called: ServeConfig pulls in torch
# (via diffucoder.sampling) and the server kserve, seconds that `diffucoder --help` and the
# other commands should not pay.


def default_host() -> str:
    return "0.0.0.0" if os.environ.get("KUBERNETES_SERVICE_HOST") else "127.0.0.1"


def _describe(cls, prefix: str = "") -> list[str]:
    lines = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(f.type) or (f.default_factory is not dataclasses.MISSING
                                                and dataclasses.is_dataclass(f.default_factory)):
            lines += _describe(f.default_factory, f"{prefix}{f.name}.")
        else:
            lines.append(f"  {prefix}{f.name} = {f.default!r}\n      {f.metadata.get('help', '')}")
    return lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from diffucoder.serving.config import ServeConfig

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = ("Serve a masked-diffusion model: KServe v1 (/v1/models/<name>:predict), v2 "
                          "(/v2/models/<name>/infer), OpenAI-style (/openai/v1/completions, "
                          "/openai/v1/chat/completions, /openai/v1/models), health and /metrics, on one port.")
    parser.epilog = "Server keys (key=value):\n" + "\n".join(_describe(ServeConfig))
    parser.add_argument("--model", "--model_dir", dest="model", metavar="DIR_OR_URI",
                        help="model directory (with its tokenizer) or a file:// / s3:// model artifact")
    parser.add_argument("--port", "--http_port", dest="port", type=int, default=8080,
                        help="HTTP port (default 8080; 0 = any free port, printed when listening)")
    parser.add_argument("--host", default=None,
                        help="address to bind (default 127.0.0.1; 0.0.0.0 inside a Kubernetes pod)")
    parser.add_argument("--model-name", "--model_name", dest="model_name", default=None,
                        help="name in the URLs and the OpenAI 'model' field (default: the config's, 'diffucoder')")
    parser.add_argument("--config", metavar="FILE", help="server YAML, e.g. configs/tiny-cpu/serve.yaml")
    parser.add_argument("--estimate", action="store_true",
                        help="print the GPU memory estimate of these settings and exit (no serving)")
    parser.add_argument("--model-preset", metavar="NAME",
                        help="--estimate: the model's shape by preset (tiny, small, 7b) instead of --model")
    parser.add_argument("--gpu-memory-gib", type=float, default=0.0,
                        help="--estimate: say whether it fits in this much memory per GPU")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="server overrides, e.g. batching.max_batch_size=8 defaults.max_tokens=64")


def _model_shape(args: argparse.Namespace):
    """The served model's config for ``--estimate``: a preset, or a model directory's config.json."""
    from diffucoder.errors import DiffucoderError
    from diffucoder.model import DreamConfig, build_config
    if args.model_preset:
        return build_config(args.model_preset)
    if not args.model or "://" in args.model:
        raise DiffucoderError("--estimate: give --model-preset NAME or --model DIR (a local model directory)")
    path = Path(args.model) / "config.json"
    if not path.is_file():
        raise DiffucoderError(f"--model {args.model}: no config.json to estimate from")
    return DreamConfig.from_pretrained(args.model)


def main(args: argparse.Namespace) -> int:
    import logging

    from diffucoder.config import load_config
    from diffucoder.errors import DiffucoderError
    from diffucoder.serving.config import ServeConfig

    cfg = load_config(ServeConfig, args.config, args.overrides)
    if args.model_name is not None:
        cfg = dataclasses.replace(cfg, model_name=args.model_name)
        cfg.validate()
    if args.estimate:
        from diffucoder.serving.memory import serve_memory_estimate
        print("\n".join(serve_memory_estimate(_model_shape(args), cfg).lines(args.gpu_memory_gib)))
        return 0
    if not args.model:
        raise DiffucoderError("--model: required (a model directory or a file:// / s3:// artifact URI)")
    if not 0 <= args.port <= 65535:
        raise DiffucoderError(f"--port: must be in [0, 65535], got {args.port}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from diffucoder.serving.server import serve
    code = serve(args.model, cfg, host=args.host or default_host(), port=args.port)
    # The shutdown was orderly (responses sent, downloads removed); skip the interpreter's
    # teardown of torch & co., which takes seconds and has nothing left to save.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
