"""Run the steps of a compiled pipeline as KFP's driver and launcher run them, each in a chosen
Python environment (the step contract tests).

    pipeline = CompiledPipeline.load(ROOT / "pipelines/compiled/diffucoder-0.1.0.yaml")
    run = PipelineRun(pipeline, {"preset": "tiny-cpu", "store_root": "file:///tmp/s"}, tmp_path)
    results = run.run_all(lambda image: envs[image_name(image)])  # every triggered task, in DAG order
    results["sft"].outputs["sft_model"].uri                         # what the next step receives
    run.execute("pretrain", env_for)                                # one task (upstream results needed)
    run.run_loop("for-loop-1", env_for)      # a ParallelFor: its body once per item, as "for-loop-1[i]/..."

Driver (the inputs of a task): pipeline parameters (the spec's defaults, then the given ones),
runtime constants (``{{$.pipeline_job_uuid}}`` -> the run's job id), upstream output parameters
and artifacts, a sub-DAG's channels, and the task's trigger condition; a ``dsl.ParallelFor``
(a task with a ``parameterIterator``) as the driver fans it out (driver.go ``DAG`` and
``resolveInputs``, 2.5.0): the loop task's inputs are resolved once, its items are the list
(or JSON list string, ``getItems``) in the input ``items.inputParameter``, and iteration ``i``
of the body sub-DAG gets the loop's inputs without that list and with the item as
``itemInput``; its tasks' paths are ``<loop>[i]/<task>``, iterations run one after the
other (``parallelismLimit`` only bounds Argo's concurrency); the step's pod
(``pod_spec``): image, resources, accelerator, node selector, tolerations and image pull Secrets
resolved from those inputs as ``initPodSpecPatch`` / ``extendPodSpecPatch`` do
(kubeflow/pipelines backend/src/v2/driver, 2.5.0: a resource or image given by a parameter is
read with ``GetStringValue``, so a number there resolves to ''). Launcher: kfp's own
helpers build the ExecutorInput (``kfp.local.executor_input_utils``) and substitute the
placeholders of the executor's ``command`` + ``args`` (``kfp.local.placeholder_utils``:
``{{$}}`` becomes the ExecutorInput JSON, as in the Go launcher's ``getPlaceholders``), the
output folders are made (``prepareOutputFolders``), the command runs as a subprocess with the
environment's ``python3`` first on PATH, and the outputs are read back from the executor
output file (``kfp.local.executor_output_utils``). Artifact URIs are local paths, as in
``kfp.local``: the launcher's download/upload to the object store is not emulated.
"""
from __future__ import annotations

import json
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml
from google.protobuf import json_format
from kfp import dsl
from kubernetes.utils.quantity import parse_quantity
from kfp.local import executor_input_utils, executor_output_utils, placeholder_utils
from kfp.pipeline_spec import pipeline_spec_pb2

STEP_TIMEOUT_S = 900
# The runtime placeholders the driver fills into constants (backend/src/v2/driver).
RUNTIME_VALUES = ("{{$.pipeline_job_uuid}}", "{{$.pipeline_job_name}}", "{{$.pipeline_task_name}}")
# The driver's pattern of a parameter in a pod spec field (driver/util.go inputPipelineChannelPattern);
# unanchored, as there: a field containing one is replaced by that parameter's value as a whole.
POD_SPEC_PARAMETER = re.compile(r"\$.inputs.parameters\['(.+?)'\]")
# An input parameter placeholder as a runtime constant: kfp's compiler copies the resource and
# image fields set from channels into the task's inputs; the driver passes such constants as they are.
INPUT_PLACEHOLDER = re.compile(r"^\{\{\$\.inputs\.parameters\['[^']+'\]\}\}$")
# One iteration of a ParallelFor in a task path: "for-loop-1[0]/curate-slice".
ITERATION = re.compile(r"^(?P<name>.+?)\[(?P<index>\d+)\]$")


class EmulationError(Exception):
    """The compiled pipeline uses something this emulation does not know; it says what."""


class UpstreamMissing(EmulationError):
    """A task needs the outputs of a task that has not run (or failed)."""


