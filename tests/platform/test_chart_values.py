"""values.schema.json is strict, values never carry credentials, and the options do what they say."""
import re

import helm_python
import pytest
import yaml
from platform_support import CHART_DIR, render
from k8s_schema import validation_errors


def schema_error(values: dict) -> str:
    with helm_python.Chart.load(CHART_DIR) as chart:
        try:
            chart.validate_schema(values)  # coalesced with the defaults, as install does
        except helm_python.HelmValuesError as err:
            return str(err)
    return ""


@pytest.mark.parametrize("values, where", [
    ({"minio": {"rootPassword": "hunter2"}}, "/minio"),
    ({"s3": {"accessKey": "AKIA"}}, "/s3"),
    ({"unknownTopLevel": 1}, ""),
    ({"minio": {"image": {"tag": "latest"}}}, "/minio/image/tag"),
    ({"minio": {"image": {"digest": "md5:abc"}}}, "/minio/image/digest"),
    ({"kserve": {"runtime": {"resources": {"limits": None}}}},  # null deletes the default
     "/kserve/runtime/resources"),
    ({"podSecurity": {"runAsUser": 0}}, "/podSecurity/runAsUser"),
    ({"minio": {"buckets": ["Bad_Bucket"]}}, "/minio/buckets/0"),
    ({"pipelineUpload": {"kfpHost": "ml-pipeline:8888"}}, "/pipelineUpload/kfpHost"),
], ids=["credential-in-minio", "credential-in-s3", "unknown-key", "latest-tag", "bad-digest",
        "requests-without-limits", "root-uid", "bucket-name", "kfp-host-scheme"])
def test_schema_rejects_bad_values(values, where):
    error = schema_error(values)
    assert error and f"'{where}" in error, error


def test_default_and_gpu_values_pass_the_schema():
    assert schema_error({}) == ""
    assert schema_error(yaml.safe_load((CHART_DIR / "values-gpu.yaml").read_text())) == ""


SECRET_KEY_NAMES = re.compile(r"(password|secret_?key|access_?key|token|credential)", re.I)
SECRET_VALUES = re.compile(r"(AKIA[0-9A-Z]{16}|[A-Za-z0-9/+]{32,})")


@pytest.mark.parametrize("name", ["values.yaml", "values-gpu.yaml"])
def test_values_files_hold_no_credentials(name):
    def walk(node, path=""):
        if isinstance(node, dict):
            for key, value in node.items():
                yield from walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                yield from walk(value, f"{path}[{i}]")
        else:
            yield path, node

    values = yaml.safe_load((CHART_DIR / name).read_text())
    for path, value in walk(values):
        leaf = path.rsplit(".", 1)[-1]
        if SECRET_KEY_NAMES.search(leaf) and leaf != "tokenAudience":
            pytest.fail(f"{name}: {path} looks like a credential setting")
        if isinstance(value, str) and SECRET_VALUES.fullmatch(value):
            pytest.fail(f"{name}: {path} looks like a credential value")


def test_existing_secret_replaces_the_generated_one_everywhere():
    rendered = render({"s3": {"existingSecret": "team-s3"}})
    assert not [o for o in rendered.objects if o["kind"] == "Secret"]
    # The shipped pipeline's store_secret default is only a default: NOTES tells runs the real name.
    text = yaml.safe_dump_all([o for o in rendered.objects if o["metadata"]["name"] != "diffucoder-pipeline"])
    assert "diffucoder-s3" not in text
    minio = rendered.find("StatefulSet", "diffucoder-minio")["spec"]["template"]["spec"]
    keys = [v for v in minio["volumes"] if v["name"] == "s3-keys"]
    assert keys[0]["secret"]["secretName"] == "team-s3"
    assert rendered.find("ServiceAccount", "diffucoder-kserve")["secrets"] == [{"name": "team-s3"}]


def test_external_store_drops_minio_and_points_everything_at_the_endpoint():
    rendered = render({"minio": {"enabled": False},
                       "s3": {"endpoint": "s3.eu-west-1.amazonaws.com", "useHTTPS": True,
                              "region": "eu-west-1"}})
    kinds = rendered.kinds_names()
    assert not any("minio" in name for _, name in kinds)
    secret = rendered.find("Secret", "diffucoder-s3")
    assert secret["metadata"]["annotations"]["serving.kserve.io/s3-usehttps"] == "1"
    pod = rendered.find("Pod", "diffucoder-test-store")["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in pod["env"]}
    assert env["DIFFUCODER_S3_ENDPOINT"] == "s3.eu-west-1.amazonaws.com"
    assert env["DIFFUCODER_S3_SECURE"] == "true"
    jobs_policy = rendered.find("NetworkPolicy", "diffucoder-jobs")["spec"]
    assert {"protocol": "TCP", "port": 443} in [p for r in jobs_policy["egress"] for p in r["ports"]]
    assert [e for o in rendered.objects for e in validation_errors(o)] == []


def test_external_store_without_endpoint_fails_with_a_clear_message():
    with pytest.raises(helm_python.HelmRenderError, match="s3.endpoint is required"):
        render({"minio": {"enabled": False}})


def test_minio_digest_pins_the_image_and_optional_parts_can_be_switched_off():
    digest = "sha256:" + "a" * 64
    rendered = render({"minio": {"image": {"digest": digest}},
                       "kserve": {"enabled": False}, "trainer": {"enabled": False},
                       "pipelineUpload": {"enabled": False}, "networkPolicies": {"enabled": False}})
    image = rendered.find("StatefulSet", "diffucoder-minio")["spec"]["template"]["spec"][
        "containers"][0]["image"]
    tag = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["minio"]["image"]["tag"]
    assert image.endswith(f":{tag}@{digest}")
    kinds = {k for k, _ in rendered.kinds_names()}
    assert not kinds & {"ServingRuntime", "TrainingRuntime"}
    switched_off = {("ConfigMap", "diffucoder-pipeline"),
                    ("ServiceAccount", "diffucoder-kserve"), ("NetworkPolicy", "diffucoder-minio"),
                    ("NetworkPolicy", "diffucoder-jobs")}
    assert not rendered.kinds_names() & switched_off
    assert not [n for _, n in rendered.kinds_names() if n.startswith("diffucoder-pipeline-upload")]
    assert ("NetworkPolicy", "diffucoder-sandbox-isolation") in rendered.kinds_names()
