"""`diffucoder pipeline upload/submit` against a real HTTP server speaking the KFP v2beta1 API, in
both KFP modes: standalone (shared pipelines, no identity) and multi-user Kubeflow (a profile
namespace, a bearer token or a session cookie)."""
import shutil

import pytest
import yaml

from diffucoder.cli import main
from diffucoder.errors import DiffucoderError
from diffucoder_kfp.compile import compiled_filename, retarget
from diffucoder_kfp.remote import content_digest, make_client, parse_params, read_pipeline_docs, submit, upload
from tests.checkout import COMPILED_DIR

from fake_kfp_server import FakeKFP  # noqa: E402  (tests/pipelines is on sys.path via conftest)

COMPILED = COMPILED_DIR / compiled_filename()
TOKEN = "s3cr3t-token"
COOKIE = "oauth2_proxy_kubeflow=c00kie"


@pytest.fixture
def kfp_server():
    with FakeKFP() as server:
        yield server


@pytest.fixture
def multi_user():
    with FakeKFP(multi_user=True, require_namespace=True,
                 identities={f"Bearer {TOKEN}": {"ml-team"}, COOKIE: {"ml-team"}}) as server:
        yield server


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return str(path)


def named_versions(server) -> list[dict]:
    (pipeline,) = server.pipelines.values()
    return [v for v in server.versions[pipeline["pipeline_id"]] if v["display_name"] != pipeline["display_name"]]


def test_upload_is_idempotent_by_content(kfp_server, tmp_path):
    file = tmp_path / "diffucoder-0.1.0+gabc123.yaml"
    shutil.copy(COMPILED, file)
    client = make_client(kfp_server.host)
    first = upload(client, file)
    digest = content_digest(read_pipeline_docs(file))
    assert first.created and first.digest == digest and first.version_name == f"0.1.0+gabc123-{digest[:12]}"
    again = upload(client, file)           # rerun of the chart's upload Job: a no-op
    assert not again.created and again.version_id == first.version_id
    (version,) = named_versions(kfp_server)
    assert f"sha256:{digest}" in version["description"]
    assert list(yaml.safe_load_all(kfp_server.uploads[first.version_id])) == \
        list(yaml.safe_load_all(COMPILED.read_text()))


def test_changed_content_under_the_same_file_name_is_a_new_version(kfp_server, tmp_path):
    file = tmp_path / "diffucoder-0.1.0.yaml"
    shutil.copy(COMPILED, file)
    client = make_client(kfp_server.host)
    first = upload(client, file)
    docs = read_pipeline_docs(file)
    docs[0]["pipelineInfo"]["description"] += " (edited)"
    file.write_text("---\n".join(yaml.safe_dump(d) for d in docs))
    second = upload(client, file)
    assert second.created and second.version_name != first.version_name
    assert second.version_name.startswith("0.1.0-") and second.digest != first.digest
    assert len(named_versions(kfp_server)) == 2


def test_an_explicit_version_name_with_other_content_is_an_error(kfp_server, tmp_path):
    client = make_client(kfp_server.host)
    upload(client, COMPILED, version_name="release-1")
    moved = tmp_path / COMPILED.name
    shutil.copy(COMPILED, moved)
    with pytest.raises(DiffucoderError, match="already has a version 'release-1' with other content"):
        upload(client, moved, version_name="release-1", image_registry="registry.example.com/ml")
    assert [v["display_name"] for v in named_versions(kfp_server)] == ["release-1"]
    assert not upload(client, COMPILED, version_name="release-1").created   # same content: fine


def test_upload_with_a_registry_uploads_the_moved_pipeline(kfp_server):
    up = upload(make_client(kfp_server.host), COMPILED, image_registry="registry.example.com/ml",
                image_pull_secrets=["regcred"])
    docs = list(yaml.safe_load_all(kfp_server.uploads[up.version_id]))
    assert docs == retarget(read_pipeline_docs(COMPILED), "registry.example.com/ml", ["regcred"])
    assert up.digest == content_digest(docs) and "ghcr.io" not in kfp_server.uploads[up.version_id]