@dataclass
class Executor:
    label: str
    image: str
    command: list[str]
    args: list[str]
    env: dict[str, str]


@dataclass
class Task:
    path: str                  # "curate", "condition-1/deploy", "for-loop-1[0]/curate-slice"
    spec: dict                 # the PipelineTaskSpec (task in its DAG)
    component_name: str
    dag_path: str              # "" for the root DAG, else the sub-DAG task's path (or loop iteration's)

    @property
    def loop(self) -> dict | None:
        """The task's ``parameterIterator`` when it is a ParallelFor."""
        return self.spec.get("parameterIterator")


@dataclass
class StepResult:
    task: str
    executor: str
    image: str
    argv: list[str]
    returncode: int
    log: str
    seconds: float
    outputs: dict[str, Any] = field(default_factory=dict)

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.splitlines()[-lines:])


class CompiledPipeline:
    def __init__(self, ir: dict, platform: dict | None = None):
        self.ir, self.platform = ir, platform or {}

    @classmethod
    def load(cls, path: Path) -> "CompiledPipeline":
        docs = list(yaml.safe_load_all(Path(path).read_text()))
        return cls(docs[0], docs[1] if len(docs) > 1 else None)

    def executors(self) -> dict[str, Executor]:
        out = {}
        for label, spec in self.ir["deploymentSpec"]["executors"].items():
            if "container" not in spec:
                raise EmulationError(f"{label}: only container executors are emulated, got {sorted(spec)}")
            c = spec["container"]
            out[label] = Executor(label, c["image"], list(c.get("command", [])), list(c.get("args", [])),
                                  {e["name"]: e["value"] for e in c.get("env", [])})
        return out

    def component(self, name: str) -> dict:
        return self.ir["components"][name]

    def dag(self, dag_path: str) -> dict:
        """The DAG of the root ('') or of the sub-DAG task at ``dag_path``."""
        if not dag_path:
            return self.ir["root"]["dag"]
        task = self.task(dag_path)
        return self.component(task.component_name)["dag"]

    def task(self, path: str) -> Task:
        """The task at ``path``; a part ``loop[i]`` names iteration i of a ParallelFor's body."""
        parts, dag_path, dag = path.split("/"), "", self.ir["root"]["dag"]
        for depth, part in enumerate(parts):
            iteration = ITERATION.match(part)
            name = iteration["name"] if iteration else part
            if name not in dag["tasks"]:
                raise EmulationError(f"no task {name!r} in DAG {dag_path or 'root'} "
                                     f"(tasks: {', '.join(sorted(dag['tasks']))})")
            spec = dag["tasks"][name]
            if iteration and "parameterIterator" not in spec:
                raise EmulationError(f"{path}: {name} is not a ParallelFor, it has no iteration {part!r}")
            task = Task("/".join(parts[:depth + 1]), spec, spec["componentRef"]["name"], dag_path)
            if depth < len(parts) - 1:
                dag_path, dag = task.path, self.component(task.component_name)["dag"]
        return task

    def ordered_tasks(self, dag_path: str = "") -> list[Task]:
        """The tasks of one DAG, producers before consumers."""
        tasks = self.dag(dag_path)["tasks"]
        order, done = [], set()

        def visit(name: str, stack: tuple[str, ...] = ()) -> None:
            if name in done:
                return
            if name in stack:
                raise EmulationError(f"cycle in DAG {dag_path or 'root'}: {' -> '.join(stack + (name,))}")
            for upstream in upstream_tasks(tasks[name]):
                visit(upstream, stack + (name,))
            done.add(name)
            order.append(self.task(f"{dag_path}/{name}" if dag_path else name))

        for name in sorted(tasks):
            visit(name)
        return order

    def leaf_tasks(self, dag_path: str = "") -> list[str]:
        """Every step task (sub-DAGs flattened), producers first: "curate", "condition-1/deploy"."""
        out = []
        for task in self.ordered_tasks(dag_path):
            if "dag" in self.component(task.component_name):
                out += self.leaf_tasks(task.path)
            else:
                out.append(task.path)
        return out


