"""``diffucoder kube ...`` end to end (registered as the parent CLI will), against the emulator."""
import pytest
import yaml

from diffucoder import cli
from diffucoder.kube import JOB_KINDS, model_storage_uri
from tests.kube.kube_emulator import TRAINJOBS, add_pod, condition, log_lines, pod, set_status


@pytest.fixture
def kube_cli(monkeypatch):
    monkeypatch.setitem(cli.COMMANDS, "kube", ("diffucoder.stages.kube_cli", "cluster jobs and serving"))
    return lambda *argv: cli.main(["kube", *argv])


def test_render_job_prints_yaml_headed_by_the_memory_estimate(kube_cli, capsys):
    assert kube_cli("render-job", "--preset", "7b-gpu", "--stage", "pretrain", "--nodes", "10",
                    "--gpus-per-node", "8", "--namespace", "ml-team", "--run-name", "exp-7") == 0
    out = capsys.readouterr().out
    header = [line for line in out.splitlines() if line.startswith("# ")]
    assert "per-GPU memory estimate" in header[1] and "GiB per GPU" in header[1]
    (job,) = list(yaml.safe_load_all(out))
    assert job["kind"] == "TrainJob" and job["metadata"]["name"] == "exp-7-pretrain"
    assert job["spec"]["trainer"]["numNodes"] == 10
    assert job["metadata"]["labels"]["diffucoder.io/run"] == "exp-7"


def test_bad_input_is_a_clear_error_with_exit_2(kube_cli, capsys):
    assert kube_cli("render-job", "--preset", "7b-gpu", "--stage", "pretrain", "--nodes", "0") == 2
    assert "'training.stages.pretrain.nodes': must be >= 1" in capsys.readouterr().err
    assert kube_cli("render-job", "--preset", "nope", "--stage", "pretrain") == 2
    assert "no recipe 'cluster.yaml' for preset 'nope'" in capsys.readouterr().err


def test_launch_runs_the_job_on_the_cluster(kube_cli, cluster, tmp_path, capsys):
    name, info = "r1-pretrain", JOB_KINDS["TrainJob"]

    def start(c, obj):
        add_pod(c, pod(f"{name}-node-0-0-x1", "ml-team", info.master_selector(name)))
        c.logs[f"{name}-node-0-0-x1"] = log_lines(0, 2, "loss {i}")

    def done(c, obj):
        set_status(c, TRAINJOBS, obj, {"conditions": [condition("Complete", "JobSetCompleted", "done")]})

    cluster.on_fetch(TRAINJOBS, start, done)
    kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig", namespace="ml-team")
    manifest = tmp_path / "sent" / "job.yaml"
    assert kube_cli("launch", "--preset", "tiny-cpu", "--stage", "pretrain", "--kubeconfig", str(kubeconfig),
                    "--manifest-out", str(manifest), "--set", "training.poll_s=0.01",
                    "--timeout", "10") == 0
    out = capsys.readouterr().out
    assert "loss 0\nloss 1\n" in out and "TrainJob ml-team/r1-pretrain succeeded" in out
    sent = yaml.safe_load(manifest.read_text())
    assert sent["metadata"]["namespace"] == "ml-team"  # from the kubeconfig context
    assert cluster.last_version(TRAINJOBS, "ml-team", name)["spec"] == sent["spec"]
    assert cluster.get(TRAINJOBS, "ml-team", name) is None   # deleted after success (cluster.yaml)


def test_deploy_refuses_a_model_kserve_cannot_read(kube_cli, tmp_path, capsys):
    from tests.evaluation.evaluation_helpers import make_model_dir
    from diffucoder.store import open_store
    root = (tmp_path / "store").as_uri()
    open_store(root).put_artifact("runs/r1/sft", make_model_dir(tmp_path / "model"))
    assert kube_cli("deploy", "--model", f"{root}/runs/r1/sft", "--namespace", "ml-team",
                    "--kubeconfig", str(tmp_path / "none")) == 2
    assert "a file:// store is not reachable from a cluster" in capsys.readouterr().err


