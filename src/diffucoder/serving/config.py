"""``ServeConfig``: the model server's defaults, caps, batching and shutdown (``configs/*/serve.yaml``).

    from diffucoder.config import load_config
    from diffucoder.serving import ServeConfig
    cfg = load_config(ServeConfig, "configs/tiny-cpu/serve.yaml", ["batching.max_batch_size=8"])

``defaults`` are what a request gets for each diffusion field it leaves out (greedy
decoding: temperature 0); ``limits`` are the largest values a request may ask for — a
larger one is a 400 naming the field, never a silent clamp. ``sampler`` holds the
decoding settings a client cannot change (mode, schedule end, stop token).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from diffucoder.config import ConfigError, setting
from diffucoder.sampling.config import ALGORITHMS, MODES, STOPS
from diffucoder.training.chat import ChatConfig

DTYPES = ("float32", "bfloat16", "float16")


@dataclass
class RequestDefaults:
    max_tokens: int = setting(256, min=1, help="completion length (mask tokens appended to the prompt)")
    steps: int = setting(0, min=0, help="denoising steps; 0 = as many as the request's max_tokens "
                                        "(about one token committed per step, the paper's recipe)")
    alg: str = setting("entropy", choices=ALGORITHMS, help="which masked positions are committed first")
    alg_temp: float = setting(0.0, min=0.0, help="0: commit the most confident positions; > 0: draw them")
    temperature: float = setting(0.0, min=0.0, help="token temperature; 0 = greedy (argmax)")
    top_p: float = setting(0.95, help="nucleus filtering, in (0, 1]; 1 = off")
    top_k: int = setting(0, min=0, help="keep the k most likely tokens; 0 = off")
    threshold: float = setting(0.0, min=0.0, max=1.0,
                               help="confidence-threshold parallel decoding: also commit every masked position "
                                    "whose token is at least this probable; 0 = off")
    max_per_step: int = setting(0, min=0, help="with threshold: at most this many positions a step; 0 = no cap")

    def validate(self) -> None:
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"'defaults.top_p': must be in (0, 1], got {self.top_p!r}")
        if self.max_per_step and not self.threshold:
            raise ConfigError(f"'defaults.max_per_step': caps the threshold rule; set 'defaults.threshold' > 0 "
                              f"or leave it 0, got {self.max_per_step}")


@dataclass
class SamplerSettings:
    mode: str = setting("exact", choices=MODES, help="exact, or an APPROXIMATE cached block-wise mode")
    block_size: int = setting(32, min=1, help="approx modes: tokens per block")
    eps: float = setting(1e-3, help="final time of the schedule, in (0, 1)")
    batch_invariant: bool = setting(False, help="one unpadded forward per row: a row's output never depends "
                                                "on its batch (bit for bit), at the cost of batched compute")
    stop: str = setting("eos", choices=STOPS, help="stop token: first EOS (base) or <|dlm_pad|> (instruct)")

    def validate(self) -> None:
        if not 0.0 < self.eps < 1.0:
            raise ConfigError(f"'sampler.eps': must be in (0, 1), got {self.eps!r}")
        if self.batch_invariant and self.mode != "exact":
            raise ConfigError("'sampler.batch_invariant': only the exact mode has it")


@dataclass
class ServeLimits:
    max_tokens: int = setting(512, min=1, help="largest max_tokens a request may ask for")
    steps: int = setting(512, min=1, help="largest steps a request may ask for")
    prompt_tokens: int = setting(2048, min=1, help="longest prompt, in tokens (after the chat template)")
    prompts_per_request: int = setting(16, min=1, help="prompts in one request (a prompt list, v1 "
                                                       "instances, v2 text_input elements)")
    stop_strings: int = setting(4, min=0, help="stop strings per request (OpenAI allows 4)")
    body_bytes: int = setting(1 << 20, min=1024, help="largest request body; larger is a 413")
    temperature: float = setting(100.0, min=0.0, help="largest temperature or alg_temp")
    min_threshold: float = setting(0.0, min=0.0, max=1.0,
                                   help="lowest threshold a request may ask for other than 0 (off): a low one "
                                        "commits many tokens a step, faster and worse")


@dataclass
class BatchingConfig:
    enabled: bool = setting(True, help="decode concurrent requests together (off: one at a time)")
    continuous: bool = setting(True, help="exact-mode rows join and leave the running batch at any denoising "
                                          "step (off: whole batches, each decoded start to end)")
    max_batch_size: int = setting(16, min=1, help="requests (rows) decoded together")
    max_wait_ms: float = setting(10.0, min=0.0, max=10_000.0,
                                 help="how long an idle decoder waits for a batch to fill")
    queue_size: int = setting(256, min=1, help="requests waiting to be decoded; beyond it a 429")
    retry_after_s: int = setting(1, min=1, max=3600, help="least Retry-After of a 429/503")


@dataclass
class ServeConfig:
    model_name: str = setting("diffucoder", help="name in the URLs (/v1/models/<name>:predict) and "
                                                 "the OpenAI 'model' field")
    device: str = setting("cpu", help="torch device of the model")
    dtype: str = setting("float32", choices=DTYPES, help="weights dtype (bfloat16 on CPU is slow)")
    torch_threads: int = setting(0, min=0, help="torch intra-op threads of the decoder; 0 = torch's default")
    shutdown_grace_s: float = setting(30.0, min=0.0, max=3600.0,
                                      help="on SIGTERM, how long queued and running requests may finish")
    access_log: bool = setting(True, help="one log line per request (uvicorn's access log, on stdout)")
    cache_dir: str = setting("", help="where a model given as a store URI is downloaded ('' = a temp "
                                      "dir removed at exit)")
    defaults: RequestDefaults = field(default_factory=RequestDefaults)
    sampler: SamplerSettings = field(default_factory=SamplerSettings)
    limits: ServeLimits = field(default_factory=ServeLimits)
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    chat: ChatConfig = field(default_factory=ChatConfig)   # how chat messages become the prompt

    def validate(self) -> None:
        if not self.model_name or "/" in self.model_name or ":" in self.model_name:
            raise ConfigError(f"'model_name': must be non-empty without '/' or ':', got {self.model_name!r}")
        if self.defaults.max_tokens > self.limits.max_tokens:
            raise ConfigError(f"'defaults.max_tokens' {self.defaults.max_tokens} is above "
                              f"'limits.max_tokens' {self.limits.max_tokens}")
        if self.defaults.steps > self.limits.steps:
            raise ConfigError(f"'defaults.steps' {self.defaults.steps} is above 'limits.steps' {self.limits.steps}")
        if self.defaults.steps == 0 and self.defaults.max_tokens > self.limits.steps:
            raise ConfigError(f"'defaults.steps' 0 means steps = max_tokens, but 'defaults.max_tokens' "
                              f"{self.defaults.max_tokens} is above 'limits.steps' {self.limits.steps}")
        if max(self.defaults.temperature, self.defaults.alg_temp) > self.limits.temperature:
            raise ConfigError("'defaults.temperature' / 'defaults.alg_temp' are above 'limits.temperature'")
        if 0 < self.defaults.threshold < self.limits.min_threshold:
            raise ConfigError(f"'defaults.threshold' {self.defaults.threshold} is below 'limits.min_threshold' "
                              f"{self.limits.min_threshold}")

    @property
    def max_batch_size(self) -> int:
        """Rows per decode: 1 when batching is off."""
        return self.batching.max_batch_size if self.batching.enabled else 1

    @property
    def max_wait_s(self) -> float:
        return self.batching.max_wait_ms / 1000.0 if self.batching.enabled else 0.0
