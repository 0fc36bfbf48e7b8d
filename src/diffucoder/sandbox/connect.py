"""Open the sandbox a stage runs model-written code in: the service, or a local pool, never below the floor.

    section = SandboxSection(endpoint="", min_isolation="auto")
    check_sandbox(SandboxConfig(timeout_s=5), section)   # the floor / reachability, nothing started
    with open_sandbox(SandboxConfig(timeout_s=5), section) as sandbox:   # Sandbox or SandboxClient
        self_check(sandbox)
        sandbox.run_many(items), sandbox.isolation, sandbox.describe()

With ``section.endpoint`` set, programs go to the sandbox service (``SandboxClient``: its
layer is ``service``); else a local pool starts, but only if the layer it would run under is
at least ``section.min_isolation`` — else SandboxError says what is missing and how to fix it
(``check_floor``), before any worker starts.
"""
from __future__ import annotations

from diffucoder.sandbox.client import SandboxClient
from diffucoder.sandbox.config import SandboxConfig, SandboxSection
from diffucoder.sandbox.isolation import check_floor, choose_launch
from diffucoder.sandbox.pool import Sandbox


def check_sandbox(cfg: SandboxConfig, section: SandboxSection, where: str = "sandbox",
                  isolation_key: str = "isolation") -> str:
    """What ``open_sandbox`` checks first, without starting a pool: the floor, and that the service
    answers. Returns the layer; a stage calls it before loading a model."""
    if section.endpoint:
        SandboxClient(section.endpoint, cfg, batch_size=section.batch_size, retry_s=section.retry_s).close()
        layer = SandboxClient.isolation
    else:
        layer = choose_launch(cfg).name
    check_floor(layer, section.min_isolation, cfg, section=where, isolation_key=isolation_key)
    return layer


def open_sandbox(cfg: SandboxConfig, section: SandboxSection, where: str = "sandbox",
                 isolation_key: str = "isolation") -> Sandbox | SandboxClient:
    """``where`` / ``isolation_key``: the config keys named in errors (e.g. ``reward.sandbox``)."""
    if section.endpoint:
        sandbox = SandboxClient(section.endpoint, cfg, batch_size=section.batch_size,
                                max_in_flight=section.max_in_flight, retry_s=section.retry_s)
        layer = sandbox.isolation
    else:
        layer, sandbox = choose_launch(cfg).name, None
    try:
        check_floor(layer, section.min_isolation, cfg, section=where, isolation_key=isolation_key)
    except BaseException:
        if sandbox is not None:
            sandbox.close()
        raise
    return sandbox if sandbox is not None else Sandbox(cfg)
