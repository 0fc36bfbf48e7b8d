"""Settings of a sandbox pool (limits, isolation, pool size), and where a stage runs its code.

    cfg = SandboxConfig(timeout_s=5, memory_mb=512, strict=True)
    cfg = load_config(SandboxConfig, "sandbox.yaml", ["workers=4"])   # or from YAML/overrides
    section = SandboxSection(endpoint="http://diffucoder-sandbox:8080", min_isolation="service")
    layer_rank("bwrap") > layer_rank("rlimits-only")                    # True

The isolation layers, weakest first (``LAYERS``): ``none`` (no floor at all; never runs),
``rlimits-only``, ``unshare-n+uid``, ``bwrap-userns``, ``bwrap``, and ``service``: the sandbox
service (``diffucoder sandbox serve``) in a pod of its own, with no credentials, no network
and no service-account token, whatever layer its jobs run under inside it.
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass

from diffucoder.config import ConfigError, setting

ISOLATION_CHOICES = ("auto", "bwrap", "unshare", "none")
LAYERS = ("none", "rlimits-only", "unshare-n+uid", "bwrap-userns", "bwrap", "service")
LAYER_ALIASES = {"unshare": "unshare-n+uid"}
MIN_ISOLATION_CHOICES = ("auto", *LAYERS, *LAYER_ALIASES)
# ``min_isolation: auto`` never accepts less than this: the weakest layer that cuts the network.
AUTO_FLOOR = "unshare-n+uid"
_ENDPOINT = re.compile(r"\Ahttps?://[A-Za-z0-9._-]+(:[0-9]{1,5})?/?\Z|\Ahttps?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?/?\Z")


def check_settings(cfg) -> None:
    """The ranges and choices of a settings dataclass built in code (``load_config`` checks the
    ones it builds): ConfigError naming the field."""
    for f in dataclasses.fields(cfg):
        value, meta = getattr(cfg, f.name), f.metadata or {}
        if value is None:
            continue
        if meta.get("choices") and value not in meta["choices"]:
            raise ConfigError(f"'{f.name}': must be one of {list(meta['choices'])}, got {value!r}")
        if meta.get("min") is not None and value < meta["min"]:
            raise ConfigError(f"'{f.name}': must be >= {meta['min']}, got {value!r}")
        if meta.get("max") is not None and value > meta["max"]:
            raise ConfigError(f"'{f.name}': must be <= {meta['max']}, got {value!r}")


def layer_rank(name: str) -> int:
    """Position of a layer in ``LAYERS`` (aliases allowed); ValueError for an unknown name."""
    return LAYERS.index(LAYER_ALIASES.get(name, name))


@dataclass
class SandboxConfig:
    timeout_s: float = setting(10.0, min=0.05, max=3600.0,
                               help="wall-clock limit for one program and all its tests")
    memory_mb: int = setting(1024, min=32, max=1 << 20,
                             help="address-space limit (RLIMIT_AS) of each sandboxed process")
    strict: bool = setting(False, help="refuse to run when no network isolation is available")
    workers: int | None = setting(None, min=1, max=512,
                                  help="concurrent programs (default: number of CPU cores)")
    queue_size: int | None = setting(None, min=1,
                                     help="jobs waiting for a worker before submit() blocks "
                                          "(default: 2 x workers)")
    isolation: str = setting("auto", choices=ISOLATION_CHOICES,
                             help="auto = strongest available; bwrap / unshare / none force one")
    max_processes: int = setting(64, min=4, max=4096,
                                 help="RLIMIT_NPROC: processes and threads of one program")
    max_file_mb: int = setting(16, min=1, help="RLIMIT_FSIZE: largest file a program may write")
    tmp_mb: int = setting(64, min=1, help="size of the private /tmp (bwrap only)")
    max_open_files: int = setting(64, min=16, help="RLIMIT_NOFILE of each sandboxed process")
    output_kb: int = setting(64, min=1, help="stdout/stderr kept per program (rest dropped)")
    report_mb: int = setting(64, min=1, help="largest test report (compared values) per program")
    message_chars: int = setting(300, min=40, help="length of messages in results")
    uid_base: int = setting(61000, min=1000, max=(1 << 31) - 4096,
                            help="first of the 2048 uids given to workers when run as root; "
                                 "no real user may own one (their processes would be killed)")
    python: str = setting("", help="interpreter inside the sandbox (default /usr/bin/python3, "
                                   "else this venv's base interpreter)")

    def validate(self) -> None:
        check_settings(self)

    @property
    def pool_size(self) -> int:
        return self.workers or os.cpu_count() or 1

    @property
    def queue_limit(self) -> int:
        return self.queue_size or 2 * self.pool_size


@dataclass
class SandboxSection:
    """Where a stage runs model-written code, and the weakest isolation it accepts (the ``sandbox``
    section of the evaluate recipe, ``reward.sandbox`` of the RL recipe)."""
    endpoint: str = setting("", help="URL of the sandbox service (diffucoder sandbox serve), e.g. "
                                     "http://diffucoder-sandbox:8080; '' = an in-process worker pool")
    min_isolation: str = setting("auto", choices=MIN_ISOLATION_CHOICES,
                                 help="refuse to run below this layer (none < rlimits-only < "
                                      "unshare-n+uid < bwrap-userns < bwrap < service); auto = the "
                                      "strongest layer available here, and at least unshare-n+uid")
    batch_size: int = setting(64, min=1, max=4096, help="service: programs per request")
    max_in_flight: int = setting(4, min=1, max=64, help="service: requests under way at once")
    retry_s: float = setting(300.0, min=0.0, max=86400.0,
                             help="service: how long to keep retrying while it is busy (429), "
                                  "not ready (503) or unreachable")

    def validate(self) -> None:
        if self.endpoint and not _ENDPOINT.match(self.endpoint):
            raise ConfigError(f"sandbox 'endpoint': must look like http://host:port (no path), "
                              f"got {self.endpoint!r}")
