"""Users add a backend without editing flashcore: an installed package's entry point in the
``flashcore.backends`` group is picked up by the registry, suites and the worker processes."""
import sqlite3
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from harness.backends import registry

PLUGIN = textwrap.dedent('''
    import torch
    from harness.backends.base import Backend

    class Doubled(Backend):
        """A user's backend: plain attention computed twice over, to be recognisable."""
        name = "user-doubled"
        description = "a third-party backend from an entry point"
        devices = ("cuda", "cpu")

        def prepare(self, problem, q, k, v):
            def run():
                qh, kh, vh = (t.transpose(1, 2) for t in (q, k, v))
                return torch.nn.functional.scaled_dot_product_attention(
                    qh, kh, vh, scale=problem.softmax_scale, is_causal=problem.causal).transpose(1, 2)
            return run
''')


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    (tmp_path / "user_plugin.py").write_text(PLUGIN)
    dist = tmp_path / "user_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: user-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[flashcore.backends]\nuser-doubled = user_plugin:Doubled\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path) + ":" + ":".join(sys.path))
    registry.names()  # the built-ins are registered once per process; keep them
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    return tmp_path


def test_an_entry_point_backend_is_registered(installed_plugin):
    assert "user-doubled" in registry.names()
    assert registry.get("user-doubled").description == "a third-party backend from an entry point"


def test_an_entry_point_backend_runs_in_a_suite(installed_plugin, tmp_path):
    from harness.cli import app

    db = tmp_path / "r.db"
    res = CliRunner().invoke(app, ["run", "--suite", "smoke", "--backends", "user-doubled,naive", "--db", str(db),
                                   "--filter", "seqlen_q=16,dtype=float16"])
    assert res.exit_code == 0, res.output
    rows = dict(sqlite3.connect(db).execute("select backend, status from results where causal=0"))
    assert rows == {"user-doubled": "ok", "naive": "ok"}
