"""``diffucoder kube``: render, launch and deploy the cluster objects from a shell.

    diffucoder kube render-job --preset 7b-gpu --stage pretrain --nodes 10 --gpus-per-node 8
    diffucoder kube render-job --preset 7b-gpu --stage sft --kind pytorchjob --run-name r1 \\
        --store-root s3://diffucoder --set training.checkpoint_pvc=ckpt train.steps=100
    diffucoder kube launch --preset tiny-cpu --stage pretrain --run-name r1 --store-root s3://diffucoder
    diffucoder kube render-isvc --preset 7b-gpu --model s3://diffucoder/runs/r1/sft   # pinned to its version
    diffucoder kube deploy --preset 7b-gpu --model s3://diffucoder/runs/r1/sft --name diffucoder-r1
    diffucoder kube render-runtime --preset 7b-gpu --namespace ml-team | kubectl apply -f -   # without the chart

``render-job`` prints the job as YAML, headed by a per-GPU memory estimate (YAML comments).
``render-isvc`` and ``deploy`` point ``storageUri`` at the model's published version
(``<artifact>/.versions/<v>``), never at the artifact's prefix, which also holds its other versions.
``--set key=value`` overrides ``configs/<preset>/cluster.yaml``; trailing ``key=value``
arguments go to the stage's recipe, as with ``diffucoder pretrain``. ``--data``/``--init``
default to the previous stage's output in ``<store-root>/runs/<run-name>/``.
Exit codes: 0 ok, 2 bad input, a failed job or deploy (the reason is printed).
"""
from __future__ import annotations

import argparse
import re
import sys

from diffucoder.errors import DiffucoderError
from diffucoder.kube.client import api_client, current_namespace
from diffucoder.kube.config import inference_spec, load_cluster_config, serving_runtime_spec
from diffucoder.kube.deploy import deploy
from diffucoder.kube.inference import model_storage_uri, render_inference_service, render_serving_runtime
from diffucoder.kube.launcher import launch
from diffucoder.kube.objects import to_yaml, write_manifest
from diffucoder.stages.cluster import render_stage_job
from diffucoder.stages.registry import TRAINING_STAGES, stage, stage_uri
from diffucoder.store.manifest import VERSIONS_DIR

_PINNED = re.compile(rf"/{re.escape(VERSIONS_DIR)}/[^/]+$")   # <artifact>/.versions/<version>


def _job_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="tiny-cpu", help="recipe preset (default tiny-cpu)")
    parser.add_argument("--stage", required=True, choices=TRAINING_STAGES, help="the training stage")
    parser.add_argument("--kind", choices=("trainjob", "pytorchjob"),
                        help="TrainJob (Kubeflow Trainer v2) or PyTorchJob (training operator)")
    parser.add_argument("--nodes", type=int, help="nodes of the job (training.stages.<stage>.nodes)")
    parser.add_argument("--gpus-per-node", type=int, help="GPUs per node")
    parser.add_argument("--name", help="job name (default <run-name>-<stage>)")
    parser.add_argument("--namespace", help="namespace (default: cluster.yaml, else the current one)")
    parser.add_argument("--run-name", default="r1", help="the run's folder in the store (default r1)")
    parser.add_argument("--store-root", default="s3://diffucoder",
                        help="artifact store root (default s3://diffucoder)")
    parser.add_argument("--data", help="data.uri (default: the previous stage's output)")
    parser.add_argument("--init", help="model.init_from (default: the previous model, if any)")
    parser.add_argument("--image", help="training image (default: diffucoder-train:<version>)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="cluster_set",
                        help="override configs/<preset>/cluster.yaml (repeatable)")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="recipe overrides")


def _cluster_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, else ~/.kube/config)")
    parser.add_argument("--context", help="kubeconfig context")
    parser.add_argument("--timeout", type=float, help="seconds (default: cluster.yaml)")
    parser.add_argument("--manifest-out", help="also write the object sent to this YAML file")


def _isvc_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="tiny-cpu", help="cluster defaults preset")
    parser.add_argument("--model", required=True,
                        help="the model artifact in the store (s3://.../runs/r1/rl, resolved in the store "
                             "to its published version) or one version of it (.../rl/.versions/<v>)")
    parser.add_argument("--name", default="diffucoder", help="InferenceService name")
    parser.add_argument("--namespace", help="namespace (default: cluster.yaml, else the current one)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="cluster_set",
                        help="override configs/<preset>/cluster.yaml (repeatable)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="<action>", required=True)
    _job_arguments(sub.add_parser("render-job", help="print a stage's TrainJob/PyTorchJob as YAML"))
    launch = sub.add_parser("launch", help="run a stage's job on the cluster and follow it")
    _job_arguments(launch)
    _cluster_arguments(launch)
    _isvc_arguments(sub.add_parser("render-isvc", help="print a model's InferenceService as YAML"))
    deploy = sub.add_parser("deploy", help="create/patch an InferenceService, wait for Ready")
    _isvc_arguments(deploy)
    _cluster_arguments(deploy)
    runtime = sub.add_parser("render-runtime",
                             help="print the ServingRuntime the chart installs (for chart-less clusters)")
    runtime.add_argument("--preset", default="tiny-cpu",
                         help="serve preset: configs/<preset>/serve.yaml and cluster.yaml's serving section")
    runtime.add_argument("--namespace", required=True, help="namespace of the runtime")
    runtime.add_argument("--image", help="serve image (default: diffucoder-serve:<version>)")
    runtime.add_argument("--gpus", type=int, help="GPUs of the runtime's default resources (serving.gpus)")
    runtime.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="cluster_set",
                         help="override configs/<preset>/cluster.yaml (repeatable)")


