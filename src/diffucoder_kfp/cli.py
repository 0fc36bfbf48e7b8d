"""``diffucoder pipeline``: compile the DAG, run it on this machine with kfp's local runner, or
upload it to / start it on a Kubeflow Pipelines server.

    diffucoder pipeline compile [--output-dir DIR] [--with-revision] [--image-registry REG] [--image-pull-secret S]
        [--curate-pods N]
    diffucoder pipeline run-local --preset tiny-cpu --output runs/demo [--input DIR] [--no-serve]
    diffucoder pipeline run-local --start-stage rl --start-model file:///abs/store/models/instruct
    diffucoder pipeline upload --host URL --file pipelines/compiled/diffucoder-<version>.yaml \
        [--namespace PROFILE] [--token-file F | --cookie-file F] [--image-registry REG] [--image-pull-secret S]
    diffucoder pipeline submit --host URL --file ... --run-name NAME --param preset=7b-gpu \
        [--service-account diffucoder-pipeline-runner] [--namespace PROFILE] [...]

``run-local`` runs the same DAG as a cluster, with ``kfp.local.SubprocessRunner`` (each step a
subprocess of this Python), a local pipeline root and a ``file://`` artifact store under
``--output``. The deploy step renders the InferenceService (no cluster here); then, if the gate
let the model through, the model is served on 127.0.0.1 (``diffucoder serve``) and asked one
held-out task over the OpenAI-style chat route, the server stopped, and the answer printed with how
many of the task's tests it passes in the sandbox (scored as the evaluate step scores a sample). All of
it works from an installed distribution: the DAG and its components are this package.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import yaml
from kfp import compiler, local

from diffucoder.config import load_config
from diffucoder.config.recipes import recipe_path
from diffucoder.errors import DiffucoderError
from diffucoder.evaluation import EvaluateConfig, problem_from_record
from diffucoder.evaluation.scoring import score_answer
from diffucoder.serving.smoke import serve_and_ask
from diffucoder.stage_io import REF_FILE, read_ref
from diffucoder.stages.plan import check_start
from diffucoder.stages.registry import NAMES, START_STAGES, stage, stage_uri
from diffucoder.store import resolve
from diffucoder_kfp import remote
from diffucoder_kfp.compile import compile_pipeline
from diffucoder_kfp.pipeline import diffucoder_pipeline


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="<action>")
    comp = sub.add_parser("compile", help="compile the pipeline to versioned IR YAML")
    comp.add_argument("--output-dir", type=Path, default=Path("."),
                      help="where to write (default: the current directory; the project commits "
                           "pipelines/compiled/)")
    comp.add_argument("--with-revision", action="store_true",
                      help="put the git revision in the file name (as uploads do)")
    comp.add_argument("--image-registry", default=None,
                      help="registry of the steps' images and of the training jobs' image (default: "
                           "$DIFFUCODER_IMAGE_REGISTRY, else the project's)")
    comp.add_argument("--curate-pods", type=int, default=0, metavar="N",
                      help="spread the curation over pods: a ParallelFor per datatrove stage, at most N pods "
                           "at once, sized by the preset's curate.yaml (spread.*); default 0: one curate step")
    _add_pull_secret(comp)

    run = sub.add_parser("run-local", help="run the whole DAG here with kfp's local runner")
    run.add_argument("--preset", default="tiny-cpu", help="recipe preset in configs/ (default: %(default)s)")
    run.add_argument("--output", type=Path, default=Path("runs/demo"),
                     help="directory for the pipeline root and the file:// store (default: %(default)s)")
    run.add_argument("--input", default=None,
                     help="corpus to curate (default: the recipe's input.paths; for tiny-cpu, "
                          "this Python's standard library sources)")
    run.add_argument("--run-name", default=None, help="name of the run in the store (default: local-<time>)")
    run.add_argument("--set", dest="sets", action="append", default=[], metavar="STAGE.KEY=VALUE",
                     help="override a stage's recipe, e.g. --set curate.pack.seq_len=256 (repeatable)")
    run.add_argument("--start-stage", default="curate", choices=START_STAGES,
                     help="first stage that trains (default: %(default)s); later starts need --start-model")
    run.add_argument("--start-model", default="", help="store URI of the model the first stage starts from")
    run.add_argument("--midtrain", action="store_true",
                     help="mid-train the pre-trained model on the curated shards (off: the step passes it on)")
    run.add_argument("--deploy-min-pass-at-1", type=float, default=0.0,
                     help="the deploy gate: the RL model's pass@1 (0..1) must reach this (default: %(default)s, "
                          "so the tiny demo model, whose pass@1 is near 0, still goes through the deploy step)")
    run.add_argument("--no-serve", action="store_true", help="do not serve the deployed model at the end")
    _add_remote(sub)


def _add_pull_secret(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image-pull-secret", dest="image_pull_secrets", action="append", default=None,
                        metavar="SECRET", help="docker-registry Secret every step pulls its image with, in the "
                                               "steps' namespace (repeatable)")


def _add_remote_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", required=True,
                        help="Kubeflow Pipelines API, e.g. http://127.0.0.1:8888 (a port-forward of svc/ml-pipeline)")
    parser.add_argument("--file", required=True, help="compiled pipeline YAML")
    parser.add_argument("--version-name", default=None,
                        help="pipeline version name (default: from the file name and the content's digest)")
    parser.add_argument("--namespace", default=None,
                        help="profile namespace (multi-user Kubeflow): the pipeline, experiment and runs go there")
    parser.add_argument("--token-file", default=None,
                        help="file holding a bearer token, e.g. `kubectl create token` with audience "
                             "pipelines.kubeflow.org (default: $KF_PIPELINES_SA_TOKEN_PATH)")
    parser.add_argument("--cookie-file", default=None,
                        help="file holding the Cookie header of a logged-in Kubeflow session "
                             "(e.g. oauth2_proxy_kubeflow=...), for a host behind Kubeflow's ingress")
    parser.add_argument("--image-registry", default=None,
                        help="move the file's images to this registry before the upload")
    _add_pull_secret(parser)


def _add_remote(sub) -> None:
    up = sub.add_parser("upload", help="create the pipeline / a new version on a KFP server (idempotent)")
    _add_remote_arguments(up)
    run = sub.add_parser("submit", help="start a run of the uploaded pipeline version")
    _add_remote_arguments(run)
    run.add_argument("--run-name", required=True)
    run.add_argument("--experiment", default="diffucoder")
    run.add_argument("--service-account", default=None, help="e.g. diffucoder-pipeline-runner")
    run.add_argument("--param", dest="params", action="append", default=[], metavar="NAME=VALUE",
                     help="pipeline parameter; values are YAML (lists for *_overrides)")


def _stage_overrides(sets: list[str]) -> dict[str, list[str]]:
    per_stage: dict[str, list[str]] = {name: [] for name in NAMES}
    for item in sets:
        name, _, rest = item.partition(".")
        if name not in per_stage or "=" not in rest:
            raise DiffucoderError(f"--set {item!r}: expected STAGE.KEY=VALUE with STAGE in {list(NAMES)}")
        per_stage[name].append(rest)
    return per_stage


def run_local(preset: str, output: Path, input_uri: str | None, run_name: str | None,
              sets: list[str], start_stage: str = "curate", start_model: str = "",
              deploy_min_pass_at_1: float = 0.0, midtrain: bool = False) -> LocalRun:
    """Run the DAG locally; where its report is and what it deployed."""
    overrides = _stage_overrides(sets)
    check_start(start_stage, start_model)
    if not 0.0 <= deploy_min_pass_at_1 <= 1.0:
        raise DiffucoderError(f"--deploy-min-pass-at-1: must be in [0, 1], got {deploy_min_pass_at_1}")
    output = output.resolve()
    kfp_root = output / "kfp"
    kfp_root.mkdir(parents=True, exist_ok=True)
    store_root = (output / "store").as_uri()
    run_name = run_name or time.strftime("local-%Y%m%d-%H%M%S")
    print(f"diffucoder pipeline run-local: preset={preset} run={run_name} start_stage={start_stage}\n"
          f"  input: {input_uri or 'the recipe default (configs/' + preset + '/curate.yaml)'}\n"
          f"  store: {store_root}\n  kfp pipeline root: {kfp_root}\n"
          f"  deploy gate: pass@1 >= {deploy_min_pass_at_1}", flush=True)
    before = set(kfp_root.iterdir())
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(kfp_root))
    start = time.monotonic()
    try:
        diffucoder_pipeline(preset=preset, store_root=store_root, run_name=run_name,
                            curate_input=input_uri or "", start_stage=start_stage, start_model=start_model,
                            deploy_min_pass_at_1=deploy_min_pass_at_1, midtrain=midtrain,
                            **{f"{name}_overrides": overrides[name] for name in NAMES})
    except RuntimeError as err:  # kfp's local runner reports a failed step this way
        raise DiffucoderError(f"{err} (the step's own error is in its log above; "
                              f"its files are under {kfp_root})") from None
    elapsed = time.monotonic() - start
    new_dirs = sorted(set(kfp_root.iterdir()) - before)
    if not new_dirs:
        raise DiffucoderError(f"the local run wrote nothing under {kfp_root}")
    run_dir = new_dirs[-1]
    deployed = _deployed_model(run_dir)
    report = write_run_report(run_dir, output, run_name, store_root, elapsed)
    return LocalRun(report=report, run_dir=run_dir, store_root=store_root, run_name=run_name,
                    deployed_model=deployed, seconds=elapsed)


@dataclass
class LocalRun:
    report: Path
    run_dir: Path
    store_root: str
    run_name: str
    deployed_model: str     # storageUri of the rendered InferenceService ('' = the gate kept it back)
    seconds: float


def _deployed_model(run_dir: Path) -> str:
    """The storageUri of the InferenceService the deploy step rendered ('' if the gate kept it back)."""
    manifest = run_dir / "deploy" / "manifest"
    if not manifest.is_file():
        return ""
    for obj in yaml.safe_load_all(manifest.read_text()):
        if obj and obj.get("kind") == "InferenceService":
            return obj["spec"]["predictor"]["model"]["storageUri"]
    raise DiffucoderError(f"{manifest}: the deploy step wrote no InferenceService")


def ask_served_model(local_run: LocalRun, preset: str) -> tuple[str, str, str]:
    """Serve the deployed model on 127.0.0.1, ask one held-out task over the OpenAI chat route, stop;
    then run the answer against the task's tests as the evaluate step would. (question, answer,
    a line saying how many tests it passed)."""
    store, name = resolve(stage_uri(local_run.store_root, local_run.run_name, stage("sft").data_from))
    first = json.loads(store.open_file(name, "tasks-heldout.jsonl").decode().splitlines()[0])
    problem = problem_from_record("synthetic", first, "tasks-heldout.jsonl, line 1")
    # What KServe's storage initializer would copy to /mnt/models: the pinned version's files.
    model = local_run.deployed_model
    model = urllib.parse.urlparse(model).path if model.startswith("file://") else model
    answer = serve_and_ask(model, problem.instruction, chat=True, config=str(recipe_path(preset, "serve")),
                           overrides=("access_log=false",))
    sample = score_answer(load_config(EvaluateConfig, recipe_path(preset, "evaluate")), problem, answer)
    passed = round(sample["passed_fraction"] * sample["tests"])
    verdict = f"{sample['verdict']}: {passed}/{sample['tests']} of the task's tests pass"
    return problem.instruction, answer, verdict + (f" ({sample['message']})" if sample["message"] else "")


def step_names() -> dict[str, str]:
    """The DAG's task names (what the local runner names its directories, e.g. ``evaluate-2``) ->
    their display names (``evaluate-rl``), in the DAG's order."""
    with tempfile.TemporaryDirectory() as tmp:
        compiler.Compiler().compile(diffucoder_pipeline, f"{tmp}/p.yaml")
        ir = next(yaml.safe_load_all(Path(f"{tmp}/p.yaml").read_text()))
    steps, after = {}, {}

    def walk(tasks: dict, outer: list[str]) -> None:
        for name, task in tasks.items():
            deps = [*outer, *task.get("dependentTasks", [])]
            inner = ir["components"][task["componentRef"]["name"]].get("dag")
            if inner:                                   # a condition (the deploy gate)
                walk(inner["tasks"], deps)
            else:
                steps[name], after[name] = task["taskInfo"]["name"], deps

    walk(ir["root"]["dag"]["tasks"], [])
    depth: dict[str, int] = {}

    def level(name: str) -> int:
        if name not in depth:
            depth[name] = 1 + max((level(d) for d in after[name] if d in after), default=-1)
        return depth[name]

    return {name: steps[name] for name in sorted(steps, key=lambda n: (level(n), n))}


