"""Hugging Face-native checkpoints: auto classes after ``import trimodal``, Hub ids through the
local Hugging Face cache, ``push_to_hub`` and the model card. No network anywhere."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def saved(tiny_model, tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("saved") / "model"
    tiny_model.save_pretrained(directory)
    return directory


def _inputs() -> dict:
    generator = torch.Generator().manual_seed(0)
    return {
        "text": ["Music video", "Drummer"],
        "audio": torch.randn(2, 48000, generator=generator),
        "video": torch.rand(2, 4, 3, 32, 32, generator=generator),
    }


def _embeddings(model) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return model(**_inputs()).embeddings


def _hub_cache(root: Path, repo_id: str, saved: Path) -> Path:
    """The layout huggingface_hub's cache has after a download of ``repo_id`` at main."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(saved, repo / "snapshots" / REVISION)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(REVISION)
    return root


def _python(code: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", **env}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_import_trimodal_is_enough_for_the_auto_classes(saved, tmp_path):
    """A fresh interpreter: ``import trimodal`` (before or after transformers) registers the
    model, so AutoConfig/AutoModel load a saved directory."""
    for first, second in (("import trimodal", "import transformers"), ("import transformers", "import trimodal")):  # fmt: skip
        code = f"""
        {first}
        {second}
        from transformers import AutoConfig, AutoModel
        print(type(AutoConfig.from_pretrained({str(saved)!r})).__name__)
        print(type(AutoModel.from_pretrained({str(saved)!r})).__name__)
        """
        result = _python(code, {}, tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["TrimodalConfig", "TrimodalModel"]


def test_a_hub_id_round_trips_through_the_local_cache(tiny_model, saved, tmp_path):
    from trimodal import TrimodalModel

    cache = _hub_cache(tmp_path / "hub", "someuser/trimodal-demo", saved)
    loaded = TrimodalModel.from_pretrained("someuser/trimodal-demo", cache_dir=cache)
    expected, got = _embeddings(tiny_model), _embeddings(loaded)
    assert sorted(got) == ["audio", "text", "video"]
    for modality in expected:
        torch.testing.assert_close(got[modality], expected[modality], rtol=0, atol=0)

    # AutoModel by Hub id, in a fresh interpreter with the cache as HF_HUB_CACHE.
    code = """
    import trimodal
    from transformers import AutoModel
    model = AutoModel.from_pretrained("someuser/trimodal-demo")
    print(type(model).__name__, model.backbones["text"]._sp is not None)
    """
    result = _python(code, {"HF_HUB_CACHE": str(cache)}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["TrimodalModel", "True"]


def test_a_hub_id_missing_from_the_cache_says_how_to_download(tmp_path):
    from trimodal import TrimodalModel
    from trimodal.backbones import MissingCheckpointError

    with pytest.raises(MissingCheckpointError, match="local_files_only=False"):
        TrimodalModel.from_pretrained("someuser/not-cached", cache_dir=tmp_path)


def test_push_to_hub_uploads_weights_config_assets_and_card(tiny_model, monkeypatch):
    import huggingface_hub

    uploads = []

    class Repo:
        repo_id = "someuser/trimodal-demo"

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        files = sorted(str(p.relative_to(folder_path)) for p in Path(folder_path).rglob("*"))
        uploads.append((repo_id, files, (Path(folder_path) / "README.md").read_text()))
        return "commit"

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda self, *a, **k: Repo())
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    assert tiny_model.push_to_hub("trimodal-demo") == "commit"
    ((repo_id, files, card),) = uploads
    assert repo_id == "someuser/trimodal-demo"
    for name in ("model.safetensors", "config.json", "README.md", "text/bpemb.model"):
        assert name in files, files
    assert card.startswith("---\nlibrary_name: trimodal")


def test_the_model_card_names_channels_objective_and_metrics(tiny_model, saved):
    from trimodal.model_card import render_model_card

    card = (saved / "README.md").read_text()
    assert "| audio | clap_htsat |" in card and "Not recorded" in card
    record = {
        "objective": "weighted_contrastive",
        "objective_options": {},
        "config": {"train": {"epochs": 3, "lr": 0.001, "select_metric": "video/mean_R@10"}},
        "data": {"prepared_dir": "data/prepared", "splits": {"train": {"videos": 9, "clips": 18}}},
        "step": 40,
        "best": {"metric": "video/mean_R@10", "mode": "max", "value": 0.5, "step": 30},
        "validation": {"video/audio→video/R@10": 0.625, "video/mean_R@10": 0.5},
    }
    card = render_model_card(tiny_model.config, record)
    assert "Objective: `weighted_contrastive`" in card
    assert "Selected on `video/mean_R@10` (max): 0.5000 at step 30" in card
    assert "| video | audio→video | R@10 | 0.6250 |" in card
    assert "train 9 videos / 18 clips" in card and "| lr | 0.001 |" in card
