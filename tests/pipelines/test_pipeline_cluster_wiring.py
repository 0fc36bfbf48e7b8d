"""What the compiled pipeline hands a training step for its cluster job: the run's id and the
store Secret the step itself reads the store with."""
import yaml

from diffucoder.stages.registry import TRAINING_STAGES as TRAINING_STEPS
from diffucoder_kfp.compile import compiled_filename
from tests.checkout import COMPILED_DIR


def test_training_steps_get_the_run_id_and_the_store_secret_they_pass_to_their_job():
    ir, platform = yaml.safe_load_all((COMPILED_DIR / compiled_filename()).read_text())
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    tasks = ir["root"]["dag"]["tasks"]
    for name in TRAINING_STEPS:
        params = tasks[name]["inputs"]["parameters"]
        # The KFP run's id: the same for every retry of the step, new for every run.
        assert params["run_id"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}", name
        # The Secret the job's pods read the store with is the one the step's own env comes from.
        assert params["store_secret"] == {"componentInputParameter": "store_secret"}, name
        executor = ir["components"][tasks[name]["componentRef"]["name"]]["executorLabel"]
        (secret,) = executors[executor]["secretAsEnv"]
        assert secret["secretNameParameter"]["componentInputParameter"].endswith("store_secret"), name
        component = ir["components"][tasks[name]["componentRef"]["name"]]
        assert component["inputDefinitions"]["parameters"]["store_secret"]["parameterType"] == "STRING"
        command = " ".join(ir["deploymentSpec"]["executors"][executor]["container"]["command"])
        assert "run_id=run_id, store_secret=store_secret" in command, name