def write_run_report(run_dir: Path, output: Path, run_name: str, store_root: str,
                     elapsed_s: float) -> Path:
    """Gather each step's Markdown report, artifact references and parameter outputs into
    ``REPORT.md``, in the DAG's order (curate, placement, pretrain, midtrain, sft, evaluate-sft, rl,
    evaluate-rl, deploy)."""
    parts = [f"# DiffuCoder local run `{run_name}`\n",
             f"- kfp run directory: `{run_dir}`", f"- artifact store: `{store_root}`",
             f"- wall time: {elapsed_s:.0f} s\n"]
    shown = step_names()
    order = list(shown)
    ran = sorted((p for p in run_dir.iterdir() if p.is_dir()),
                 key=lambda p: (order.index(p.name) if p.name in order else len(order), p.name))
    for task_dir in ran:
        parts.append(f"## Step `{shown.get(task_dir.name, task_dir.name)}`\n")
        for ref in sorted(task_dir.glob(f"*/{REF_FILE}")):
            parts.append(f"- output `{ref.parent.name}`: `{read_ref(ref.parent)}`")
        outputs = task_dir / "executor_output.json"
        if outputs.is_file():   # parameter outputs (pass@1, the placement step's pods, the endpoint)
            for key, value in json.loads(outputs.read_text()).get("parameterValues", {}).items():
                parts.append(f"- output `{key}`: `{json.dumps(value)}`")
        report = task_dir / "report"
        if report.is_file():
            parts.append("\n" + report.read_text())
    path = output / "REPORT.md"
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(parts) + "\n")
    os.replace(tmp, path)
    return path