def test_model_storage_uri_pins_the_published_version(tmp_path):
    from tests.evaluation.evaluation_helpers import make_model_dir
    from diffucoder.errors import DiffucoderError
    from diffucoder.store import open_store
    root = (tmp_path / "store").as_uri()
    store = open_store(root)
    first = store.put_artifact("runs/r1/sft", make_model_dir(tmp_path / "model"))
    uri = model_storage_uri(f"{root}/runs/r1/sft")
    assert uri == f"{root}/runs/r1/sft/.versions/{first.version}"
    assert (tmp_path / "store" / "runs" / "r1" / "sft" / ".versions" / first.version / "config.json").is_file()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    store.put_artifact("runs/r1/notes", tmp_path / "notes")
    with pytest.raises(DiffucoderError, match="not a model artifact"):
        model_storage_uri(f"{root}/runs/r1/notes")


def test_without_a_cluster_the_client_says_so(tmp_path, monkeypatch):
    from diffucoder.errors import DiffucoderError
    from diffucoder.kube import api_client, current_namespace, in_cluster
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert not in_cluster()
    with pytest.raises(DiffucoderError, match="no Kubernetes cluster configured"):
        api_client(kubeconfig=str(tmp_path / "missing"))
    assert current_namespace("fallback", kubeconfig=str(tmp_path / "missing")) == "fallback"


def test_job_images_are_the_ones_the_project_builds():
    from diffucoder_kfp.components.images import ALL_IMAGES
    from diffucoder.kube import image_ref
    assert {name: image_ref(name) for name in ALL_IMAGES} == ALL_IMAGES


def test_render_runtime_and_isvc_print_valid_objects(kube_cli, capsys):
    from tests.kube.kube_emulator import validation_errors
    assert kube_cli("render-runtime", "--preset", "7b-gpu", "--namespace", "ml-team", "--gpus", "1") == 0
    (runtime,) = yaml.safe_load_all(capsys.readouterr().out)
    assert validation_errors(runtime) == [] and runtime["metadata"]["name"] == "diffucoder-runtime"
    assert runtime["spec"]["containers"][0]["image"].split("/")[-1].startswith("diffucoder-serve:")
    assert kube_cli("render-isvc", "--preset", "7b-gpu", "--namespace", "ml-team",
                    "--model", "s3://diffucoder/runs/r1/rl/.versions/v1") == 0
    (isvc,) = yaml.safe_load_all(capsys.readouterr().out)
    assert validation_errors(isvc) == []
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == "s3://diffucoder/runs/r1/rl/.versions/v1"



def test_render_isvc_points_at_the_published_version_not_the_prefix(kube_cli, s3_uri, tmp_path, capsys):
    from tests.evaluation.evaluation_helpers import make_model_dir
    from diffucoder.store import open_store
    store = open_store(s3_uri)
    first = store.put_artifact("runs/r1/rl", make_model_dir(tmp_path / "model"))
    (tmp_path / "model" / "notes.txt").write_text("a second version")
    second = store.put_artifact("runs/r1/rl", tmp_path / "model")
    assert first.version != second.version
    # Without --pin-version this used to print the prefix, under which KServe's storage
    # initializer would download both versions.
    assert kube_cli("render-isvc", "--namespace", "ml-team", "--model", f"{s3_uri}/runs/r1/rl") == 0
    (isvc,) = yaml.safe_load_all(capsys.readouterr().out)
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == f"{s3_uri}/runs/r1/rl/.versions/{second.version}"


def test_render_isvc_takes_a_version_uri_as_is_and_refuses_a_prefix_it_cannot_pin(kube_cli, capsys,
                                                                                  monkeypatch):
    pinned = "s3://diffucoder/runs/r1/rl/.versions/20250101T000000Z-abc"
    assert kube_cli("render-isvc", "--preset", "7b-gpu", "--namespace", "ml-team", "--model", pinned) == 0
    (isvc,) = yaml.safe_load_all(capsys.readouterr().out)
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == pinned
    # An unpinned prefix in a store that cannot be read: a clear error, nothing printed.
    for var in ("DIFFUCODER_S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "DIFFUCODER_S3_SECRET_DIR"):
        monkeypatch.delenv(var, raising=False)
    assert kube_cli("render-isvc", "--namespace", "ml-team", "--model", "s3://diffucoder/runs/r1/rl") == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "--model s3://diffucoder/runs/r1/rl: cannot pin it to a published version" in captured.err
    assert "<artifact>/.versions/<version>" in captured.err
