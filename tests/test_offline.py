"""Importing trimodal and building models from local files never touches the network."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

# Run before the code under test: every socket connection or name lookup is recorded and
# refused, as on a machine with no network.
_NO_NETWORK = textwrap.dedent(
    """
    import socket, sys
    attempts = []
    def _refuse(*args, **kwargs):
        attempts.append(repr(args)[:200])
        raise OSError("network access attempted in an offline test")
    socket.socket.connect = _refuse
    socket.socket.connect_ex = _refuse
    socket.getaddrinfo = _refuse
    socket.create_connection = _refuse
    import atexit
    atexit.register(lambda: attempts and print("NETWORK ATTEMPTS:", attempts, file=sys.stderr))
    """
)


def _run_offline(code: str, tmp_path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env["HF_HOME"] = str(tmp_path / "hf_home")  # an empty cache: nothing to fall back on
    env["TRIMODAL_CACHE"] = str(tmp_path / "cache")
    script = tmp_path / "offline_check.py"
    script.write_text(_NO_NETWORK + textwrap.dedent(code))
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_import_is_fast_and_offline(tmp_path):
    start = time.perf_counter()
    result = _run_offline("import trimodal\nprint(trimodal.__version__)\n", tmp_path)
    elapsed = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    assert "NETWORK ATTEMPTS" not in result.stderr
    # Generous bound: the import itself takes well under a second; laion-clap's takes
    # minutes of retries offline, which is what this guards against.
    assert elapsed < 20, elapsed


def test_building_saving_and_loading_models_is_offline(tmp_path):
    code = """
    import torch
    from trimodal import TrimodalModel, build_model
    from trimodal.config import ModelConfig
    model = build_model(ModelConfig(preset="tiny", embed_dim=8)).eval()
    model.save_pretrained("saved")
    loaded = TrimodalModel.from_pretrained("saved")
    with torch.no_grad():
        out = loaded(text=["Music video"], audio=torch.zeros(1, 48000), video=torch.rand(1, 4, 3, 32, 32))
    print(sorted(out.embeddings))
    """
    result = _run_offline(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "NETWORK ATTEMPTS" not in result.stderr, result.stderr
    assert "['audio', 'text', 'video']" in result.stdout


def test_the_guard_detects_network_use(tmp_path):
    result = _run_offline(
        "import socket\ntry:\n    socket.create_connection(('example.org', 80))\nexcept OSError:\n    pass\n",
        tmp_path,
    )
    assert "NETWORK ATTEMPTS" in result.stderr