def upstream_tasks(spec: dict) -> set[str]:
    names = set(spec.get("dependentTasks", []))
    inputs = spec.get("inputs", {})
    for kind, key in (("parameters", "taskOutputParameter"), ("artifacts", "taskOutputArtifact")):
        for value in inputs.get(kind, {}).values():
            if key in value:
                names.add(value[key]["producerTask"])
    return names


def evaluate_condition(expression: str, values: dict[str, Any]) -> bool:
    """A KFP trigger condition (a CEL expression over ``inputs.parameter_values``)."""
    python = re.sub(r"inputs\.parameter_values\['([^']+)'\]", r"_v['\1']", expression)
    python = python.replace("&&", " and ").replace("||", " or ")
    python = re.sub(r"!(?!=)", " not ", python)
    python = re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False", python))
    if re.search(r"[A-Za-z_]\w*\s*\(", re.sub(r"\b(int|double|string|not|and|or)\b", "", python)):
        raise EmulationError(f"trigger condition {expression!r}: a function this emulation does not know")
    try:
        return bool(eval(python, {"__builtins__": {}},  # noqa: S307  (our own compiled IR)
                         {"_v": values, "int": int, "double": float, "string": str}))
    except Exception as err:  # the condition names something not resolved: say which
        raise EmulationError(f"trigger condition {expression!r} ({python}): {err!r}") from None


