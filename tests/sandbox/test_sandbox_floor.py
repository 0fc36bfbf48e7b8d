"""Fail closed: a stage opens the sandbox only at or above ``min_isolation``, and only trusts one
whose self-check holds (a correct program passes, cheating ones do not)."""
import socket

import pytest

from diffucoder.config import ConfigError, load_config
from diffucoder.sandbox import (LAYERS, Sandbox, SandboxClient, SandboxConfig, SandboxError, SandboxSection,
                                check_sandbox, layer_rank, open_sandbox, self_check)
from diffucoder.sandbox.isolation import floor_of, strongest_available
from diffucoder.sandbox.service import SandboxService, ServiceConfig


def test_layers_are_ordered_weakest_first():
    assert LAYERS == ("none", "rlimits-only", "unshare-n+uid", "bwrap-userns", "bwrap", "service")
    assert layer_rank("unshare") == layer_rank("unshare-n+uid") < layer_rank("bwrap-userns")
    with pytest.raises(ValueError):
        layer_rank("docker")


def test_auto_means_the_strongest_layer_here_and_never_one_that_leaves_the_network_open():
    here = strongest_available(SandboxConfig())
    assert here == "bwrap"                                   # root with bubblewrap, as in CI
    assert floor_of("auto", SandboxConfig()) == "bwrap"
    assert floor_of("rlimits-only", SandboxConfig()) == "rlimits-only"
    assert floor_of("unshare", SandboxConfig()) == "unshare-n+uid"


@pytest.mark.parametrize("isolation,minimum,message", [
    ("none", "auto", "isolation=none forces it.*isolation=auto.*sandbox.min_isolation=rlimits-only"),
    ("unshare", "auto", "under 'unshare-n\\+uid'.*isolation=unshare forces it"),
    ("auto", "service", "no sandbox service is configured \\(sandbox.endpoint is empty\\).*"
                        "set sandbox.endpoint=http://diffucoder-sandbox:8080"),
    ("none", "unshare-n+uid", "sandbox.min_isolation is 'unshare-n\\+uid'"),
])
def test_below_the_floor_the_error_says_what_is_missing_and_how_to_fix_it(isolation, minimum, message):
    cfg, section = SandboxConfig(isolation=isolation, workers=1), SandboxSection(min_isolation=minimum)
    with pytest.raises(SandboxError, match=message):
        check_sandbox(cfg, section)
    with pytest.raises(SandboxError, match="refusing to run model-written code"):
        open_sandbox(cfg, section)


def test_weaker_layers_need_an_explicit_opt_in():
    cfg = SandboxConfig(isolation="none", workers=1)
    with open_sandbox(cfg, SandboxSection(min_isolation="rlimits-only")) as sandbox:
        assert isinstance(sandbox, Sandbox) and sandbox.isolation == "rlimits-only"
        self_check(sandbox)
    assert check_sandbox(SandboxConfig(), SandboxSection()) == "bwrap"


def test_the_error_names_the_keys_of_the_stage_that_asked():
    with pytest.raises(SandboxError, match="reward.sandbox.min_isolation is 'service'.*reward.sandbox.endpoint="):
        check_sandbox(SandboxConfig(), SandboxSection(min_isolation="service"), where="reward.sandbox")


def test_an_endpoint_opens_the_service_which_meets_every_floor():
    cfg = SandboxConfig(timeout_s=5, workers=1)
    with SandboxService(cfg, ServiceConfig(host="127.0.0.1", port=0)) as service:
        assert service.wait_ready(60)
        section = SandboxSection(endpoint=service.url, min_isolation="service", retry_s=5)
        assert check_sandbox(cfg, section) == "service"
        with open_sandbox(cfg, section) as sandbox:
            assert isinstance(sandbox, SandboxClient)
            assert sandbox.describe() == {"isolation": "service", "inside": "bwrap", "endpoint": service.url}
            self_check(sandbox)


def test_a_broken_sandbox_fails_its_self_check():
    # /bin/false as the interpreter: no worker ever starts, every job crashes
    with Sandbox(SandboxConfig(python="/bin/false", workers=1, timeout_s=2)) as broken:
        with pytest.raises(SandboxError, match="failed its self-check.*a correct program: got 'crashed'"):
            self_check(broken)


def test_the_endpoint_setting_is_checked_when_the_config_loads():
    with pytest.raises(ConfigError, match="must look like http://host:port"):
        load_config(SandboxSection, None, ["endpoint=diffucoder-sandbox:8080"])
    assert load_config(SandboxSection, None, ["endpoint=http://[::1]:8080"]).endpoint == "http://[::1]:8080"


def _reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        return False
    return True


def test_the_boundary_probe_sees_a_missing_boundary():
    with Sandbox(SandboxConfig(workers=1)) as sandbox:      # bwrap: no network, no credentials
        self_check(sandbox, boundary=True)
    if not _reachable("1.1.1.1", 443):
        pytest.skip("this machine reaches no network: nothing for rlimits-only to leak")
    with Sandbox(SandboxConfig(isolation="none", workers=1)) as sandbox:
        with pytest.raises(SandboxError, match="credentials and the network: got 'fail'.*1.1.1.1:443 reachable"):
            self_check(sandbox, boundary=True)
