"""The contract-test environments' cache: keys, image lookup, pruning (no venv is built here)."""
from __future__ import annotations

import fcntl
import os
import time

import pytest

import contract_envs
from contract_envs import ROOT, ContractEnv, ContractEnvError, dockerfile_env, env_key, image_name, pins, prune
from diffucoder.kube.config import image_ref


def test_the_key_follows_the_requirements_text():
    assert env_key("kfp==2.17.0\n") == env_key("kfp==2.17.0\n")
    assert env_key("kfp==2.17.0\n") != env_key("kfp==2.17.1\n")


def test_pins_read_name_version_lines_only():
    text = "# torch==9.9 in a comment\nKFP==2.17.0\ntorch==2.13.0  # pinned\n\n"
    assert pins(text) == {"kfp": "2.17.0", "torch": "2.13.0"}


def test_an_image_reference_maps_to_its_images_folder(monkeypatch):
    monkeypatch.delenv("DIFFUCODER_IMAGE_REGISTRY", raising=False)
    assert image_name(image_ref("train")) == "train"
    with pytest.raises(ContractEnvError, match="'docker.io/library/python:3.11' is none of the project's images"):
        image_name("docker.io/library/python:3.11")


def make_env(root, key: str, age_days: float | None):
    (root / key).mkdir(parents=True)
    (root / f"{key}.lock").touch()
    if age_days is not None:
        used = root / key / "last-used"
        used.touch()
        then = time.time() - age_days * 86400
        os.utime(used, (then, then))


def test_prune_deletes_only_old_unheld_envs(tmp_path, monkeypatch):
    monkeypatch.setenv(contract_envs.CACHE_VAR, str(tmp_path))
    make_env(tmp_path, "old", 30)
    make_env(tmp_path, "recent", 1)
    make_env(tmp_path, "held", 30)
    with (tmp_path / "held.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH)   # a running session holds it
        removed = prune(max_age_days=7)
    assert removed == [tmp_path / "old"]
    assert not (tmp_path / "old").exists() and (tmp_path / "recent").exists() and (tmp_path / "held").exists()


def test_a_step_process_gets_its_images_env_and_no_checkout_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    image_env = dockerfile_env("train")
    assert image_env["DS_BUILD_OPS"] == "0" and image_env["DIFFUCODER_CONFIGS"] == str(ROOT / "configs")
    assert not [k for k in image_env if k.startswith("PIP_")]
    env = ContractEnv(tmp_path, ("train",), image_env=image_env).env(HOME="/h")
    assert env["PATH"].split(":")[0] == str(tmp_path / "bin") and env["HOME"] == "/h"
    assert "PYTHONPATH" not in env and "VIRTUAL_ENV" not in env
    assert "DS_BUILD_OPS" not in dockerfile_env("base")
