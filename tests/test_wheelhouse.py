"""`flashcore wheelhouse`: the pip download commands (pip mocked, no network), the split into parts, and
the install script's join and checksum round trip."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.tools import wheelhouse as wh


def fake_pip(files: dict[str, bytes], calls: list[list[str]], fail: str = ""):
    """A stand-in for ``pip download``: writes the wheels a package name maps to into --dest."""
    def run(cmd: list[str]) -> subprocess.CompletedProcess:
        calls.append(cmd)
        dest = Path(cmd[cmd.index("--dest") + 1])
        if fail and any(a.startswith(fail) for a in cmd):
            return subprocess.CompletedProcess(cmd, 1, "", f"ERROR: No matching distribution found for {fail}")
        for arg in cmd:
            for pkg, data in files.items():
                if arg.startswith(pkg + "=="):
                    (dest / f"{pkg.replace('-', '_')}-1.0-py3-none-any.whl").write_bytes(data)
        return subprocess.CompletedProcess(cmd, 0, "Saved", "")
    return run


ALL = {"fa3-fwd": os.urandom(5000), "flashinfer-python": os.urandom(3000), "apache-tvm-ffi": b"tvm" * 100,
       "nvidia-cudnn-frontend": os.urandom(2100), "nvtx": os.urandom(900), "plotly": os.urandom(1200)}


def test_download_commands_ask_for_target_binaries_without_dependencies(tmp_path: Path) -> None:
    calls: list[list[str]] = []
    req = wh.Request(python="3.12", platform="manylinux_2_28_x86_64", out=tmp_path / "w")
    m = wh.make(req, run=fake_pip(ALL, calls), log=lambda s: None)
    assert len(calls) == 4  # one pip call per package group
    for cmd in calls:
        assert cmd[1:4] == ["-m", "pip", "download"]
        assert "--only-binary=:all:" in cmd and "--no-deps" in cmd
        assert cmd[cmd.index("--python-version") + 1] == "3.12" and cmd[cmd.index("--implementation") + 1] == "cp"
        plats = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--platform"]
        # pip matches only the tags it is given: the older manylinux a glibc-2.28 node also runs
        assert plats[0] == "manylinux_2_28_x86_64" and "manylinux_2_24_x86_64" in plats
        assert "manylinux2014_x86_64" in plats and plats[-1] == "any"
        assert "manylinux_2_29_x86_64" not in plats
    assert calls[1][-2:] == ["flashinfer-python==0.6.18.post1", "apache-tvm-ffi==0.1.13.post3"]
    assert [f["wheel"] for f in m["files"]] == sorted(f["wheel"] for f in m["files"]) and len(m["files"]) == 6
    assert m["assumed_present"] and "torch" in m["assumed_present"]
    manifest = json.loads((tmp_path / "w" / "wheelhouse.json").read_text())
    assert manifest["packages"]["cudnn"] == ["nvidia-cudnn-frontend==1.32.0"]


def test_deps_flag_lets_pip_resolve(tmp_path: Path) -> None:
    calls: list[list[str]] = []
    wh.make(wh.Request("3.12", "manylinux_2_28_x86_64", tmp_path, backends=("cudnn",), deps=True),
            run=fake_pip(ALL, calls), log=lambda s: None)
    assert "--no-deps" not in calls[0]


def test_split_and_join_round_trip_matches_the_checksums(tmp_path: Path) -> None:
    out = tmp_path / "w"
    m = wh.make(wh.Request("3.12", "manylinux_2_28_x86_64", out, split_mb=2048 / 2**20),
                run=fake_pip(ALL, []), log=lambda s: None)
    split = {f["wheel"]: f["parts"] for f in m["files"]}
    fa3 = "fa3_fwd-1.0-py3-none-any.whl"
    assert split[fa3] == [f"{fa3}.part000", f"{fa3}.part001", f"{fa3}.part002"]  # 5000 B in 2048 B parts
    assert split["apache_tvm_ffi-1.0-py3-none-any.whl"] == []  # 300 B: left whole
    assert not (out / fa3).exists() and all((out / p).stat().st_size <= 2048 for p in split[fa3])
    joined = {p.name for p in wh.join_parts(out)}
    assert fa3 in joined and not list(out.glob("*.part*"))
    assert (out / fa3).read_bytes() == ALL["fa3-fwd"]
    for line in (out / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("sha256sum") is None, reason="needs bash")
def test_install_script_joins_checks_and_refuses_a_corrupt_part(tmp_path: Path) -> None:
    out = tmp_path / "w"
    wh.make(wh.Request("3.12", "manylinux_2_28_x86_64", out, split_mb=1024 / 2**20), run=fake_pip(ALL, []),
            log=lambda s: None)
    good = tmp_path / "good"
    shutil.copytree(out, good)
    r = subprocess.run(["bash", str(good / "install.sh"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "joined fa3_fwd-1.0-py3-none-any.whl" in r.stdout
    assert (good / "fa3_fwd-1.0-py3-none-any.whl").read_bytes() == ALL["fa3-fwd"]
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    part = bad / "fa3_fwd-1.0-py3-none-any.whl.part001"
    part.write_bytes(b"x" + part.read_bytes()[1:])
    r = subprocess.run(["bash", str(bad / "install.sh"), "--check"], capture_output=True, text=True)
    assert r.returncode != 0 and "FAILED" in r.stdout
    r = subprocess.run(["bash", str(good / "install.sh"), "--bogus"], capture_output=True, text=True)
    assert r.returncode == 2 and "allowed: --target DIR, --check" in r.stderr


@pytest.mark.parametrize("kw, must", [
    ({"python": "312"}, "--python '312': a CPython version as MAJOR.MINOR"),
    ({"platform": "many linux"}, "a wheel platform tag"),
    ({"backends": ("fa3", "vllm")}, "allowed fa3, flashinfer, cudnn, harness"),
    ({"split_mb": 0.0}, "--split-mb 0: a size in MiB above 0"),
])
def test_bad_requests_are_one_line(tmp_path: Path, kw: dict, must: str) -> None:
    args = {"python": "3.12", "platform": "manylinux_2_28_x86_64", "out": tmp_path, **kw}
    with pytest.raises(wh.WheelhouseError) as e:
        wh.make(wh.Request(**args), run=fake_pip(ALL, []), log=lambda s: None)
    assert must in str(e.value)


def test_pip_failure_names_the_backend_and_pips_error(tmp_path: Path) -> None:
    with pytest.raises(wh.WheelhouseError, match=r"pip download for fa3 failed \(exit 1\): ERROR: No matching"):
        wh.make(wh.Request("3.12", "manylinux_2_28_x86_64", tmp_path), run=fake_pip(ALL, [], fail="fa3-fwd"),
                log=lambda s: None)


def test_cli_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from harness.cli import app

    calls: list[list[str]] = []
    monkeypatch.setattr(wh, "_run", fake_pip(ALL, calls))
    out = tmp_path / "w"
    r = CliRunner().invoke(app, ["wheelhouse", "--python", "3.12", "--platform", "manylinux_2_28_x86_64",
                                 "--out", str(out), "--backends", "fa3,cudnn", "--split-mb", "0.002"])
    assert r.exit_code == 0, r.output
    assert len(calls) == 2 and "install.sh" in r.output and (out / "install.sh").exists()
    r = CliRunner().invoke(app, ["wheelhouse", "--out", str(out), "--backends", "nope"])
    assert r.exit_code == 2 and "allowed fa3, flashinfer, cudnn, harness" in r.output


def test_platform_tags_for_other_platforms() -> None:
    assert wh.platform_tags("manylinux_2_17_x86_64") == ["manylinux_2_17_x86_64", "manylinux2014_x86_64",
                                                         "manylinux2010_x86_64", "manylinux1_x86_64"]
    assert wh.platform_tags("linux_aarch64") == ["linux_aarch64"]