class PipelineRun:
    """One run of a compiled pipeline: resolved inputs and the results of the tasks run so far."""

    def __init__(self, pipeline: CompiledPipeline, params: dict[str, Any], root: Path,
                 job_id: str = "contract-run", name: str = "contract"):
        self.pipeline, self.root, self.job_id, self.name = pipeline, Path(root), job_id, name
        declared = pipeline.ir["root"].get("inputDefinitions", {}).get("parameters", {})
        unknown = sorted(set(params) - set(declared))
        if unknown:
            raise EmulationError(f"the pipeline has no parameter(s) {', '.join(unknown)} "
                                 f"(it has: {', '.join(sorted(declared))})")
        self.params = {k: spec.get("defaultValue") for k, spec in declared.items() if "defaultValue" in spec}
        self.params.update(params)
        missing = sorted(set(declared) - set(self.params))
        if missing:
            raise EmulationError(f"pipeline parameter(s) {', '.join(missing)} have no default: give them")
        self.results: dict[str, StepResult] = {}    # succeeded
        self.failures: dict[str, StepResult] = {}   # ran and failed (with check=False)
        self.skipped: dict[str, str] = {}           # trigger condition false: why
        self.blocked: dict[str, str] = {}           # an upstream task did not succeed: which
        self.dag_inputs: dict[str, tuple[dict, dict]] = {"": (dict(self.params), {})}

    # -- driver -----------------------------------------------------------------------------

    def _constant(self, value: Any, task: Task) -> Any:
        if not isinstance(value, str):
            return value
        for placeholder, replacement in zip(RUNTIME_VALUES, (self.job_id, self.name, task.path.split("/")[-1])):
            value = value.replace(placeholder, replacement)
        if "{{$" in value and not INPUT_PLACEHOLDER.match(value):
            raise EmulationError(f"{task.path}: runtime placeholder in {value!r} is not emulated")
        return value

    def _sibling(self, task: Task, producer: str) -> StepResult:
        path = f"{task.dag_path}/{producer}" if task.dag_path else producer
        if path not in self.results:
            raise UpstreamMissing(f"{task.path} needs the outputs of {path}, which "
                                  f"{'failed' if path in self.failures else 'has not run'}")
        return self.results[path]

    def resolve(self, task: Task) -> tuple[dict[str, Any], dict[str, dsl.Artifact]]:
        """(parameters, artifacts) the driver hands to ``task``."""
        if task.dag_path not in self.dag_inputs:
            last = task.dag_path.rsplit("/", 1)[-1]
            if task.dag_path and not ITERATION.match(last) and self.pipeline.task(task.dag_path).loop:
                raise EmulationError(f"{task.path}: {task.dag_path} is a ParallelFor: name one of its "
                                     f"iterations ({task.dag_path}[i]/...; run_loop runs them)")
            raise EmulationError(f"{task.path}: its sub-DAG {task.dag_path} has not been entered")
        dag_params, dag_artifacts = self.dag_inputs[task.dag_path]
        params, artifacts = {}, {}
        for name, value in task.spec.get("inputs", {}).get("parameters", {}).items():
            if "componentInputParameter" in value:
                params[name] = dag_params[value["componentInputParameter"]]
            elif "runtimeValue" in value:
                params[name] = self._constant(value["runtimeValue"]["constant"], task)
            elif "taskOutputParameter" in value:
                ref = value["taskOutputParameter"]
                params[name] = self._sibling(task, ref["producerTask"]).outputs[ref["outputParameterKey"]]
            else:
                raise EmulationError(f"{task.path}: parameter {name} from {sorted(value)} is not emulated")
        for name, value in task.spec.get("inputs", {}).get("artifacts", {}).items():
            if "componentInputArtifact" in value:
                artifacts[name] = dag_artifacts[value["componentInputArtifact"]]
            elif "taskOutputArtifact" in value:
                ref = value["taskOutputArtifact"]
                artifacts[name] = self._sibling(task, ref["producerTask"]).outputs[ref["outputArtifactKey"]]
            else:
                raise EmulationError(f"{task.path}: artifact {name} from {sorted(value)} is not emulated")
        return params, artifacts

    def _input_spec(self, spec: dict, task: Task) -> Any:
        """One InputParameterSpec of the platform spec (node selector / toleration JSON, Secret names)."""
        if "componentInputParameter" in spec:
            return self.dag_inputs[task.dag_path][0][spec["componentInputParameter"]]
        if "taskOutputParameter" in spec:
            ref = spec["taskOutputParameter"]
            return self._sibling(task, ref["producerTask"]).outputs[ref["outputParameterKey"]]
        if "runtimeValue" in spec:
            return self._constant(spec["runtimeValue"]["constant"], task)
        raise EmulationError(f"{task.path}: platform parameter from {sorted(spec)} is not emulated")

    @staticmethod
    def _pod_string(value: str, params: dict[str, Any], what: str) -> str:
        """resolvePodSpecInputRuntimeParameter: a field naming a parameter becomes its string value."""
        match = POD_SPEC_PARAMETER.search(value)
        if not match:
            return value
        if match[1] not in params:
            raise EmulationError(f"{what}: the executor input has no parameter {match[1]!r}")
        resolved = params[match[1]]
        return resolved if isinstance(resolved, str) else ""   # structpb GetStringValue of a non-string

    def pod_spec(self, path: str) -> dict[str, Any]:
        """The main container's image and resources and the pod's placement, as the driver builds them."""
        task = self.pipeline.task(path)
        label = self.pipeline.component(task.component_name)["executorLabel"]
        container = self.pipeline.ir["deploymentSpec"]["executors"][label]["container"]
        params, _ = self.resolve(task)
        res = container.get("resources", {})
        requests, limits = {}, {}
        for field, old, target, unit in (("resourceMemoryLimit", "memoryLimit", limits, "G"),
                                         ("resourceMemoryRequest", "memoryRequest", requests, "G"),
                                         ("resourceCpuLimit", "cpuLimit", limits, ""),
                                         ("resourceCpuRequest", "cpuRequest", requests, "")):
            value = self._pod_string(res[field], params, f"{path} {field}") if res.get(field) else (
                f"{res[old]:g}{unit}" if res.get(old) else None)
            if value is None:
                continue
            try:
                parse_quantity(value)
            except ValueError:
                raise EmulationError(f"{path}: {field} {value!r} is not a quantity (the driver fails the step)") \
                    from None
            target["memory" if "Memory" in field else "cpu"] = value
        accelerator = res.get("accelerator")
        if accelerator:
            kind = self._pod_string(accelerator["resourceType"], params, f"{path} accelerator type") \
                if accelerator.get("resourceType") else accelerator.get("type", "")
            count = self._pod_string(accelerator["resourceCount"], params, f"{path} accelerator count") \
                if accelerator.get("resourceCount") else (str(accelerator["count"]) if accelerator.get("count") else "")
            if kind and count:
                parse_quantity(count)
                limits[kind] = count
        platform = self.pipeline.platform.get("platforms", {}).get("kubernetes", {}).get(
            "deploymentSpec", {}).get("executors", {}).get(label, {})
        node_selector = {}
        if "nodeSelector" in platform:
            spec = platform["nodeSelector"]
            node_selector = dict(self._input_spec(spec["nodeSelectorJson"], task) if "nodeSelectorJson" in spec
                                 else spec.get("labels", {}))
        tolerations = []
        for item in platform.get("tolerations", []):
            if "tolerationJson" in item:
                value = self._input_spec(item["tolerationJson"], task)
                tolerations += value if isinstance(value, list) else [value]
            else:
                tolerations.append(item)
        pull_secrets = [self._input_spec(s["secretNameParameter"], task) if "secretNameParameter" in s
                        else s["secretName"] for s in platform.get("imagePullSecret", [])]
        return {"image": self._pod_string(container["image"], params, f"{path} image"),
                "resources": {"requests": requests, "limits": limits}, "nodeSelector": node_selector,
                "tolerations": tolerations, "imagePullSecrets": pull_secrets}

    def loop_items(self, path: str) -> list[Any]:
        """The items the driver fans the ParallelFor at ``path`` out over (driver.DAG, 2.5.0: the
        loop task's resolved input ``items.inputParameter``, a list or a JSON list string)."""
        task = self.pipeline.task(path)
        if task.loop is None:
            raise EmulationError(f"{path} is not a ParallelFor (no parameterIterator)")
        items = task.loop["items"]
        if "inputParameter" not in items:   # raw (a list fixed at compile time): not used here
            raise EmulationError(f"{path}: loop items from {sorted(items)} are not emulated")
        value = self.resolve(task)[0][items["inputParameter"]]
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise EmulationError(f"{path}: items {value!r} are not a JSON list (the driver fails the "
                                     "loop)") from None
        if not isinstance(value, list):
            raise EmulationError(f"{path}: items of type {type(value).__name__} cannot be iterated "
                                 "(the driver fails the loop)")
        return value

    def enter_iteration(self, path: str, index: int) -> str:
        """Iteration ``index`` of the ParallelFor at ``path`` entered as the iteration driver does
        (resolveInputs with an iteration index): the loop's inputs without its items list, and
        item ``index`` as the ``itemInput`` (as it is: the driver's later conversion of a non-string
        item for a STRING input to its JSON text is not emulated). Its DAG path, ``<path>[index]``."""
        task = self.pipeline.task(path)
        items = self.loop_items(path)
        if not 0 <= index < len(items):
            raise EmulationError(f"{path}: iteration {index} of {len(items)} item(s)")
        params, artifacts = self.resolve(task)
        params = {k: v for k, v in params.items() if k != task.loop["items"]["inputParameter"]}
        params[task.loop["itemInput"]] = items[index]
        iteration = f"{path}[{index}]"
        self.dag_inputs[iteration] = (params, artifacts)
        return iteration

    def run_loop(self, path: str, env_for: Callable[[str], Any], extra_env: dict[str, str] | None = None,
                 check: bool = True) -> list[str]:
        """Every iteration of the ParallelFor at ``path``, one after the other (Argo runs up to
        ``parallelismLimit`` at once; the emulation runs them in order); the iterations' DAG
        paths. A loop with no items runs nothing (Argo skips the task: ``skipped``)."""
        task = self.pipeline.task(path)
        count = len(self.loop_items(path))
        if not count:
            self.skipped.update({leaf: f"ParallelFor {path} has no items"
                                 for leaf in self.pipeline.leaf_tasks(path)})
        iterations = [self.enter_iteration(path, index) for index in range(count)]
        for iteration in iterations:
            self.run_all(env_for, extra_env, check, iteration)
        return iterations

    def triggered(self, task: Task) -> bool:
        condition = task.spec.get("triggerPolicy", {}).get("condition", "")
        return not condition or evaluate_condition(condition, self.resolve(task)[0])

    # -- launcher ---------------------------------------------------------------------------

    def execute(self, path: str, env_for: Callable[[str], Any], extra_env: dict[str, str] | None = None,
                check: bool = True) -> StepResult:
        """Run one executor task as the launcher would, in ``env_for(image)`` (a ContractEnv)."""
        task = self.pipeline.task(path)
        component = self.pipeline.component(task.component_name)
        if "executorLabel" not in component:
            raise EmulationError(f"{path} is a sub-DAG, not a step")
        executor = self.pipeline.executors()[component["executorLabel"]]
        params, artifacts = self.resolve(task)
        spec = json_format.ParseDict(component, pipeline_spec_pb2.ComponentSpec())
        task_root = executor_input_utils.construct_local_task_root(
            pipeline_root=str(self.root), pipeline_resource_name=self.name,
            task_resource_name=path.replace("/", "."))
        executor_input = executor_input_utils.construct_executor_input(
            component_spec=spec, arguments={**params, **artifacts}, task_root=task_root,
            block_input_artifact=False)
        executor_input_dict = executor_input_utils.executor_input_to_dict(executor_input, spec)
        argv = placeholder_utils.replace_placeholders(
            full_command=executor.command + executor.args, executor_input_dict=executor_input_dict,
            pipeline_resource_name=self.name, task_resource_name=path.split("/")[-1],
            pipeline_root=str(self.root), unique_pipeline_id=self.job_id)
        left = [a for a in argv if "{{$" in a and "ephemeral_component.py" not in a]
        if left:
            raise EmulationError(f"{path}: placeholders left after substitution: {left}")
        for artifact_list in executor_input.outputs.artifacts.values():  # prepareOutputFolders
            for artifact in artifact_list.artifacts:
                Path(artifact.uri).parent.mkdir(parents=True, exist_ok=True)
        for parameter in executor_input.outputs.parameters.values():
            Path(parameter.output_file).parent.mkdir(parents=True, exist_ok=True)
        workdir = Path(task_root) / "home"
        workdir.mkdir(parents=True, exist_ok=True)
        image = self.pod_spec(path)["image"]
        env = env_for(image).env(HOME=str(workdir), **executor.env, **(extra_env or {}))
        start = time.monotonic()
        proc = subprocess.run(argv, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=STEP_TIMEOUT_S)
        result = StepResult(path, executor.label, image, argv, proc.returncode, proc.stdout,
                            time.monotonic() - start)
        if proc.returncode == 0:
            result.outputs = executor_output_utils.get_outputs_for_task(executor_input, spec)
            self.results[path] = result
        else:
            self.failures[path] = result
        if proc.returncode != 0 and check:
            raise AssertionError(f"step {path} ({executor.label} on {executor.image}) failed with exit "
                                 f"{proc.returncode}:\n{result.tail()}")
        return result

    def run_all(self, env_for: Callable[[str], Any], extra_env: dict[str, str] | None = None,
                check: bool = True, dag_path: str = "") -> dict[str, StepResult]:
        """Every task whose trigger holds, producers first; sub-DAGs entered and ParallelFors fanned
        out (``run_loop``) as the driver does.
        With ``check=False`` a failed step is recorded (``failures``) and the tasks that need
        its outputs are not run (``blocked``); tasks whose condition is false are ``skipped``."""
        for task in self.pipeline.ordered_tasks(dag_path):
            component = self.pipeline.component(task.component_name)
            leaves = self.pipeline.leaf_tasks(task.path) if "dag" in component else [task.path]
            try:
                if not self.triggered(task):
                    condition = task.spec["triggerPolicy"]["condition"]
                    self.skipped.update({leaf: f"condition of {task.path} is false: {condition}"
                                         for leaf in leaves})
                    continue
                if "artifactIterator" in task.spec:
                    raise EmulationError(f"{task.path}: an artifact iterator (the driver does not implement it)")
                if task.loop is not None:
                    self.run_loop(task.path, env_for, extra_env, check)
                elif "dag" in component:
                    self.dag_inputs[task.path] = self.resolve(task)
                    self.run_all(env_for, extra_env, check, task.path)
                else:
                    self.execute(task.path, env_for, extra_env, check)
            except UpstreamMissing as err:
                if check:
                    raise
                self.blocked.update({leaf: str(err) for leaf in leaves})
        return self.results
