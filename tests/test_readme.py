"""The README's cluster walkthroughs, command by command, as far as a machine without a cluster allows.

Every file it names exists. Each command of the ``## On a Kubeflow cluster`` blocks is run
against the nearest real thing, in the order the README gives them, per walkthrough:

- ``diffucoder ...``: every one parses with the real command line; ``diffucoder pipeline``
  compile / upload / submit and ``diffucoder kube`` run (against an in-process Kubeflow
  Pipelines API: standalone for the standalone walkthrough, multi-user with the token the
  walkthrough creates for the multi-user one), ``diffucoder store put`` against a real S3
  server; ``diffucoder doctor --cluster`` only parses (it needs a cluster: tests/kube covers it);
- ``kfp ...``: the kfp CLI itself against the same in-process API;
- ``helm install``: an offline render with the same values and namespace, ``helm test`` the
  same release and namespace;
- ``kubectl``: every object it names is one the chart renders, the deploy step creates, or a
  named part of the platform (KFP's API Service, the profile's editor account), in the namespace
  the chart was installed into;
- the image build as a dry run, the ``curl`` body and the Python client snippet against
  ``diffucoder serve`` on 127.0.0.1.

A test fails on any command this file does not know how to check.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import CliRunner
from kfp.cli.cli import cli as kfp_cli

from diffucoder import __version__
from diffucoder.cli import COMMANDS, main
from diffucoder.serving.smoke import ServerProcess, random_model_dir, server_command
from diffucoder.stages.plan import passthrough_model
from diffucoder_kfp.pipeline import diffucoder_pipeline
from diffucoder_kfp.remote import read_pipeline_file
from tests.pipelines.fake_kfp_server import FakeKFP
from tests.platform.platform_support import chart_sync

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SECTION = README[README.index("## On a Kubeflow cluster"):README.index("What was run and what was only checked")]
COMPILED = ROOT / "pipelines" / "compiled" / f"diffucoder-{__version__}.yaml"
WALKTHROUGHS = {"standalone": "### Standalone Kubeflow Pipelines", "multi-user": "### Multi-user Kubeflow",
                "calling": "### Calling the model", "runs": "### Runs and parameters"}
TOKEN = "readme-profile-token"
# Objects a kubectl command may name that the chart does not render: who makes them.
PLATFORM = {("svc", "ml-pipeline", "kubeflow"): "Kubeflow Pipelines' API",
            ("token", "default-editor", "ml-team"): "the Kubeflow profile's editor ServiceAccount"}


def part(name: str) -> str:
    start = SECTION.index(WALKTHROUGHS[name])
    later = [SECTION.index(t) for t in WALKTHROUGHS.values() if SECTION.index(t) > start]
    return SECTION[start:min(later, default=len(SECTION))]


def blocks(language: str, text: str = SECTION) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def commands(text: str = SECTION) -> list[str]:
    """The shell commands of ``text``: continuation lines joined, comments dropped."""
    out = []
    for block in blocks("bash", text):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split(" # ")[0].strip() if not line.lstrip().startswith("curl") else line.strip()
            if line and not line.startswith("#"):
                out.append(line)
    # curl's -d body spans lines inside its quotes: shlex joins them back
    result, pending = [], ""
    for line in out:
        pending = f"{pending}\n{line}" if pending else line
        try:
            shlex.split(pending)
        except ValueError:
            continue
        result.append(pending)
        pending = ""
    assert not pending, f"unbalanced quotes in README command: {pending!r}"
    return result


def words(command: str) -> list[str]:
    parts = shlex.split(command.rstrip("&").strip())
    while parts and re.match(r"^[A-Z_]+=", parts[0]):
        parts = parts[1:]
    return parts


def kind(command: str) -> str:
    if command.startswith("URL="):
        return "URL=$(kubectl"
    first = words(command)[:2]
    return " ".join(first) if first[0] in ("kfp", "helm", "diffucoder", "kubectl") else first[0]


def option(parts: list[str], name: str) -> str:
    return parts[parts.index(name) + 1]


def test_every_file_the_readme_names_exists():
    pattern = (r"(?<![\w/.-])((?:charts|pipelines|configs|images|manifests|components|benchmarks|src|tests)"
               r"/[\w./-]*[\w/])(?![\w<-])")   # a path; not a template such as diffucoder-<version>.yaml
    named = set(re.findall(pattern, README))
    assert {"charts/diffucoder/values-gpu.yaml", "images/build.sh"} <= named
    missing = sorted(path for path in named if not (ROOT / path).exists())
    assert not missing, f"README names files that do not exist: {missing}"


def test_every_command_is_one_this_file_checks():
    known = {"images/build.sh", "helm install", "helm test", "kubectl -n", "kfp --endpoint", "URL=$(kubectl",
             "curl", "diffucoder store", "diffucoder pipeline", "diffucoder kube", "diffucoder doctor"}
    seen = set()
    for command in commands():
        key = kind(command)
        assert key in known, f"README command not covered by tests/test_readme.py: {command}"
        seen.add(key)
    assert seen == known, f"the walkthrough lost commands this file checks: {sorted(known - seen)}"
    for name in ("standalone", "multi-user"):   # each walkthrough is whole on its own
        kinds = {kind(c) for c in commands(part(name))}
        assert {"helm install", "helm test", "diffucoder doctor", "diffucoder pipeline", "kfp --endpoint"} <= kinds


def parse(argv: list[str]) -> argparse.Namespace:
    """``diffucoder <argv>`` parsed as ``diffucoder.cli.main`` parses it, without running it."""
    module = importlib.import_module(COMMANDS[argv[0]][0])
    parser = argparse.ArgumentParser(prog=f"diffucoder {argv[0]}")
    parser.set_defaults(command=argv[0])
    module.add_arguments(parser)
    return parser.parse_args(argv[1:])


def test_every_diffucoder_command_parses_with_the_real_cli():
    found = [words(c)[1:] for c in commands() if kind(c).startswith("diffucoder ")]
    assert len(found) >= 11   # doctor, compile, upload, submit in each walkthrough; store, submit, kube
    for argv in found:
        parse(argv)   # argparse exits on an unknown option or a missing argument


def helm_values(parts: list[str]) -> dict:
    """The values of ``helm install`` flags: ``-f`` files, ``--set`` with helm's list and bool syntax."""
    values: dict = {}
    for flag, value in zip(parts, parts[1:]):
        if flag == "-f":
            values.update(yaml.safe_load((ROOT / value).read_text()))
        elif flag == "--set":
            key, _, raw = value.partition("=")
            setting = raw[1:-1].split(",") if raw.startswith("{") else yaml.safe_load(raw)
            node = values
            *path, leaf = key.split(".")
            for step in path:
                node = node.setdefault(step, {})
            node[leaf] = setting
    return values


