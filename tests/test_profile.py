import pytest
import torch

from companion import profile


def test_resolve_names(monkeypatch):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    assert profile.resolve_name("ci") == "ci"
    assert profile.resolve_name(" CPU ") == "cpu"
    assert profile.resolve_name("auto") == ("gpu" if torch.cuda.is_available() else "cpu")
    assert profile.resolve_name(None) == profile.resolve_name("auto")
    monkeypatch.setenv("COURSE_PROFILE", "ci")
    assert profile.resolve_name(None) == "ci"
    assert profile.resolve_name("") == "ci"
    assert profile.resolve_name("cpu") == "cpu", "the notebook parameter beats the environment"


def test_bad_name_lists_valid_ones():
    with pytest.raises(profile.ProfileError, match="unknown profile 'fast'.*ci, cpu, gpu, auto"):
        profile.get_profile("fast")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_gpu_without_cuda_is_a_clear_error():
    with pytest.raises(profile.ProfileError, match="needs a CUDA GPU"):
        profile.get_profile("gpu")
    p = profile.get_profile("gpu", device="cpu")
    assert p.name == "gpu" and p.device.type == "cpu"


def test_pick_and_str():
    p = profile.get_profile("ci", seed=3)
    assert p.pick(ci=1, cpu=2, gpu=3) == 1 and p.is_ci
    assert profile.get_profile("cpu").pick(ci=1, cpu=2, gpu=3) == 2
    assert profile.get_profile("gpu", device="cpu").pick(ci=1, cpu=2, gpu=3) == 3
    assert profile.get_profile("gpu", device="cpu").pick(ci=1, cpu=2) == 2
    assert "profile=ci" in str(p) and "seed=3" in str(p)


def test_setup_prints_one_line_and_seeds(capsys):
    p = profile.setup("ci", seed=7, data="MNIST from /data")
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    assert out[0] == "GenerateVision · profile=ci · device=cpu · data=MNIST from /data · seed=7"
    a = torch.rand(3)
    profile.setup("ci", seed=7)
    assert torch.equal(a, torch.rand(3))
    assert p.seed == 7
