"""Which isolation layers work on this machine, and the command that starts a worker.

    for layer in probe_layers(): print(layer.name, layer.available, layer.detail)
    launch = choose_launch(SandboxConfig(strict=True))   # raises SandboxError if none fits
    launch.layer, launch.argv(), launch.switch_uid
    check_floor(launch.name, "auto", cfg)     # SandboxError saying what is missing and how to fix it

Layers, strongest first:
- ``bwrap``: bubblewrap — new network (loopback only), PID, IPC and UTS namespaces, a
  read-only view of /usr, /etc and the interpreter, a private size-capped /tmp, no /home,
  /root or project tree. As root the zygote keeps only the capabilities to switch uids,
  own and clear the job directory and kill the job (setuid, setgid, chown, fowner,
  dac_override, kill); the jobs, under non-zero uids, have none. Without root: a user
  namespace, ``bwrap-userns``, one uid for everything.
- ``unshare-n+uid``: ``unshare`` new network, PID, IPC and UTS namespaces (root only);
  the host filesystem, read and written as the job's unprivileged uid.
- ``rlimits-only``: no namespaces (refused in strict mode: the network is reachable). As
  root, jobs still run under uids of their own; without root they run as you and can
  signal your processes — use it only to debug trusted code.
In every layer each job's processes run under unprivileged uids of their own (when root)
with rlimits, a scrubbed environment and a wall-clock kill; the interpreter inside is the
system one, and needs only its standard library.
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

from diffucoder.sandbox.config import AUTO_FLOOR, LAYER_ALIASES, SandboxConfig, layer_rank
from diffucoder.sandbox.inside import bootstrap_source
from diffucoder.sandbox.results import SandboxError

ORDER = ("bwrap", "unshare-n+uid", "rlimits-only")
FORCED = {"bwrap": "bwrap", "unshare": "unshare-n+uid", "none": "rlimits-only"}
CHILD_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


@dataclass(frozen=True)
class LayerStatus:
    name: str
    available: bool
    network_isolated: bool
    detail: str


def sandbox_python(configured: str = "") -> str:
    """The interpreter that runs inside: configured, else /usr/bin/python3, else the
    venv's base interpreter (the sandbox needs only the standard library)."""
    for candidate in (configured, "/usr/bin/python3", getattr(sys, "_base_executable", ""),
                      sys.executable):
        if candidate and os.access(candidate, os.X_OK):
            return os.path.realpath(candidate)
    raise SandboxError("no Python interpreter found for the sandbox (set python=...)")


def _is_root() -> bool:
    return os.geteuid() == 0


