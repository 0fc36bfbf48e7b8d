"""The README's cluster walkthrough, command by command, as far as a machine without a cluster allows.

Every file it names exists. Each command of the ``## On a Kubeflow cluster`` blocks is run
against the nearest real thing: ``kfp`` and ``diffucoder pipeline`` against an in-process
Kubeflow Pipelines API, ``helm install`` as an offline render with the same values, the image
build as a dry run, ``diffucoder store put`` against a real S3 server, the ``curl`` body and the
Python client snippet against ``diffucoder serve`` on 127.0.0.1. Commands that need a cluster
(``kubectl``, ``helm test``) are checked for the names they use, and a test fails on any
command this file does not know how to check.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from diffucoder import __version__

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SECTION = README[README.index("## On a Kubeflow cluster"):README.index("What was run and what was only checked")]
COMPILED = ROOT / "pipelines" / "compiled" / f"diffucoder-{__version__}.yaml"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", SECTION, flags=re.S)


def commands() -> list[str]:
    """The shell commands of the section: continuation lines joined, comments dropped."""
    out = []
    for block in blocks("bash"):
        text = re.sub(r"\\\n\s*", " ", block)
        for line in text.splitlines():
            line = line.split(" # ")[0].strip() if not line.lstrip().startswith("curl") else line.strip()
            if line and not line.startswith("#"):
                out.append(line)
    # curl's -d body spans lines inside its quotes: shlex joins them back
    joined, pending = [], ""
    for line in out:
        pending = f"{pending}\n{line}" if pending else line
        try:
            shlex.split(pending)
        except ValueError:
            continue
        joined.append(pending)
        pending = ""
    assert not pending, f"unbalanced quotes in README command: {pending!r}"
    return joined


def words(command: str) -> list[str]:
    parts = shlex.split(command.rstrip("&").strip())
    while parts and re.match(r"^[A-Z_]+=", parts[0]):
        parts = parts[1:]
    return parts


def kind(command: str) -> str:
    first = words(command)[:2]
    return " ".join(first) if first[0] in ("kfp", "helm", "diffucoder", "kubectl") else first[0]


def test_every_file_the_readme_names_exists():
    pattern = (r"(?<![\w/.-])((?:charts|pipelines|configs|images|manifests|components|benchmarks|src|tests)"
               r"/[\w./-]*[\w/])(?![\w<-])")   # a path; not a template such as diffucoder-<version>.yaml
    named = set(re.findall(pattern, README))
    assert {"charts/diffucoder/values-gpu.yaml", f"pipelines/compiled/diffucoder-{__version__}.yaml"} <= named
    missing = sorted(path for path in named if not (ROOT / path).exists())
    assert not missing, f"README names files that do not exist: {missing}"


def test_every_command_is_one_this_file_checks():
    known = {"images/build.sh", "helm install", "helm test", "kubectl -n", "kfp --endpoint", "URL=$(kubectl",
             "curl", "diffucoder store", "diffucoder pipeline", "diffucoder kube"}
    seen = set()
    for command in commands():
        key = "URL=$(kubectl" if command.startswith("URL=") else kind(command)
        assert key in known, f"README command not covered by tests/test_readme.py: {command}"
        seen.add(key)
    assert seen == known, f"the walkthrough lost commands this file checks: {sorted(known - seen)}"


def test_image_build_names_the_images_the_components_use():
    (command,) = [c for c in commands() if "images/build.sh" in c]
    env = {**os.environ, **dict(re.findall(r"^([A-Z_]+)=(\S+)", command))}
    result = subprocess.run(["bash", str(ROOT / "images" / "build.sh"), *words(command)[1:], "--dry-run"],
                            env=env, capture_output=True, text=True, timeout=120, check=True)
    registry = env["DIFFUCODER_IMAGE_REGISTRY"]
    for name in ("base", "train", "serve"):
        assert f"{registry}/diffucoder-{name}:{__version__}" in result.stdout


def test_helm_install_renders_with_the_same_values():
    from tests.platform.platform_support import render

    (command,) = [c for c in commands() if c.startswith("helm install")]
    parts = words(command)
    values: dict = {}
    for flag, value in zip(parts, parts[1:]):
        if flag == "-f":
            values.update(yaml.safe_load((ROOT / value).read_text()))
        elif flag == "--set":
            key, _, setting = value.partition("=")
            node = values
            *path, leaf = key.split(".")
            for part in path:
                node = node.setdefault(part, {})
            node[leaf] = setting
    namespace = parts[parts.index("-n") + 1]
    assert namespace == "ml-team" and parts[2:4] == ["diffucoder", "charts/diffucoder"]
    rendered = render(values)
    registry = values["images"]["registry"]
    images = {c["image"] for o in rendered.objects if o["kind"] == "Job"
              for c in o["spec"]["template"]["spec"]["containers"]}
    assert images and all(image.startswith(registry + "/") for image in images)
    assert rendered.find("ServiceAccount", "diffucoder-pipeline-runner")
    assert any(o["kind"] == "Pod" and "helm.sh/hook" in o["metadata"].get("annotations", {})
               for o in rendered.objects), "`helm test` needs the chart's test pod"


def test_cluster_only_commands_use_the_names_the_platform_creates():
    text = "\n".join(c for c in commands() if "kubectl" in c)
    from diffucoder_kfp.pipeline import diffucoder_pipeline
    params = diffucoder_pipeline.component_spec.inputs
    assert f"get inferenceservice {params['deploy_name'].default}" in text   # the deploy step's default name
    assert "get trainjobs,inferenceservices" in text
    assert "port-forward svc/ml-pipeline 8888:8888" in text


@pytest.fixture
def fake_kfp():
    from tests.pipelines.fake_kfp_server import FakeKFP
    with FakeKFP() as fake:
        yield fake


def _with_host(parts: list[str], host: str) -> list[str]:
    return [host if re.match(r"^http://127\.0\.0\.1:8888$", p) else p for p in parts]


def test_kfp_cli_commands_create_the_pipeline_and_runs(fake_kfp):
    from click.testing import CliRunner
    from kfp.cli.cli import cli

    from diffucoder_kfp.remote import read_pipeline_file

    declared = set(read_pipeline_file(COMPILED)["root"]["inputDefinitions"]["parameters"])
    runs = 0
    for command in (c for c in commands() if c.startswith("kfp ")):
        args = _with_host(words(command), fake_kfp.host)[1:]
        result = CliRunner().invoke(cli, args=args, obj={})
        assert result.exit_code == 0, (command, result.output, result.exception)
        if "run" in args[:3]:
            runs += 1
            params = fake_kfp.runs[-1]["runtime_config"]["parameters"]
            assert set(params) <= declared, f"{command}: unknown parameters {set(params) - declared}"
    assert runs == 2 and len(fake_kfp.pipelines) == 1
    first, from_instruct = (r["runtime_config"]["parameters"] for r in fake_kfp.runs)
    assert first["training_launcher"] == "trainjob" and first["deploy_min_pass_at_1"] == 0.6
    assert from_instruct["start_stage"] == "rl" and from_instruct["start_model"].startswith("s3://")


def test_project_cli_uploads_submits_and_renders(fake_kfp, capsys):
    from diffucoder.cli import main

    for command in (c for c in commands() if c.startswith("diffucoder pipeline") or c.startswith("diffucoder kube")):
        assert main(_with_host(words(command), fake_kfp.host)[1:]) == 0, command
    (run,) = fake_kfp.runs
    assert run["display_name"] == "first-run" and run["service_account"] == "diffucoder-pipeline-runner"
    assert run["runtime_config"]["parameters"]["training_launcher"] == "trainjob"
    assert "kind: TrainJob" in capsys.readouterr().out


@pytest.mark.s3
def test_store_put_uploads_a_model_the_run_can_start_from(s3_server, monkeypatch, tmp_path):
    from diffucoder.cli import main
    from diffucoder.serving.smoke import random_model_dir
    from diffucoder.stages.plan import passthrough_model

    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    (command,) = [c for c in commands() if c.startswith("diffucoder store put")]
    _, _, _, source, uri = words(command)
    random_model_dir(tmp_path / Path(source).name, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                     num_attention_heads=2, num_key_value_heads=1)
    uri = uri.replace("s3://diffucoder/", f"s3://{s3_server.bucket}/readme-{os.getpid()}/")
    monkeypatch.chdir(tmp_path)
    assert main(["store", "put", source, uri]) == 0
    assert passthrough_model(uri, "pretrain", "rl").uri == uri   # what start_model=... then checks


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``diffucoder serve`` on a micro model, with the server defaults the ServingRuntime uses."""
    from diffucoder.serving.smoke import ServerProcess, random_model_dir, server_command

    root = tmp_path_factory.mktemp("readme-serve")
    model = random_model_dir(root / "model", hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                             num_attention_heads=2, num_key_value_heads=1)
    server = ServerProcess(server_command(model, overrides=("access_log=false", "torch_threads=1")),
                           root / "server.log")
    server.start(timeout_s=120)
    yield server.url
    server.stop()


@pytest.mark.integration
def test_the_curl_request_is_answered(served):
    import httpx

    (command,) = [c for c in commands() if c.startswith("curl")]
    parts = words(command)
    url = parts[parts.index("-s") + 1].replace("$URL", served)
    headers = dict(h.split(": ", 1) for h in (parts[i + 1] for i, p in enumerate(parts) if p == "-H"))
    body = parts[parts.index("-d") + 1]
    reply = httpx.post(url, content=body, headers=headers, timeout=120)
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["role"] == "assistant"


@pytest.mark.integration
def test_the_python_client_snippet_runs(served, capsys):
    (snippet,) = blocks("python")
    exec(compile(snippet, "README.md", "exec"), {"URL": served})
    assert capsys.readouterr().out.endswith("\n")   # it got a reply and printed the answer
