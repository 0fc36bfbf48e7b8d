"""``diffucoder serve``: serve a model over HTTP (KServe v1/v2 + OpenAI-style routes) until SIGTERM.

    diffucoder serve --model runs/demo/model --port 8080
    diffucoder serve --model s3://diffucoder/runs/r1/sft --port 8080 --config configs/7b-gpu/serve.yaml
    diffucoder serve --model /mnt/models --port 8080 --model-name coder batching.max_batch_size=8

``--host`` defaults to 127.0.0.1 (nothing outside the machine can connect), except inside
a Kubernetes pod (``KUBERNETES_SERVICE_HOST`` is set), where it is 0.0.0.0 so the kubelet's
probes and KServe's router reach it — which is how the chart's ServingRuntime runs
``diffucoder serve --model /mnt/models --port 8080``. KServe-style spellings
(``--model_name``, ``--http_port``, ``--model_dir``) are accepted too. Trailing
``key=value`` arguments override ``ServeConfig`` (see ``--help``).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys


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
    parser.add_argument("--model", "--model_dir", dest="model", required=True, metavar="DIR_OR_URI",
                        help="model directory (with its tokenizer) or a file:// / s3:// model artifact")
    parser.add_argument("--port", "--http_port", dest="port", type=int, default=8080,
                        help="HTTP port (default 8080; 0 = any free port, printed when listening)")
    parser.add_argument("--host", default=None,
                        help="address to bind (default 127.0.0.1; 0.0.0.0 inside a Kubernetes pod)")
    parser.add_argument("--model-name", "--model_name", dest="model_name", default=None,
                        help="name in the URLs and the OpenAI 'model' field (default: the config's, 'diffucoder')")
    parser.add_argument("--config", metavar="FILE", help="server YAML, e.g. configs/tiny-cpu/serve.yaml")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="server overrides, e.g. batching.max_batch_size=8 defaults.max_tokens=64")


def main(args: argparse.Namespace) -> int:
    import logging

    from diffucoder.config import load_config
    from diffucoder.errors import DiffucoderError
    from diffucoder.serving.config import ServeConfig

    cfg = load_config(ServeConfig, args.config, args.overrides)
    if args.model_name is not None:
        cfg = dataclasses.replace(cfg, model_name=args.model_name)
        cfg.validate()
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