def main(args: argparse.Namespace) -> int:
    return {"render-job": _render_job, "launch": _launch, "render-isvc": _render_isvc,
            "deploy": _deploy, "render-runtime": _render_runtime}[args.action](args)


def _flag_values(args: argparse.Namespace, stage: str = "") -> dict[str, object]:
    """The shorthand flags as cluster.yaml values (``--set`` overrides come on top of them)."""
    keys = {"kind": "training.kind", "nodes": f"training.stages.{stage}.nodes",
            "gpus_per_node": f"training.stages.{stage}.gpus_per_node", "image": "training.image"}
    return {key: getattr(args, flag) for flag, key in keys.items() if getattr(args, flag, None) is not None}


def _namespace(args: argparse.Namespace, configured: str) -> str:
    return args.namespace or configured or current_namespace(
        kubeconfig=getattr(args, "kubeconfig", None), context=getattr(args, "context", None))


def build_job(args: argparse.Namespace):
    """(job object, size and memory estimate lines, cluster config) for the command line."""
    chosen = stage(args.stage)
    data = args.data or (stage_uri(args.store_root, args.run_name, chosen.data_from) if chosen.data_from else "")
    init = args.init if args.init is not None else \
        (stage_uri(args.store_root, args.run_name, chosen.init_from) if chosen.init_from else "")
    if not data:
        raise DiffucoderError(f"--data: no default input for stage {chosen.name!r}; give one")
    return render_stage_job(chosen, args.preset, store_root=args.store_root, run_name=args.run_name,
                            data_uri=data, init_from=init, overrides=args.overrides,
                            cluster=args.cluster_set, cluster_values=_flag_values(args, chosen.name),
                            name=args.name or "",
                            namespace=args.namespace or "", kubeconfig=getattr(args, "kubeconfig", None),
                            context=getattr(args, "context", None))


def _render_job(args: argparse.Namespace) -> int:
    job, lines, _ = build_job(args)
    sys.stdout.write("".join(f"# {line}\n" for line in lines) + to_yaml([job]))
    return 0


def _launch(args: argparse.Namespace) -> int:
    job, lines, cfg = build_job(args)
    for line in lines:
        print(f"[launch] {line}", flush=True)
    if args.manifest_out:
        write_manifest(args.manifest_out, [job])
    options = cfg.training.launch_options()
    if args.timeout:
        options["timeout_s"] = args.timeout
    result = launch(job, api_client=api_client(args.kubeconfig, args.context), **options)
    print(f"[launch] {result.kind} {result.namespace}/{result.name} succeeded after "
          f"{result.seconds:.0f} s ({'created' if result.created else 'adopted'}): {result.message}")
    return 0


def build_isvc(args: argparse.Namespace):
    """(the InferenceService of ``--model``, the cluster config). ``storageUri`` is always one
    published version: KServe's storage initializer downloads everything under the URI, and the
    artifact's prefix also holds its older versions (and, for a run folder, checkpoints). A
    version URI is taken as given (rendering needs no store then); an artifact URI is resolved in
    the store; a URI that is neither, or a store that cannot be read, is an error."""
    cfg = load_cluster_config(args.preset, args.cluster_set, values=_flag_values(args))
    model = args.model.rstrip("/")
    if _PINNED.search(model):
        uri = model
    else:
        try:
            uri = model_storage_uri(model)
        except DiffucoderError as err:
            raise DiffucoderError(f"--model {args.model}: cannot pin it to a published version ({err}); "
                                  f"give a model artifact in a readable store, or one version of it "
                                  f"(<artifact>/{VERSIONS_DIR}/<version>)") from None
    spec = inference_spec(cfg, name=args.name, namespace=_namespace(args, cfg.serving.namespace),
                          storage_uri=uri)
    return render_inference_service(spec), cfg


def _render_isvc(args: argparse.Namespace) -> int:
    isvc, _ = build_isvc(args)
    sys.stdout.write(to_yaml([isvc]))
    return 0


def _deploy(args: argparse.Namespace) -> int:
    isvc, cfg = build_isvc(args)
    if args.manifest_out:
        write_manifest(args.manifest_out, [isvc])
    result = deploy(isvc, api_client=api_client(args.kubeconfig, args.context),
                    timeout_s=args.timeout or cfg.serving.timeout_s, poll_s=cfg.serving.poll_s)
    print(f"[deploy] {result.action}: {result.url}")
    return 0


def _render_runtime(args: argparse.Namespace) -> int:
    gpus = {"serving.gpus": args.gpus} if args.gpus is not None else {}
    cfg = load_cluster_config(args.preset, args.cluster_set, values=gpus)
    spec = serving_runtime_spec(cfg, args.preset, namespace=args.namespace, image=args.image or "")
    sys.stdout.write(to_yaml([render_serving_runtime(spec)]))
    return 0