def bwrap_argv(python: str, tmp_mb: int) -> list[str]:
    argv = ["bwrap", "--die-with-parent", "--new-session", "--unshare-net", "--unshare-pid",
            "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox"]
    if _is_root():  # real uids below us: keep only what the zygote needs to switch to them
        argv += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
                 "--cap-add", "CAP_CHOWN", "--cap-add", "CAP_KILL", "--cap-add", "CAP_DAC_OVERRIDE",
                 "--cap-add", "CAP_FOWNER"]
    else:
        argv += ["--unshare-user"]
    argv += ["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
    for path in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    prefix = os.path.dirname(os.path.dirname(python))
    if not prefix.startswith("/usr"):  # an interpreter installed elsewhere (pyenv, /opt)
        argv += ["--ro-bind", prefix, prefix]
    argv += ["--proc", "/proc", "--dev", "/dev", "--size", str(tmp_mb << 20), "--tmpfs", "/tmp",
             "--chdir", "/", "--clearenv"]
    for key, value in CHILD_ENV.items():
        argv += ["--setenv", key, value]
    return argv


UNSHARE_ARGV = ["unshare", "--net", "--ipc", "--uts", "--pid", "--fork", "--kill-child",
                "--mount-proc"]


def layer_prefix(layer: str, python: str, tmp_mb: int) -> list[str]:
    if layer == "bwrap":
        return bwrap_argv(python, tmp_mb)
    if layer == "unshare-n+uid":
        return list(UNSHARE_ARGV)
    return []


def _try(argv: list[str]) -> str:
    """'' if the command ran and exited 0, else why not."""
    try:
        proc = subprocess.run(argv, env=CHILD_ENV, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return str(err)
    if proc.returncode != 0:
        return (proc.stderr.decode(errors="replace").strip() or f"exit {proc.returncode}")[:300]
    return ""


@functools.lru_cache(maxsize=8)
def probe_layers(python: str = "", tmp_mb: int = 64) -> tuple[LayerStatus, ...]:
    """Try each layer for real (a no-op Python inside it). Cached per process."""
    python = sandbox_python(python)
    check = [python, "-I", "-S", "-c", "import socket, ctypes"]
    out = []
    if shutil.which("bwrap") is None:
        out.append(LayerStatus("bwrap", False, True, "bwrap not installed (Debian: bubblewrap)"))
    else:
        why = _try(bwrap_argv(python, tmp_mb) + check)
        out.append(LayerStatus("bwrap", not why, True, why or "namespaces + read-only system"
                               + ("" if _is_root() else " (user namespace, single uid)")))
    if shutil.which("unshare") is None:
        out.append(LayerStatus("unshare-n+uid", False, True, "unshare not installed"))
    elif not _is_root():
        out.append(LayerStatus("unshare-n+uid", False, True, "needs root"))
    else:
        why = _try(UNSHARE_ARGV + check)
        out.append(LayerStatus("unshare-n+uid", not why, True,
                               why or "network + PID namespaces, unprivileged uids"))
    out.append(LayerStatus("rlimits-only", True, False,
                           "rlimits" + (" + unprivileged uids" if _is_root() else "")
                           + "; the network is reachable"))
    return tuple(out)


@dataclass(frozen=True)
class Launch:
    layer: str
    python: str
    prefix: tuple[str, ...]

    @property
    def name(self) -> str:
        return "bwrap-userns" if self.layer == "bwrap" and not _is_root() else self.layer

    @property
    def switch_uid(self) -> bool:
        return _is_root()

    @property
    def pid_namespace(self) -> bool:
        return self.layer in ("bwrap", "unshare-n+uid")

    def argv(self) -> list[str]:
        return [*self.prefix, self.python, "-I", "-S", "-B", "-c", bootstrap_source()]


def choose_launch(cfg: SandboxConfig) -> Launch:
    python = sandbox_python(cfg.python)
    layers = {s.name: s for s in probe_layers(cfg.python, cfg.tmp_mb)}
    if cfg.isolation == "auto":
        chosen = next(layers[name] for name in ORDER if layers[name].available)
    else:
        chosen = layers[FORCED[cfg.isolation]]
        if not chosen.available:
            raise SandboxError(f"isolation '{cfg.isolation}' is not available: {chosen.detail}")
    if cfg.strict and not chosen.network_isolated:
        why = "; ".join(f"{s.name}: {s.detail}" for s in layers.values() if not s.available)
        raise SandboxError(f"strict mode: no network isolation available ({why})")
    return Launch(chosen.name, python, tuple(layer_prefix(chosen.name, python, cfg.tmp_mb)))


def strongest_available(cfg: SandboxConfig) -> str:
    """The layer ``isolation: auto`` runs under here (``bwrap-userns`` for bwrap without root)."""
    best = next(s.name for s in probe_layers(cfg.python, cfg.tmp_mb) if s.available)
    return "bwrap-userns" if best == "bwrap" and not _is_root() else best


def floor_of(min_isolation: str, cfg: SandboxConfig) -> str:
    """The weakest layer ``min_isolation`` accepts: ``auto`` = the strongest available here, and
    never below ``AUTO_FLOOR`` (a layer that cuts the network)."""
    if min_isolation == "auto":
        return max(strongest_available(cfg), AUTO_FLOOR, key=layer_rank)
    return LAYER_ALIASES.get(min_isolation, min_isolation)


def check_floor(layer: str, min_isolation: str, cfg: SandboxConfig, section: str | None = "sandbox",
                isolation_key: str = "isolation", min_key: str = "") -> None:
    """Refuse (SandboxError) when ``layer`` is weaker than ``min_isolation`` allows, saying what is
    missing and how to fix it. The message names the settings: ``<section>.min_isolation``,
    ``<section>.endpoint`` (``section`` None: a setting with no endpoint, the service itself;
    ``min_key`` then names the floor) and ``isolation_key``."""
    floor = floor_of(min_isolation, cfg)
    if layer_rank(layer) >= layer_rank(floor):
        return
    min_key = min_key or f"{section}.min_isolation"
    wanted = (f"{min_key} is 'auto', i.e. the strongest layer available here and at least "
              f"{AUTO_FLOOR}: '{floor}'" if min_isolation == "auto" else f"{min_key} is '{min_isolation}'")
    fixes = []
    if floor == "service" and section is not None:
        missing = f"no sandbox service is configured ({section}.endpoint is empty)"
        fixes.append(f"deploy the sandbox service (the Helm chart's sandbox Deployment: "
                     f"sandbox.service.enabled=true, Service diffucoder-sandbox) and set "
                     f"{section}.endpoint=http://diffucoder-sandbox:8080")
    else:
        down = [f"{s.name}: {s.detail}" for s in probe_layers(cfg.python, cfg.tmp_mb) if not s.available]
        missing = "no stronger layer works here" + (f" ({'; '.join(down)})" if down else "")
        if cfg.isolation != "auto" and layer_rank(strongest_available(cfg)) >= layer_rank(floor):
            missing = f"{isolation_key}={cfg.isolation} forces it"
            fixes.append(f"let the sandbox pick the strongest layer: {isolation_key}=auto")
        else:
            fixes.append("install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap) with "
                         "unprivileged user namespaces allowed")
        if section is not None:
            fixes.append(f"run the code in the sandbox service: {section}.endpoint=http://HOST:PORT "
                         f"(diffucoder sandbox serve)")
    fixes.append(f"or accept the weaker layer explicitly: {min_key}={layer}")
    raise SandboxError(f"refusing to run model-written code under '{layer}': {wanted}, and "
                       f"{missing}. Fix: " + "; ".join(fixes))


def tasks_of_uid(uid: int) -> int:
    """Threads running as ``uid`` on this machine (RLIMIT_NPROC counts them all)."""
    total = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid == uid:
                    total += len(os.listdir(f"/proc/{name}/task"))
            except OSError:
                continue
    return total