def installs() -> dict[str, tuple[str, dict]]:
    """walkthrough -> (namespace, values) of its ``helm install``."""
    out = {}
    for name in ("standalone", "multi-user"):
        (command,) = [c for c in commands(part(name)) if c.startswith("helm install")]
        parts = words(command)
        assert parts[2:4] == ["diffucoder", "charts/diffucoder"]
        out[name] = (option(parts, "-n"), helm_values(parts))
    return out


@pytest.fixture(scope="module")
def rendered():
    return {name: (namespace, values, [o for objs in chart_sync.render_chart(values, namespace=namespace).values()
                                       for o in objs])
            for name, (namespace, values) in installs().items()}


def test_each_helm_install_renders_where_its_steps_run(rendered):
    """Standalone KFP runs steps in kubeflow, multi-user in the profile: the chart goes there, its
    images come from the registry the walkthrough built into, and helm test finds its test pod."""
    assert rendered["standalone"][0] == "kubeflow" and rendered["multi-user"][0] == "ml-team"
    for name, (namespace, values, objects) in rendered.items():
        registry = values["images"]["registry"]
        images = {c["image"] for o in objects if o["kind"] in ("Job", "StatefulSet", "Pod")
                  for c in (o["spec"].get("template", {}).get("spec") or o["spec"])["containers"]}
        assert images and all(image.startswith(registry + "/") for image in images), (name, images)
        runner = [o for o in objects if o["kind"] == "ServiceAccount" and o["metadata"]["name"] == "diffucoder-pipeline-runner"]
        assert runner and runner[0]["metadata"]["namespace"] == namespace
        assert runner[0]["imagePullSecrets"] == [{"name": s} for s in values["images"]["pullSecrets"]]
        assert any(o["kind"] == "Pod" and "helm.sh/hook" in o["metadata"].get("annotations", {}) for o in objects)
        uploads = [o for o in objects if o["kind"] == "Job" and "pipeline-upload" in o["metadata"]["name"]]
        assert len(uploads) == (0 if name == "multi-user" else 1), name   # multi-user: uploaded with your identity
        (test,) = [c for c in commands(part(name)) if c.startswith("helm test")]
        assert words(test)[2:] == ["diffucoder", "-n", namespace]