def test_submit_runs_the_uploaded_version_with_typed_params(kfp_server, tmp_path):
    client = make_client(kfp_server.host)
    params = parse_params(["preset=7b-gpu", "store_root=s3://diffucoder",
                           'curate_overrides=["dedup.jaccard_threshold=0.8"]'])
    run_id = submit(client, COMPILED, params, run_name="r1", experiment="diffucoder",
                    service_account="diffucoder-pipeline-runner")
    (run,) = kfp_server.runs
    assert run["run_id"] == run_id and run["display_name"] == "r1"
    assert run["service_account"] == "diffucoder-pipeline-runner"
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


def test_token_is_read_from_a_file_and_sent(kfp_server, token_file):
    upload(make_client(kfp_server.host, token_file=token_file), COMPILED)
    assert f"Bearer {TOKEN}" in kfp_server.auth_headers


def test_multi_user_upload_and_run_go_to_the_profile_namespace(multi_user, token_file):
    client = make_client(multi_user.host, "ml-team", token_file=token_file)
    run_id = submit(client, COMPILED, {"preset": "tiny-cpu"}, run_name="r1", experiment="diffucoder",
                    service_account="diffucoder-pipeline-runner", namespace="ml-team")
    (pipeline,) = multi_user.pipelines.values()
    assert pipeline["namespace"] == "ml-team"           # a namespaced pipeline, not a shared one
    (experiment,) = multi_user.experiments.values()
    (run,) = multi_user.runs
    assert experiment["namespace"] == run["namespace"] == "ml-team" and run["run_id"] == run_id
    again = upload(client, COMPILED, namespace="ml-team")
    assert not again.created and len(multi_user.pipelines) == 1   # found in the namespace, not re-created


def test_multi_user_refusals_say_what_to_change(multi_user, token_file, tmp_path):
    with pytest.raises(DiffucoderError, match="saw no identity.*--token-file.*--cookie-file"):
        upload(make_client(multi_user.host, "ml-team"), COMPILED, namespace="ml-team")
    with pytest.raises(DiffucoderError, match="not allowed in namespace 'other-team'.*--namespace"):
        upload(make_client(multi_user.host, "other-team", token_file=token_file), COMPILED, namespace="other-team")
    with pytest.raises(DiffucoderError, match="Namespace is required"):   # a shared upload on such a server
        upload(make_client(multi_user.host, token_file=token_file), COMPILED)
    assert not multi_user.pipelines


def test_a_session_cookie_is_an_identity_too(multi_user, tmp_path):
    cookie = tmp_path / "cookie"
    cookie.write_text(COOKIE + "\n")
    up = upload(make_client(multi_user.host, "ml-team", cookie_file=str(cookie)), COMPILED, namespace="ml-team")
    assert up.created and COOKIE in multi_user.cookies
    bad = tmp_path / "bad-cookie"
    bad.write_text("not a cookie\n")
    with pytest.raises(DiffucoderError, match="--cookie-file.*name=value"):
        make_client(multi_user.host, cookie_file=str(bad))


def test_cli_upload_and_submit(kfp_server, capsys):
    assert main(["pipeline", "upload", "--host", kfp_server.host, "--file", str(COMPILED)]) == 0
    assert "0.1.0-" in capsys.readouterr().out
    assert main(["pipeline", "submit", "--host", kfp_server.host, "--file", str(COMPILED),
                 "--run-name", "cli-run", "--param", "preset=tiny-cpu"]) == 0
    assert kfp_server.runs[0]["display_name"] == "cli-run"


def test_cli_multi_user_with_namespace_token_and_registry(multi_user, token_file, capsys):
    assert main(["pipeline", "submit", "--host", multi_user.host, "--file", str(COMPILED), "--namespace", "ml-team",
                 "--token-file", token_file, "--image-registry", "registry.example.com/ml",
                 "--image-pull-secret", "regcred", "--run-name", "cli-run",
                 "--service-account", "diffucoder-pipeline-runner", "--param", "preset=7b-gpu"]) == 0
    assert "started in ml-team" in capsys.readouterr().out
    (version,) = named_versions(multi_user)
    assert "registry.example.com/ml/diffucoder-base" in multi_user.uploads[version["pipeline_version_id"]]
    assert main(["pipeline", "upload", "--host", multi_user.host, "--file", str(COMPILED),
                 "--namespace", "ml-team"]) == 2   # no identity: a clear error, a non-zero exit


def test_unreachable_host_is_a_clear_error():
    with pytest.raises(DiffucoderError, match="cannot reach Kubeflow Pipelines"):
        make_client("http://127.0.0.1:9")
