"""`diffucoder pipeline upload/submit` against a real HTTP server speaking the KFP v2beta1 API."""
import shutil

import pytest
import yaml

from diffucoder.cli import main
from diffucoder.errors import DiffucoderError
from diffucoder_kfp.remote import make_client, parse_params, submit, upload
from diffucoder_kfp.compile import compiled_filename
from tests.checkout import COMPILED_DIR

from fake_kfp_server import FakeKFP  # noqa: E402  (tests/pipelines is on sys.path via conftest)

COMPILED = COMPILED_DIR / compiled_filename()


@pytest.fixture
def kfp_server():
    with FakeKFP() as server:
        yield server


def test_upload_creates_pipeline_and_named_version_once(kfp_server, tmp_path):
    file = tmp_path / "diffucoder-0.1.0+gabc123.yaml"
    shutil.copy(COMPILED, file)
    client = make_client(kfp_server.host)
    first = upload(client, file)
    assert first.created and first.version_name == "0.1.0+gabc123"
    again = upload(client, file)           # rerun of the chart's upload Job: a no-op
    assert not again.created and again.version_id == first.version_id
    (pipeline,) = kfp_server.pipelines.values()
    assert pipeline["display_name"] == "diffucoder"
    names = [v["display_name"] for v in kfp_server.versions[pipeline["pipeline_id"]]]
    assert names.count("0.1.0+gabc123") == 1
    assert list(yaml.safe_load_all(kfp_server.uploads[first.version_id])) == \
        list(yaml.safe_load_all(COMPILED.read_text()))


def test_submit_runs_the_uploaded_version_with_typed_params(kfp_server, tmp_path):
    client = make_client(kfp_server.host)
    params = parse_params(["preset=7b-gpu", "store_root=s3://diffucoder",
                           'curate_overrides=["dedup.jaccard_threshold=0.8"]'])
    run_id = submit(client, COMPILED, params, run_name="r1", experiment="diffucoder")
    (run,) = kfp_server.runs
    assert run["run_id"] == run_id and run["display_name"] == "r1"
    assert run["runtime_config"]["parameters"]["curate_overrides"] == ["dedup.jaccard_threshold=0.8"]
    assert run["pipeline_version_reference"]["pipeline_version_id"] in kfp_server.uploads


def test_unknown_param_and_bad_file_are_clear_errors(kfp_server, tmp_path):
    client = make_client(kfp_server.host)
    with pytest.raises(DiffucoderError, match="unknown pipeline parameter.*'presett'"):
        submit(client, COMPILED, {"presett": "x"}, run_name="r", experiment="e")
    bad = tmp_path / "diffucoder-1.yaml"
    bad.write_text("a: 1\n")
    with pytest.raises(DiffucoderError, match="not a compiled kfp pipeline"):
        upload(client, bad)
    assert not kfp_server.runs and not kfp_server.pipelines


def test_token_is_read_from_a_file_and_sent(kfp_server, tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cr3t-token\n")
    upload(make_client(kfp_server.host, token_file=str(token)), COMPILED)
    assert "Bearer s3cr3t-token" in kfp_server.auth_headers


def test_cli_upload_and_submit(kfp_server, capsys):
    assert main(["pipeline", "upload", "--host", kfp_server.host, "--file", str(COMPILED)]) == 0
    assert "0.1.0" in capsys.readouterr().out
    assert main(["pipeline", "submit", "--host", kfp_server.host, "--file", str(COMPILED),
                 "--run-name", "cli-run", "--param", "preset=tiny-cpu"]) == 0
    assert kfp_server.runs[0]["display_name"] == "cli-run"


def test_unreachable_host_is_a_clear_error():
    with pytest.raises(DiffucoderError, match="cannot reach Kubeflow Pipelines"):
        make_client("http://127.0.0.1:9")