def test_kubectl_names_what_the_chart_the_steps_or_the_platform_make(rendered):
    deploy_name = diffucoder_pipeline.component_spec.inputs["deploy_name"].default
    for name in ("standalone", "multi-user"):
        namespace, _, objects = rendered[name]
        chart = {(o["kind"].lower(), o["metadata"]["name"]) for o in objects}
        for command in (c for c in commands(part(name)) if "kubectl" in c):
            parts = words(command.split("$(", 1)[1].rstrip(')"')) if command.startswith("URL=") else words(command)
            ns, verb, rest = option(parts, "-n"), parts[3], parts[4:]
            if verb == "port-forward":
                target = tuple(rest[0].split("/")) + (ns,)
                assert target in PLATFORM, command
            elif verb == "create" and rest[0] == "token":
                assert ("token", rest[1], ns) in PLATFORM and ns == namespace, command
                assert option(parts, "--audience") == "pipelines.kubeflow.org"
            elif verb == "get" and "," in rest[0]:
                assert rest[0] == "trainjobs,inferenceservices" and ns == namespace, command
            elif verb == "get":
                assert (rest[0], rest[1]) == ("inferenceservice", deploy_name) and ns == namespace, command
            else:
                pytest.fail(f"kubectl command not checked: {command}")
            assert ns in (namespace, "kubeflow"), command
        for command in (c for c in commands(part(name)) if kind(c) == "diffucoder doctor"):
            args = parse(words(command)[1:])
            assert args.namespace == namespace and args.preset == "7b-gpu" and args.kfp_host == "http://127.0.0.1:8888"
        accounts = {option(words(c), "--service-account") for c in commands(part(name)) + commands(part("runs"))
                    if "--service-account" in c}
        assert accounts and all(("serviceaccount", a) in chart for a in accounts), accounts   # runs use the chart's


def test_image_build_names_the_images_the_chart_and_components_use():
    (command,) = [c for c in commands() if "images/build.sh" in c]
    env = {**os.environ, **dict(re.findall(r"^([A-Z_]+)=(\S+)", command))}
    result = subprocess.run(["bash", str(ROOT / "images" / "build.sh"), *words(command)[1:], "--dry-run"],
                            env=env, capture_output=True, text=True, timeout=120, check=True)
    registry = env["DIFFUCODER_IMAGE_REGISTRY"]
    for name in ("base", "train", "serve"):
        assert f"{registry}/diffucoder-{name}:{__version__}" in result.stdout
    minio_tag = yaml.safe_load((ROOT / "charts/diffucoder/values.yaml").read_text())["minio"]["image"]["tag"]
    assert f"{registry}/diffucoder-minio:{minio_tag}" in result.stdout
    for _, values in installs().values():
        assert values["images"]["registry"] == registry


def _with_host(parts: list[str], host: str) -> list[str]:
    return [re.sub(r"^http://127\.0\.0\.1:8888", host, p) for p in parts]


