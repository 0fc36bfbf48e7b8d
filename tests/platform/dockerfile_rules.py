"""The project's own Dockerfile rules, beside hadolint's general ones.

    from dockerfile_rules import instructions, rule_violations
    rule_violations(Path("images/base/Dockerfile").read_text())   # [] when clean

Rules: base images pinned to a version tag (never ``latest``; ``scratch`` is no image); the final USER a numeric
non-zero uid; no credential-looking ENV/ARG; ``pip install`` with ``--no-cache-dir`` and,
for the project, ``-c constraints.txt`` or ``--no-deps`` (its dependencies already installed
from a pinned requirements file); apt installs without recommends and with their
lists removed in the same layer.
"""
from __future__ import annotations

import re

SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL)", re.I)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out, pending = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def _from_violations(args: str, stage_names: set[str]) -> list[str]:
    parts = [p for p in args.split() if not p.startswith("--")]
    image = parts[0]
    if len(parts) >= 3 and parts[1].upper() == "AS":
        stage_names.add(parts[2])
    if image in stage_names or image == "scratch":   # a build stage, or the empty image: nothing pulled
        return []
    name, _, digest = image.partition("@")
    tag = name.rsplit("/", 1)[-1].partition(":")[2]
    if digest:
        return []
    if not tag:
        return [f"FROM {image}: no tag"]
    if tag == "latest" or not re.search(r"\d", tag):
        return [f"FROM {image}: tag {tag!r} is not a version"]
    return []


def rule_violations(text: str) -> list[str]:
    problems: list[str] = []
    stage_names: set[str] = set()
    users = []
    for keyword, args in instructions(text):
        if keyword == "FROM":
            problems += _from_violations(args, stage_names)
        elif keyword == "USER":
            users.append(args)
        elif keyword in ("ENV", "ARG"):
            for name in re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)(?==|\s|$)", args):
                if SECRET_NAME.search(name):
                    problems.append(f"{keyword} {name}: credentials must not be baked into images")
        elif keyword == "RUN":
            for command in re.split(r"&&|;", args):
                if re.search(r"\bpip3? install\b", command):
                    if "--no-cache-dir" not in command:
                        problems.append(f"pip install without --no-cache-dir: {command.strip()}")
                    if re.search(r"\s\.(\[|\s|\"|$)|\"\.\[", command) and "-c constraints.txt" \
                            not in command and "--no-deps" not in command:
                        problems.append(f"project installed without -c constraints.txt (or --no-deps "
                                        f"after a pinned requirements file): {command.strip()}")
                if "apt-get install" in command and "--no-install-recommends" not in command:
                    problems.append("apt-get install without --no-install-recommends")
            if "apt-get install" in args and "rm -rf /var/lib/apt/lists" not in args:
                problems.append("apt lists not removed in the layer that installs packages")
    if not users:
        problems.append("no USER: the image would run as root")
    else:
        user = users[-1].partition(":")[0]
        if not user.isdigit() or int(user) == 0:
            problems.append(f"final USER {users[-1]!r} is not a numeric non-root uid "
                            "(runAsNonRoot needs a number)")
    return problems
