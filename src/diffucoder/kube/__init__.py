"""Kubernetes side of the platform: multi-node training jobs and KServe deployment.

    from diffucoder import kube
    spec = kube.training_job_spec(kube.load_cluster_config("7b-gpu"), "pretrain",
                                  name="r1-pretrain", namespace="ml-team",
                                  command=kube.torchrun_command(["pretrain", "--preset", "7b-gpu", *overrides]))
    job = kube.render_trainjob(spec)                   # or render_pytorchjob(spec)
    result = kube.launch(job, api_client=kube.api_client(), timeout_s=86400, poll_s=30)

    isvc = kube.render_inference_service(kube.InferenceSpec(
        name="diffucoder-r1", namespace="ml-team",
        storage_uri=kube.model_storage_uri("s3://diffucoder/runs/r1/sft")))
    kube.deploy(isvc, api_client=kube.api_client(), timeout_s=900).url

Rendering needs no cluster (objects are plain dicts, checked against the CRD schemas in the
tests); ``launch``/``deploy`` use the official ``kubernetes`` client. This package knows the
Kubernetes API, not the stages: ``diffucoder.stages.cluster`` (a stage as a cluster job) and
``diffucoder.stages.deploy`` (the deploy stage) build on it, and ``diffucoder kube ...``
(``diffucoder.stages.kube_cli``) is the CLI.
"""
from diffucoder.kube.client import Cancelled, api_client, current_namespace, in_cluster
from diffucoder.kube.config import (ClusterConfig, NodeShape, image_ref, inference_spec,
                                    load_cluster_config, training_job_spec)
from diffucoder.kube.deploy import DeployError, DeployResult, deploy, isvc_state
from diffucoder.kube.inference import (InferenceSpec, ServingRuntimeSpec, model_storage_uri,
                                       render_inference_service, render_serving_runtime)
from diffucoder.kube.launcher import LaunchCancelled, LaunchError, LaunchResult, job_state, launch
from diffucoder.kube.objects import safe_name, to_yaml, write_manifest
from diffucoder.kube.training_job import (JOB_KINDS, TrainingJobSpec, render_job, render_pytorchjob,
                                          render_trainjob, torchrun_command)

__all__ = [
    "Cancelled", "ClusterConfig", "DeployError", "DeployResult", "InferenceSpec", "JOB_KINDS",
    "LaunchCancelled", "LaunchError", "LaunchResult", "NodeShape", "ServingRuntimeSpec", "TrainingJobSpec",
    "api_client", "current_namespace", "deploy", "image_ref", "in_cluster", "inference_spec", "isvc_state",
    "job_state", "launch", "load_cluster_config", "model_storage_uri", "render_inference_service", "render_job",
    "render_pytorchjob", "render_serving_runtime", "render_trainjob", "safe_name", "to_yaml",
    "torchrun_command", "training_job_spec", "write_manifest",
]
