"""``diffucoder doctor --cluster``: is this cluster ready for the README's walkthrough?

    diffucoder doctor --cluster --preset 7b-gpu --namespace ml-team
    diffucoder doctor --cluster --preset 7b-gpu --namespace ml-team \\
        --kfp-host http://127.0.0.1:8888 --store-endpoint http://127.0.0.1:9000 --json
    diffucoder doctor --cluster --preset 7b-gpu --set training.kind=pytorchjob

Prints one row per check (pass / fail / skip, what was found) and, under each failure, the
fix. The checks and what each reads are listed in ``diffucoder.kube.doctor``. ``--set`` takes
the same cluster.yaml overrides as the run's ``cluster_overrides``, so the check sees what
the steps will send. The KFP token is read from a file (``--kfp-token-file``, or kfp's
``KF_PIPELINES_SA_TOKEN_PATH``), never from the command line.
Exit codes: 0 every check passed (or was skipped), 1 a check failed, 2 bad input.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from diffucoder.errors import DiffucoderError
from diffucoder.kube.client import api_client, current_namespace
from diffucoder.kube.config import load_cluster_config
from diffucoder.kube.doctor import (FAIL, PIPELINE_RUNNER, CheckResult, DoctorSettings, healthy,
                                    run_checks)

TOKEN_ENV = "KF_PIPELINES_SA_TOKEN_PATH"  # kfp's own convention for a projected SA token


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cluster", action="store_true", required=True,
                        help="check the kubeconfig's cluster for the cluster walkthrough "
                             "(the only kind of check so far)")
    parser.add_argument("--preset", default="tiny-cpu", help="cluster defaults preset (default "
                                                             "tiny-cpu)")
    parser.add_argument("--namespace", help="where the chart is installed (default: cluster.yaml, "
                                            "else the kubeconfig context's)")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, else "
                                             "~/.kube/config)")
    parser.add_argument("--context", help="kubeconfig context")
    parser.add_argument("--kfp-host", default="",
                        help="KFP API, e.g. http://127.0.0.1:8888; default: read the version from "
                             "the ml-pipeline Deployment")
    parser.add_argument("--kfp-token-file", help=f"bearer token for --kfp-host (default: "
                                                 f"${TOKEN_ENV})")
    parser.add_argument("--kfp-namespace", default="kubeflow",
                        help="namespace of Kubeflow Pipelines (default kubeflow)")
    parser.add_argument("--kserve-namespace", default="",
                        help="namespace of KServe's controller (default: kserve, then kubeflow)")
    parser.add_argument("--knative-namespace", default="knative-serving",
                        help="namespace of Knative Serving (default knative-serving)")
    parser.add_argument("--store-root", default="s3://diffucoder",
                        help="the runs' store_root (default s3://diffucoder)")
    parser.add_argument("--store-secret", default="",
                        help="the store Secret (default: training.s3_secret of cluster.yaml)")
    parser.add_argument("--store-endpoint", default="",
                        help="reach the store here instead (e.g. a port-forward: "
                             "http://127.0.0.1:9000)")
    parser.add_argument("--runner-service-account", default=PIPELINE_RUNNER,
                        help=f"the runs' service account (default {PIPELINE_RUNNER})")
    parser.add_argument("--extended-resource-toleration", action="store_true",
                        help="the API server runs the ExtendedResourceToleration admission plugin "
                             "(GKE does): pods requesting nvidia.com/gpu tolerate its taint")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds per request (default 10)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        dest="cluster_set", help="override configs/<preset>/cluster.yaml "
                                                 "(repeatable)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def _token(path: str | None) -> str:
    path = path or os.environ.get(TOKEN_ENV)
    if not path:
        return ""
    try:
        return Path(path).read_text().strip()
    except OSError as err:
        raise DiffucoderError(f"--kfp-token-file: cannot read {path}: {err}") from None


def format_table(results: list[CheckResult]) -> str:
    width = max(len("CHECK"), *(len(r.name) for r in results))
    lines = [f"{'CHECK':<{width}}  RESULT  DETAIL"]
    for r in results:
        lines.append(f"{r.name:<{width}}  {r.status.upper():<6}  {r.detail}")
        if r.status == FAIL and r.fix:
            lines.append(f"{'':<{width}}  {'':<6}  fix: {r.fix}")
    failed = sum(r.status == FAIL for r in results)
    lines.append(f"{len(results) - failed} of {len(results)} checks passed or skipped, "
                 f"{failed} failed")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    if args.timeout <= 0:
        raise DiffucoderError(f"--timeout: must be > 0 seconds, got {args.timeout}")
    configured = load_cluster_config(args.preset, args.cluster_set).training.namespace
    namespace = args.namespace or configured or current_namespace(
        kubeconfig=args.kubeconfig, context=args.context)
    settings = DoctorSettings(
        namespace=namespace, preset=args.preset, cluster_overrides=tuple(args.cluster_set),
        kfp_host=args.kfp_host, kfp_token=_token(args.kfp_token_file),
        kfp_namespace=args.kfp_namespace, kserve_namespace=args.kserve_namespace,
        knative_namespace=args.knative_namespace, store_root=args.store_root,
        store_secret=args.store_secret, store_endpoint=args.store_endpoint,
        runner_service_account=args.runner_service_account,
        extended_resource_toleration=args.extended_resource_toleration, timeout_s=args.timeout)
    results = run_checks(api_client(args.kubeconfig, args.context), settings)
    if args.json:
        json.dump({"healthy": healthy(results), "namespace": namespace, "preset": args.preset,
                   "checks": [r.to_dict() for r in results]}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(f"diffucoder doctor --cluster: preset {args.preset}, namespace {namespace}")
        print(format_table(results))
    return 0 if healthy(results) else 1
