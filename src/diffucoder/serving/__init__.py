"""Serving a diffusion coder: one process with KServe's v1/v2 routes and OpenAI-style routes.

    diffucoder serve --model runs/demo/model --port 8080          # or --model s3://.../sft

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:8080/openai/v1", api_key="unused")
    client.completions.create(model="diffucoder", prompt="def add(a, b):", max_tokens=32,
                              extra_body={"steps": 16}).choices[0].text

    from diffucoder.serving.smoke import serve_and_ask
    print(serve_and_ask("runs/demo/model", "def add(a, b):"))     # start, ask once, stop

Routes: ``POST /v1/models/<name>:predict``, ``POST /v2/models/<name>/infer``,
``POST /openai/v1/completions``, ``POST /openai/v1/chat/completions``, ``GET /openai/v1/models``,
``GET /v2/health/live``, ``GET /v2/health/ready``, ``GET /v1/models/<name>``, ``GET /metrics``.

The port answers at once and the model loads in the background: ``/v2/health/live`` is 200
throughout, ``/v2/health/ready`` and ``/v1/models/<name>`` are 503 until the model is loaded
(KServe's readiness convention), and a failed load ends the process with exit code 1.
``--model_name`` (KServe's runtimes pass ``--model_name={{.Name}}``) sets ``<name>``.

Modules: ``config`` (ServeConfig), ``fields``/``requests`` (validation: a bad field is a
4xx naming it), ``engine`` (model + tokenizer; whole batches, or rows stepped one denoising
step at a time), ``batcher`` (continuous batching, bounded queue, 429/503), ``model`` (the
``kserve.Model``), ``openai_routes``,
``http`` (body limit, error bodies), ``metrics`` (Prometheus), ``server`` (ModelServer,
background load, draining shutdown), ``source`` (model directory or artifact URI),
``memory`` (GPU memory estimate, ``diffucoder serve --estimate``), ``cli``, ``smoke``.
kserve is imported lazily (``kserve_compat``): importing this package does not import it.
"""
from diffucoder.serving.config import BatchingConfig, RequestDefaults, SamplerSettings, ServeConfig, ServeLimits
from diffucoder.serving.errors import QueueFull, RequestError, ShuttingDown

__all__ = ["BatchingConfig", "QueueFull", "RequestDefaults", "RequestError", "SamplerSettings", "ServeConfig",
           "ServeLimits", "ShuttingDown"]
