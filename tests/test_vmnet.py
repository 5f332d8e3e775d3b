"""VM-NET (docs/research.md#the-vm-net-study): network layout, feature files, handcrafted
features, training, evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from trimodal.config import ConfigError
from trimodal.objectives import get_objective
from trimodal.vmnet import (
    ExtractorSettings,
    ExtractorSpec,
    FeatureSet,
    VMNet,
    VMNetConfig,
    VMNetModelConfig,
    build_extractor,
    build_vmnet,
    evaluate_vmnet,
    extractor_names,
    handcrafted_dim,
    handcrafted_feature_names,
    handcrafted_features,
    load_features,
    load_vmnet_config,
    save_features,
)
from trimodal.vmnet.__main__ import main
from trimodal.vmnet.features import FeatureFileError

REPO = Path(__file__).resolve().parents[1]
# Narrow branches keep the end-to-end runs fast on a CPU; the layout tests use the paper's.
SMALL = ["--music_layers", "[256,128,64]", "--video_layers", "[256,64]"]


def synthetic_split(n: int, seed: int, prefix: str, latent: int = 16) -> FeatureSet:
    """Paired features with a learnable match: audio = A·z + noise, video = tanh(B·z) + noise
    for a per-video latent z; A and B are fixed (seed 0), so every split shares them."""
    maps = np.random.default_rng(0)
    a_map, b_map = maps.standard_normal((latent, 60)), maps.standard_normal((latent, 40))
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, latent))
    audio = z @ a_map + 0.5 * rng.standard_normal((n, 60))
    video = np.tanh(z @ b_map) + 0.3 * rng.standard_normal((n, 40))
    ids = [f"{prefix}{i:05d}" for i in range(n)]
    return FeatureSet(ids, np.zeros(n, dtype=np.int64), audio, video, {"synthetic": seed})


# ----------------------------------------------------------------------------- config


def test_config_file_holds_the_paper_settings():
    config = load_vmnet_config(REPO / "configs" / "vmnet.yaml")
    assert config.music_layers == [2048, 1024, 512]
    assert config.video_layers == [2048, 512]
    assert (config.lr, config.batch_size, config.dropout) == (1e-6, 1000, 0.5)
    assert (config.margin, config.top_k, config.lambdas) == (0.1, 100, [1.0, 3.0, 0.2, 0.2])
    assert config.eval_ks == [1, 10, 25]
    assert load_vmnet_config(None, ["--lr", "1e-3"]).lr == 1e-3
    with pytest.raises(ConfigError, match="lerning_rate"):
        load_vmnet_config(None, ["--lerning_rate", "1e-3"])
    with pytest.raises(ConfigError, match="same embedding size"):
        VMNetConfig(music_layers=[64, 32], video_layers=[64, 16])
    with pytest.raises(ConfigError, match="batch_size"):
        VMNetConfig(batch_size=1)


# ----------------------------------------------------------------------------- network


def _linear_shapes(branch: nn.Module) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in branch.modules() if isinstance(m, nn.Linear)]


def test_branch_layout_shapes_and_normalisation():
    config = VMNetConfig(music_input_dim=1140, video_input_dim=1024)
    model = build_vmnet(config)
    assert _linear_shapes(model.music) == [(1140, 2048), (2048, 1024), (1024, 512)]
    assert _linear_shapes(model.video) == [(1024, 2048), (2048, 512)]
    # Paper layout: FC→ReLU→Dropout per hidden layer, a linear last FC, then batch norm.
    kinds = [type(m).__name__ for m in model.music.layers]
    assert kinds == [
        "Linear",
        "ReLU",
        "Dropout",
        "Linear",
        "ReLU",
        "Dropout",
        "Linear",
        "BatchNorm1d",
    ]
    assert [type(m).__name__ for m in model.video.layers][-2:] == ["Linear", "BatchNorm1d"]
    assert model.music.layers[2].p == 0.5

    music, video = torch.randn(6, 1140), torch.randn(6, 1024)
    out = model(music, video)
    assert out.audio_embeds.shape == (6, 512) and out.video_embeds.shape == (6, 512)
    for emb in out.values():
        torch.testing.assert_close(emb.norm(dim=1), torch.ones(6))
    model.eval()
    first = model.encode_music(music)
    torch.testing.assert_close(first, model.encode_music(music))  # no dropout in eval
    torch.testing.assert_close(first.norm(dim=1), torch.ones(6))
    model.train()
    assert not torch.allclose(model.encode_music(music), model.encode_music(music))  # dropout

    with pytest.raises(ValueError, match=r"\[B, 1140\]"):
        model.encode_music(torch.randn(2, 1000))
    variant = build_vmnet(VMNetConfig(music_input_dim=8, video_input_dim=8, hidden_batch_norm=True))
    assert sum(isinstance(m, nn.BatchNorm1d) for m in variant.music.modules()) == 3
    assert sum(isinstance(m, nn.BatchNorm1d) for m in variant.video.modules()) == 2
    with pytest.raises(ValueError, match="music_input_dim"):
        build_vmnet(VMNetConfig())


def test_training_steps_reduce_the_loss():
    torch.manual_seed(0)
    data = synthetic_split(64, seed=5, prefix="t")
    config = VMNetConfig(music_input_dim=60, video_input_dim=40, dropout=0.0, top_k=10)
    model = build_vmnet(config)
    model.set_standardization(torch.from_numpy(data.audio), torch.from_numpy(data.video))
    objective = get_objective("vmnet_triplet", **config.objective_options())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    music, video = torch.from_numpy(data.audio), torch.from_numpy(data.video)
    feats = {
        "audio": model.standardized("music", music),
        "video": model.standardized("video", video),
    }
    losses = []
    for _ in range(4):
        loss = objective(model(music, video).embeddings, features=feats)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    # The ranking hinges (margin 0.1 on 64 pairs) are met within a few steps; what stays is
    # the structure terms' order violations.
    assert losses[-1] < 0.25 * losses[0], losses


def _trained_looking_model() -> tuple[VMNet, torch.Tensor, torch.Tensor]:
    """A small model with fitted standardisation and moved batch-norm statistics."""
    torch.manual_seed(2)
    config = VMNetConfig(
        music_layers=[32, 16], video_layers=[24, 16], music_input_dim=12, video_input_dim=8
    )
    model = build_vmnet(config)
    music, video = 3.0 + 5.0 * torch.randn(20, 12), torch.randn(20, 8) - 1.0
    model.set_standardization(music, video)
    model.train()
    model(music, video)  # updates the batch-norm running statistics
    return model.eval(), music, video


def test_save_pretrained_round_trip(tmp_path):
    model, music, video = _trained_looking_model()
    model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").is_file()
    back = VMNet.from_pretrained(tmp_path / "m")
    assert isinstance(back.config, VMNetModelConfig) and not back.training
    fields = VMNetModelConfig.RUN_FIELDS
    assert {f: getattr(back.config, f) for f in fields} == {
        f: getattr(model.config, f) for f in fields
    }
    state, loaded = model.state_dict(), back.state_dict()
    assert state.keys() == loaded.keys()
    for key in state:
        torch.testing.assert_close(loaded[key], state[key], rtol=0, atol=0, msg=key)
    # The standardisation statistics travel with the weights: not the identity any more.
    assert not torch.allclose(back.music_mean, torch.zeros(12))
    assert not torch.allclose(back.music_std, torch.ones(12))
    torch.testing.assert_close(back.encode_music(music), model.encode_music(music))
    torch.testing.assert_close(back.encode_video(video), model.encode_video(video))
    with pytest.raises(FileNotFoundError, match="not a VM-NET model directory"):
        VMNet.from_pretrained(tmp_path / "nothing")


def test_directories_of_the_earlier_save_format_load(tmp_path):
    """``VMNet.save`` wrote the same weights with ``{"model_type", "config": {run settings}}``
    as config.json; such a directory still loads, with the same outputs."""
    from safetensors.torch import save_file

    from trimodal.config import to_dict

    model, music, video = _trained_looking_model()
    run = VMNetConfig(
        music_layers=[32, 16], video_layers=[24, 16], music_input_dim=12, video_input_dim=8,
        eval_ks=[1, 5, 10],
    )  # fmt: skip
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(legacy / "model.safetensors"), metadata={"format": "pt"})
    meta = {"model_type": "vmnet", "config": to_dict(run), "epoch": 3, "dev": {}}
    (legacy / "config.json").write_text(json.dumps(meta))
    back = VMNet.from_pretrained(legacy)
    assert back.config.eval_ks == [1, 5, 10] and back.config.music_layers == [32, 16]
    torch.testing.assert_close(back.encode_music(music), model.encode_music(music))
    torch.testing.assert_close(back.encode_video(video), model.encode_video(video))
    (legacy / "config.json").write_text(json.dumps({"model_type": "trimodal"}))
    with pytest.raises(ValueError, match="not a VM-NET config"):
        VMNet.from_pretrained(legacy)


def test_best_selection_is_strict_with_patience():
    from trimodal.training.selection import BestSelection

    selection = BestSelection(mode="max", patience=2)
    # VM-NET's keys: (R@10, -mean rank); an equal R@10 with a lower mean rank is better.
    assert selection.update((0.5, -10.0), 0)
    assert not selection.update((0.5, -10.0), 1)  # a tie is not an improvement
    assert selection.update((0.5, -9.0), 2) and selection.best_step == 2
    assert not selection.update((0.4, -1.0), 3) and not selection.exhausted
    assert not selection.update((0.5, -9.0), 4) and selection.exhausted
    lowest = BestSelection(mode="min")
    assert lowest.update(3.0, 0) and lowest.update(2.0, 1) and not lowest.update(2.5, 2)
    assert lowest.best_value == 2.0 and not lowest.exhausted


# ----------------------------------------------------------------------------- feature files


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_feature_file_round_trip(tmp_path, suffix):
    data = synthetic_split(7, seed=1, prefix="vid")
    data.clip_indices[:] = np.arange(7) * 3
    data.metadata = {"audio": {"extractor": "librosa"}, "split": "dev"}
    path = save_features(tmp_path / f"feats{suffix}", data)
    back = load_features(path)
    assert back.video_ids == data.video_ids
    np.testing.assert_array_equal(back.clip_indices, data.clip_indices)
    np.testing.assert_array_equal(back.audio, data.audio)
    np.testing.assert_array_equal(back.video, data.video)
    assert back.metadata == data.metadata
    assert back.audio.dtype == np.float32 and back.clip_indices.dtype == np.int64


def test_feature_files_are_checked(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, video_id=np.asarray(["a", "b"]), clip_index=np.zeros(2), audio=np.ones((2, 3)))
    with pytest.raises(FeatureFileError, match="missing"):
        load_features(bad)
    with pytest.raises(FeatureFileError, match="rows disagree"):
        FeatureSet(["a", "b"], [0, 0], np.ones((2, 3)), np.ones((3, 3)))
    with pytest.raises(FeatureFileError, match="duplicate"):
        FeatureSet(["a", "a"], [0, 0], np.ones((2, 3)), np.ones((2, 3)))
    with pytest.raises(FeatureFileError, match="not finite"):
        FeatureSet(["a", "b"], [0, 0], np.array([[1.0], [np.nan]]), np.ones((2, 1)))
    with pytest.raises(FileNotFoundError):
        load_features(tmp_path / "none.npz")
    with pytest.raises(ValueError, match=r"\.npz or \.safetensors"):
        save_features(tmp_path / "x.pt", synthetic_split(2, 1, "a"))


# ----------------------------------------------------------------------------- handcrafted


def test_handcrafted_statistics_shape_and_content():
    sr = 16000
    t = np.arange(2 * sr) / sr
    rng = np.random.default_rng(0)
    tone = 0.5 * np.sin(2 * np.pi * 440.0 * t) + 0.01 * rng.standard_normal(t.size)
    features = handcrafted_features(tone.astype(np.float32), sr)
    names = handcrafted_feature_names()
    assert features.shape == (1140,) == (handcrafted_dim(),) and len(set(names)) == 1140
    assert features.dtype == np.float32 and np.isfinite(features).all()
    # Layout [mean | var | max], harmonic before percussive: a 440-Hz tone is an A (chroma 9).
    chroma = [names.index(f"mean/harmonic/chroma_stft_{i}") for i in range(12)]
    assert int(np.argmax(features[chroma])) == 9
    centroid = features[names.index("mean/harmonic/spectral_centroid_0")]
    assert 300 < centroid < 700  # Hz, near the tone
    assert np.all(features[names.index("var/harmonic/chroma_stft_0") :][:380] >= 0)

    silence = handcrafted_features(np.zeros(sr, dtype=np.float32), sr)
    assert np.isfinite(silence).all()
    with pytest.raises(ValueError, match="too short"):
        handcrafted_features(np.zeros(400, dtype=np.float32), sr)
    with pytest.raises(ValueError, match="mono"):
        handcrafted_features(np.zeros((2, sr), dtype=np.float32), sr)


# ----------------------------------------------------------------------------- evaluation


def test_evaluation_ranks_against_the_whole_test_set(tmp_path):
    n = 1500
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, 24)).astype(np.float32)
    # A perfect model: identical branches on identical inputs map each pair to one point.
    config = VMNetConfig(
        music_layers=[64, 32], video_layers=[64, 32], music_input_dim=24, video_input_dim=24
    )
    torch.manual_seed(0)
    perfect = build_vmnet(config)
    perfect.video.load_state_dict(perfect.music.state_dict())
    perfect.eval()
    data = FeatureSet([f"v{i}" for i in range(n)], np.zeros(n), x, x.copy())
    # Embedding batches (256) smaller than the set: ranks must still use all 1500 items.
    results = evaluate_vmnet(perfect, data, tmp_path / "perfect", batch_size=256)
    for direction in ("music→video", "video→music"):
        m = results["clip"][direction]
        assert m["R@1"] == 1.0 and m["median_rank"] == 1.0
        assert m["num_queries"] == m["gallery_size"] == n
    assert results["clip"]["chance"]["R@10"] == pytest.approx(10 / n)
    assert "video" not in results  # one clip per video: no separate video level
    table = (tmp_path / "perfect" / "results.md").read_text()
    assert "| chance | 0.07 | 0.67 | 1.67 |" in table
    assert "| music→video | 100.00 | 100.00 | 100.00 | 1.0 | 1.0 |" in table

    # A random model, checked against brute-force Euclidean ranks over the full set (the
    # paper's distance; on unit vectors it orders like the cosine the metrics use).
    torch.manual_seed(1)
    random_model = build_vmnet(config).eval()
    other = FeatureSet(data.video_ids, np.zeros(n), x, rng.standard_normal((n, 24)))
    got = evaluate_vmnet(random_model, other, batch_size=256)["clip"]["music→video"]
    with torch.no_grad():
        m = random_model.encode_music(torch.from_numpy(other.audio)).double()
        v = random_model.encode_video(torch.from_numpy(other.video)).double()
    dist = torch.cdist(m, v)
    ranks = (dist <= dist.diagonal()[:, None]).sum(dim=1).numpy()  # 1-based, ties against
    for k in (1, 10, 25):
        assert got[f"R@{k}"] == pytest.approx(np.mean(ranks <= k))
    assert got["median_rank"] == pytest.approx(np.median(ranks))
    assert got["median_rank"] > 300  # an untrained model is near chance (N/2)


def test_video_level_added_when_videos_have_several_clips():
    n = 40
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 8)).astype(np.float32)
    data = FeatureSet([f"v{i // 4}" for i in range(n)], np.arange(n) % 4, x, x.copy())
    config = VMNetConfig(
        music_layers=[16, 8], video_layers=[16, 8], music_input_dim=8, video_input_dim=8
    )
    model = build_vmnet(config).eval()
    model.video.load_state_dict(model.music.state_dict())
    results = evaluate_vmnet(model, data)
    assert results["clip"]["chance"]["num_queries"] == 40
    assert results["video"]["chance"]["num_queries"] == 10
    assert results["video"]["music→video"]["R@1"] == 1.0


# ----------------------------------------------------------------------------- end to end


def test_end_to_end_on_synthetic_features(tmp_path, capsys):
    train, dev, test = (
        synthetic_split(600, 1, "train"),
        synthetic_split(200, 2, "dev"),
        synthetic_split(300, 3, "test"),
    )
    save_features(tmp_path / "train.npz", train)
    save_features(tmp_path / "dev.safetensors", dev)
    save_features(tmp_path / "test.npz", test)
    out = tmp_path / "run"
    argv = [
        "train", "--config", str(REPO / "configs" / "vmnet.yaml"),
        "--train", str(tmp_path / "train.npz"), "--dev", str(tmp_path / "dev.safetensors"),
        "--test", str(tmp_path / "test.npz"), "--output", str(out), "--no-progress",
        "--lr", "1e-3", "--batch_size", "100", "--epochs", "5", "--top_k", "20", *SMALL,
    ]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "best dev music→video R@10" in printed and "chance" in printed
    for name in (
        "model.safetensors",
        "config.json",
        "config.yaml",
        "metrics.jsonl",
        "dev_results.json",
        "results.json",
        "results.md",
    ):
        assert (out / name).is_file(), name

    saved = json.loads((out / "config.json").read_text())
    assert saved["model_type"] == "vmnet"
    assert saved["music_input_dim"] == 60 and saved["video_input_dim"] == 40
    run_config = load_vmnet_config(out / "config.yaml")  # the resolved run settings
    assert (run_config.music_input_dim, run_config.video_input_dim) == (60, 40)
    assert run_config.lr == 1e-3 and run_config.margin == 0.1
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [r["epoch"] for r in log] == list(range(6))
    assert log[-1]["train/loss"] < log[1]["train/loss"]
    assert "dev/clip/music→video/R@10" in log[0] and "train/loss" not in log[0]
    dev_results = json.loads((out / "dev_results.json").read_text())
    # The kept checkpoint is the dev evaluation with the highest music→video R@10.
    best_r10 = dev_results["results"]["clip"]["music→video"]["R@10"]
    assert log[dev_results["best_epoch"]]["dev/clip/music→video/R@10"] == best_r10
    assert best_r10 == max(r["dev/clip/music→video/R@10"] for r in log)

    results = json.loads((out / "results.json").read_text())["results"]["clip"]
    chance = results["chance"]["R@10"]
    assert chance == pytest.approx(10 / 300)
    trained = {d: results[d]["R@10"] for d in ("music→video", "video→music")}
    assert min(trained.values()) > 0.5, trained  # chance is 0.033

    # The same architecture untrained (same seed, standardised the same way) is near chance.
    config = run_config
    torch.manual_seed(config.seed)
    untrained = build_vmnet(config)
    untrained.set_standardization(torch.from_numpy(train.audio), torch.from_numpy(train.video))
    before = evaluate_vmnet(untrained, test)["clip"]["music→video"]["R@10"]
    assert before < 0.15 and trained["music→video"] > before + 0.4

    # The saved best checkpoint reproduces its numbers through `evaluate`.
    assert main(["evaluate", "--model", str(out), "--test", str(tmp_path / "test.npz"),
                 "--output", str(tmp_path / "eval")]) == 0  # fmt: skip
    again = json.loads((tmp_path / "eval" / "results.json").read_text())["results"]["clip"]
    assert again["music→video"] == results["music→video"]
    assert again["video→music"] == results["video→music"]

    # Features of another size are refused with a clear message.
    wrong = FeatureSet(test.video_ids, test.clip_indices, test.audio[:, :50], test.video)
    save_features(tmp_path / "wrong.npz", wrong)
    assert main(["evaluate", "--model", str(out), "--test", str(tmp_path / "wrong.npz"),
                 "--output", str(tmp_path / "e2")]) == 2  # fmt: skip
    assert "music (audio) size 50 but the model takes 60" in capsys.readouterr().err


def test_extractor_registry():
    assert extractor_names("audio") == ("musicnn", "clap", "librosa", "array")
    assert extractor_names("video") == ("r2plus1d", "videomae", "array")
    settings = ExtractorSettings(preset="tiny", random_weights=True)
    librosa = build_extractor("audio", ExtractorSpec("librosa"), settings)
    assert librosa.per_clip and librosa.loader_options([48000, 16000]) == {"audio_rate": 16000}
    video = build_extractor("video", ExtractorSpec("r2plus1d"), settings)
    assert video.loader_options(()) == video.model.data_options()
    assert not any(p.requires_grad for p in video.model.parameters()) and not video.model.training
    frames, size = (
        video.model.data_options()["num_frames"],
        video.model.data_options()["video_size"],
    )
    features = video(torch.zeros(2, frames, 3, size, size, dtype=torch.uint8))
    assert features.shape == (2, video.model.output_dim) and features.dtype == np.float32
    assert video.metadata() == {"extractor": "r2plus1d", "source": None, "random_weights": True}
    with pytest.raises(ValueError, match="must be one of"):
        build_extractor("audio", ExtractorSpec("mfcc"), settings)
    with pytest.raises(ValueError, match="needed with, and only with"):
        build_extractor("video", ExtractorSpec("array"), settings)
    with pytest.raises(ValueError, match="needed with, and only with"):
        build_extractor("audio", ExtractorSpec("librosa", array="x.npz"), settings)
    with pytest.raises(ValueError, match="--video-source is required"):
        build_extractor("video", ExtractorSpec("videomae"), ExtractorSettings())


def test_a_registered_extractor_is_offered_by_name(monkeypatch):
    from trimodal.vmnet import extractors

    monkeypatch.setitem(extractors._REGISTRY, "audio", dict(extractors._REGISTRY["audio"]))

    @extractors.register_extractor
    class Loudness(extractors.ClipExtractor):
        modality, name = "audio", "loudness"

    assert extractor_names("audio")[-1] == "loudness"
    spec = ExtractorSpec("loudness", source="unused")
    built = build_extractor("audio", spec, ExtractorSettings())
    assert isinstance(built, Loudness) and built.metadata()["source"] == "unused"
    with pytest.raises(ValueError, match="already registered"):
        extractors.register_extractor(Loudness)


# ----------------------------------------------------------------------------- extraction


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """Two short synthetic videos (4-s clips, 32² frames, 48-kHz audio), both in test."""
    from trimodal.cli import demo_data_config
    from trimodal.prepare import prepare
    from trimodal.prepare.corpus import read_corpus, write_corpus
    from trimodal.prepare.synthetic import SynthOptions, generate_corpus

    root = tmp_path_factory.mktemp("vmnet_data")
    generate_corpus(root / "corpus", 2, seed=4, opts=SynthOptions(min_seconds=8, max_seconds=9))
    records = read_corpus(root / "corpus")
    for record in records:
        record.split = "test"
    write_corpus(root / "corpus", records)
    prepare(root / "corpus", root / "prepared", demo_data_config(), show_progress=False)
    return root / "prepared"


def test_features_command_with_librosa_and_a_backbone(prepared, tmp_path):
    from trimodal.data import PreparedClips

    clips = PreparedClips(prepared, "test", modalities=())
    out = tmp_path / "test.safetensors"
    argv = [
        "features", "--data", str(prepared), "--split", "test", "--audio", "librosa",
        "--video", "r2plus1d", "--preset", "tiny", "--random-weights", "--out", str(out),
        "--batch-size", "2", "--no-progress",
    ]  # fmt: skip
    assert main(argv) == 0
    feats = load_features(out)
    assert feats.video_ids == clips.video_ids
    assert feats.clip_indices.tolist() == clips.clip_indices
    assert feats.audio.shape == (len(clips), 1140)
    assert feats.video.shape == (len(clips), 32)  # tiny R(2+1)D: last width 32
    assert feats.metadata["audio"]["extractor"] == "librosa"
    assert feats.metadata["video"]["random_weights"] is True
    # A backbone needs its weights unless told otherwise.
    argv_no_weights = [a for a in argv if a != "--random-weights"]
    assert main(argv_no_weights) == 2


def test_features_command_with_precomputed_arrays(prepared, tmp_path, capsys):
    from trimodal.data import PreparedClips

    clips = PreparedClips(prepared, "test", modalities=())
    videos = sorted(set(clips.video_ids))
    # Video level (like YouTube-8M mean_rgb): one row per video, the first video missing.
    rgb = np.arange(len(videos) * 4, dtype=np.float32).reshape(len(videos), 4)
    np.savez(tmp_path / "yt8m.npz", video_id=np.asarray(videos[1:]), mean_rgb=rgb[1:])
    # Clip level audio rows, keyed by (video_id, clip_index), in reversed order.
    n = len(clips)
    audio = np.stack([np.full(3, 10 * i, dtype=np.float32) for i in range(n)])
    np.savez(
        tmp_path / "audio.npz",
        video_id=np.asarray(clips.video_ids[::-1]),
        clip_index=np.asarray(clips.clip_indices[::-1]),
        features=audio[::-1],
    )
    base = [
        "features", "--data", str(prepared), "--split", "test", "--audio", "array",
        "--audio-array", str(tmp_path / "audio.npz"), "--video", "array",
        "--video-array", str(tmp_path / "yt8m.npz"), "--out", str(tmp_path / "f.npz"),
        "--no-progress",
    ]  # fmt: skip
    assert main(base) == 2
    err = capsys.readouterr().err
    assert "has no video features for" in err and videos[0] in err and "--skip-missing" in err
    assert main([*base, "--skip-missing"]) == 0
    feats = load_features(tmp_path / "f.npz")
    kept = [i for i, v in enumerate(clips.video_ids) if v != videos[0]]
    assert feats.video_ids == [clips.video_ids[i] for i in kept]
    np.testing.assert_array_equal(feats.audio, audio[kept])
    for row, i in enumerate(kept):
        np.testing.assert_array_equal(feats.video[row], rgb[videos.index(clips.video_ids[i])])
    assert feats.metadata["video"]["key"] == "mean_rgb"
    assert feats.metadata["skipped_clips"] == n - len(kept)