def run_walkthrough(name: str, fake, tmp_path, monkeypatch) -> list[str]:
    """Run the walkthrough's kfp and diffucoder pipeline / kube commands in order, in ``tmp_path``."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "kfp-token").write_text(TOKEN + "\n")
    ran = []
    for command in commands(part(name)):
        if kind(command) not in ("kfp --endpoint", "diffucoder pipeline", "diffucoder kube"):
            continue
        parts = _with_host(words(command.replace('"$(cat kfp-token)"', TOKEN)), fake.host)
        if parts[0] == "kfp":
            result = CliRunner().invoke(kfp_cli, args=parts[1:], obj={})
            assert result.exit_code == 0, (command, result.output, result.exception)
        else:
            assert main(parts[1:]) == 0, command
        ran.append(" ".join(parts[:3]))
    return ran


def check_runs(fake, runs: list[dict], namespace: str) -> None:
    """The smoke run (kfp CLI, the compiled file inline) and the 7B run (diffucoder, the uploaded
    version): both in ``namespace``, both in the walkthrough's registry with its pull Secret."""
    declared = set(read_pipeline_file(COMPILED)["root"]["inputDefinitions"]["parameters"])
    smoke, first = runs
    assert smoke["display_name"] == "smoke" and first["display_name"] == "first-run"
    for run in runs:
        params = run["runtime_config"]["parameters"]
        assert set(params) <= declared and run["namespace"] == namespace
    assert smoke["runtime_config"]["parameters"] == {"preset": "tiny-cpu", "deploy_mode": "render"}
    inline = json.dumps(smoke["pipeline_spec"])
    assert "registry.example.com/ml/diffucoder-base" in inline and "ghcr.io" not in inline and "regcred" in inline
    assert first["service_account"] == "diffucoder-pipeline-runner"
    assert first["runtime_config"]["parameters"]["training_launcher"] == "trainjob"
    assert first["runtime_config"]["parameters"]["deploy_min_pass_at_1"] == 0.6
    (pipeline,) = fake.pipelines.values()
    assert pipeline["namespace"] == namespace
    (version,) = [v for v in fake.versions[pipeline["pipeline_id"]] if v["display_name"] != "diffucoder"]
    uploaded = fake.uploads[version["pipeline_version_id"]]
    assert "registry.example.com/ml/diffucoder-base" in uploaded and "ghcr.io" not in uploaded
    assert "secretName: regcred" in uploaded


def test_the_standalone_walkthrough_runs_against_a_standalone_kfp(tmp_path, monkeypatch, capsys):
    with FakeKFP() as fake:
        ran = run_walkthrough("standalone", fake, tmp_path, monkeypatch)
        assert [r.split()[0] for r in ran].count("kfp") == 2
        # "Runs and parameters" continues from here: the same compiled file, the same server
        for command in commands(part("runs")):
            parts = _with_host(words(command), fake.host)
            if parts[:2] in (["diffucoder", "pipeline"], ["diffucoder", "kube"]):
                assert main(parts[1:]) == 0, command
        smoke, first, from_instruct = fake.runs
        check_runs(fake, [smoke, first], "")
    params = from_instruct["runtime_config"]["parameters"]
    assert params["start_stage"] == "rl" and params["start_model"].startswith("s3://")
    assert "kind: TrainJob" in capsys.readouterr().out


def test_the_multi_user_walkthrough_runs_against_a_multi_user_kfp(tmp_path, monkeypatch):
    """A profile identity (the walkthrough's token) that may use ml-team only; shared pipelines refused."""
    with FakeKFP(multi_user=True, require_namespace=True, identities={f"Bearer {TOKEN}": {"ml-team"}}) as fake:
        ran = run_walkthrough("multi-user", fake, tmp_path, monkeypatch)
        assert [r.split()[0] for r in ran].count("kfp") == 2
        check_runs(fake, fake.runs, "ml-team")
        assert all(header == f"Bearer {TOKEN}" for header in fake.auth_headers)   # every call carried it


@pytest.mark.s3
def test_store_put_uploads_a_model_the_run_can_start_from(s3_server, monkeypatch, tmp_path):
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