def main(args: argparse.Namespace) -> int:
    if args.action == "compile":
        print(compile_pipeline(args.output_dir, args.with_revision, args.image_registry or "",
                               args.image_pull_secrets or (), args.curate_pods))
        return 0
    if args.action == "run-local":
        done = run_local(args.preset, args.output, args.input, args.run_name, args.sets, args.start_stage,
                         args.start_model, args.deploy_min_pass_at_1, args.midtrain)
        print(f"\nPipeline finished in {done.seconds:.0f} s. Report: {done.report}")
        if not done.deployed_model:
            print("The deploy gate kept the model back (pass@1 below --deploy-min-pass-at-1): nothing to serve.")
        elif not args.no_serve:
            print(f"\nServing {done.deployed_model} on 127.0.0.1 (OpenAI-style chat completion, one held-out task):")
            question, answer, verdict = ask_served_model(done, args.preset)
            print(f"  user: {question}\n  assistant:\n" + "\n".join(f"    {line}" for line in answer.splitlines()))
            print(f"  the answer, tested in the sandbox: {verdict}")
            print("Server stopped.")
        return 0
    if args.action in ("upload", "submit"):
        client = remote.make_client(args.host, args.namespace, args.token_file, args.cookie_file)
        where = dict(namespace=args.namespace, image_registry=args.image_registry,
                     image_pull_secrets=args.image_pull_secrets)
        if args.action == "upload":
            up = remote.upload(client, args.file, args.version_name, **where)
            state = "created" if up.created else "already present (same content)"
            print(f"pipeline {up.pipeline_id} version {up.version_name} ({up.version_id}): {state}")
            return 0
        run_id = remote.submit(client, args.file, remote.parse_params(args.params), args.run_name,
                               args.experiment, args.version_name, args.service_account, **where)
        print(f"run {run_id} started{f' in {args.namespace}' if args.namespace else ''}")
        return 0
    raise DiffucoderError(f"unknown action {args.action!r}")
