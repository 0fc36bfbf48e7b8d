"""What every component's tests share: compiling a component, and stand-ins for upstream steps.

    ir, executor = compile_component(pretrain, tmp_path)
    ref = model_reference(uri="file:///.../sft")     # inside a test pipeline
"""
from pathlib import Path

import yaml
from kfp import compiler, dsl

from diffucoder_kfp.components.images import BASE_IMAGE


def compile_component(component, tmp_path: Path) -> tuple[dict, dict]:
    """Compile ``component`` alone; return the IR and its only executor."""
    path = Path(tmp_path) / f"{component.name}.yaml"
    compiler.Compiler().compile(component, str(path))
    ir = yaml.safe_load(path.read_text())
    return ir, next(iter(ir["deploymentSpec"]["executors"].values()))


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def dataset_reference(uri: str, artifact: dsl.Output[dsl.Dataset]):
    """Stands in for an upstream step: a reference to a dataset already in the store."""
    from diffucoder.stage_io import write_ref   # inside: kfp ships the function's source alone
    write_ref(artifact.path, uri)


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def model_reference(uri: str, artifact: dsl.Output[dsl.Model]):
    """Stands in for an upstream step: a reference to a model already in the store."""
    from diffucoder.stage_io import write_ref   # inside: kfp ships the function's source alone
    write_ref(artifact.path, uri)
