"""Audio-only media (``.wav``, ``.mp3``, ``.flac``, ``.opus``, written by PyAV): embedded
through their sound, left out of the video gallery, usable as ``--audio`` queries and
"more like this"; a video file given to ``--audio`` still works."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from media_corpus import Spec, write_audio
from search_fixtures import BATCH, DEMO_DATA, media_dir, tiny_model_dir

from trimodal.media import MediaError, open_media
from trimodal.search import cli
from trimodal.search.embedder import load_videos
from trimodal.search.index import Catalogue

# (suffix, encoder, sample rate): the formats users keep their music in.
FORMATS = [
    (".wav", "pcm_s16le", 16000),
    (".mp3", "libmp3lame", 44100),
    (".flac", "flac", 16000),
    (".opus", "libopus", 48000),
]
TONES = [f"tone_{suffix[1:]}" for suffix, _, _ in FORMATS]


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    """An ``embed`` and an exact index of the four audio files and two synthetic videos."""
    root = tmp_path_factory.mktemp("audio_only")
    media = root / "media"
    media.mkdir()
    for (suffix, codec, rate), name in zip(FORMATS, TONES):
        write_audio(media, Spec(name, "", "", codec, rate=rate, video_s=9.0, audio_file=suffix))
    videos = sorted(p for p in media_dir(tmp_path_factory).iterdir() if p.stem != "broken")[:2]
    for path in videos:
        shutil.copy(path, media / path.name)
    out, index = root / "out", root / "index"
    argv = [str(media), "--model", str(tiny_model_dir(tmp_path_factory)), "--out", str(out)]
    argv += ["--data-config", str(DEMO_DATA), "--batch-size", str(BATCH), "--no-progress"]
    assert cli.main_embed(argv) == 0
    assert cli.main_index([str(out), "--out", str(index)]) == 0
    return media, out, index, [p.stem for p in videos]


def test_an_audio_file_opens_with_blank_frames_only_when_asked(catalogue):
    wav = catalogue[0] / "tone_wav.wav"
    with pytest.raises(MediaError) as err:
        open_media(wav, rates=[16000])
    assert err.value.reason == "no_video_stream"
    with open_media(wav, rates=[16000], blank_video=True) as media:
        assert media.decoder == "none" and media.info.duration_s == pytest.approx(9.0)
        assert not media.frames_at(np.array([0.5, 8.0]), 32).any()
        # The tone (amplitude 0.3), not silence.
        assert np.abs(media.audio_at(16000, 0, 16000)).max() > 0.25


def test_audio_files_are_embedded_by_their_sound(catalogue):
    media, out, _, videos = catalogue
    assert (out / "skipped.jsonl").read_text() == ""
    items, vectors, meta = load_videos(out)
    absent = {i["id"]: i["absent"] for i in items}
    assert absent == {**dict.fromkeys(TONES, ["video"]), **dict.fromkeys(videos, [])}
    assert meta["audio_only"] == sorted(TONES)
    rows = {i["id"]: r for r, i in enumerate(items)}
    for table in ("videos", "clips"):
        t = pq.read_table(out / f"{table}.parquet")
        ids = t.column("video_id").to_pylist()
        null = [i for i, valid in zip(ids, t.column("video").is_valid().to_pylist()) if not valid]
        assert set(null) == set(TONES) and t.column("audio").null_count == 0, table
    audio = vectors["audio"]
    np.testing.assert_allclose(np.linalg.norm(audio, axis=1), 1.0, atol=1e-5)
    # Lossless at the same rate: the same samples, the same embedding.
    np.testing.assert_allclose(audio[rows["tone_wav"]], audio[rows["tone_flac"]], atol=1e-5)
    assert not vectors["video"][[rows[t] for t in TONES]].any()
    previews = {p.name for p in (out / "previews").iterdir()}
    assert {f"{t}.wav" for t in TONES} <= previews and not {f"{t}.jpg" for t in TONES} & previews


def test_audio_only_items_stay_out_of_the_video_gallery(catalogue):
    _, out, index, videos = catalogue
    cat = Catalogue.load(index)
    _, vectors, _ = load_videos(out)
    query = vectors["audio"][cat.row_of("tone_mp3")]
    _, rows = cat.search("video", query[None], len(cat))
    assert sorted(cat.ids[r] for r in rows[0] if r >= 0) == sorted(videos)
    scores, rows = cat.search("audio", query[None], len(cat))
    assert sorted(cat.ids[r] for r in rows[0]) == sorted(cat.ids)
    np.testing.assert_allclose(scores[0], np.sort(vectors["audio"] @ query)[::-1], atol=1e-5)


def search_json(capsys, *argv: str) -> list[dict]:
    capsys.readouterr()
    assert cli.main_search([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)[0]["hits"]


@pytest.mark.parametrize("name", ["tone_wav.wav", "tone_opus.opus"])
def test_an_audio_file_is_an_audio_query(catalogue, capsys, name):
    media, _, index, videos = catalogue
    hits = search_json(capsys, "--index", str(index), "--audio", str(media / name), "-k", "6")
    assert sorted(h["id"] for h in hits) == sorted(videos)  # default gallery: video
    hits = search_json(capsys, "--index", str(index), "--audio", str(media / name), "--in", "audio")
    # Embedded the way the catalogue was: the file finds itself (wav and flac tie).
    same = {"tone_wav", "tone_flac"} if name.endswith(".wav") else {"tone_opus"}
    assert hits[0]["id"] in same and hits[0]["score"] > 0.9999


def test_a_video_file_is_still_an_audio_query(catalogue, capsys):
    media, _, index, videos = catalogue
    video = next(media.glob(f"{videos[0]}.*"))
    hits = search_json(capsys, "--index", str(index), "--audio", str(video), "--in", "audio")
    assert hits[0]["id"] == videos[0] and hits[0]["score"] > 0.9999


def test_an_audio_file_is_no_video_query(catalogue, capsys):
    media, _, index, _ = catalogue
    argv = ["--index", str(index), "--video", str(media / "tone_flac.flac")]
    assert cli.main_search(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: cannot use tone_flac.flac: it has no video stream"


def test_more_like_an_audio_only_item(catalogue, capsys):
    _, out, index, _ = catalogue
    hits = search_json(capsys, "--index", str(index), "--like", "tone_mp3", "-k", "10")
    assert "tone_mp3" not in {h["id"] for h in hits} and len(hits) == 5
    # Only its sound counts: the ranking is the audio similarity's.
    items, vectors, _ = load_videos(out)
    row = [i["id"] for i in items].index("tone_mp3")
    scores = vectors["audio"] @ vectors["audio"][row]
    scores[row] = -np.inf
    assert [h["id"] for h in hits] == [items[i]["id"] for i in np.argsort(-scores)[:5]]


def test_an_audio_file_uploaded_on_the_page(catalogue):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from trimodal.search.query import QueryEngine
    from trimodal.search.server import create_app

    media, _, index, _ = catalogue
    client = TestClient(create_app(QueryEngine(Catalogue.load(index))))
    data = (media / "tone_mp3.mp3").read_bytes()
    form = {"modality": "audio", "in": "audio"}
    ok = client.post("/api/upload", files={"file": ("song.mp3", data)}, data=form)
    assert ok.status_code == 200, ok.text
    assert ok.json()["hits"][0]["id"] == "tone_mp3"
    form = {"modality": "video", "in": "video"}
    refused = client.post("/api/upload", files={"file": ("song.mp3", data)}, data=form)
    assert refused.status_code == 400 and "no video stream" in refused.json()["error"]
    assert client.get("/preview/tone_mp3").status_code == 200
    assert client.get("/thumb/tone_mp3").status_code == 404


def test_a_catalogue_of_audio_files_alone(catalogue, tmp_path):
    from trimodal.search.index import build_index
    from trimodal.search.query import search_vector

    _, out, _, _ = catalogue
    items, vectors, _ = load_videos(out)
    keep = [r for r, i in enumerate(items) if i["id"] in TONES]
    build_index(tmp_path, [items[r] for r in keep], {m: x[keep] for m, x in vectors.items()})
    cat = Catalogue.load(tmp_path)
    query = vectors["audio"][keep[0]]
    assert search_vector(cat, "video", query, k=3) == []  # nothing to find there, no error
    assert [h.id for h in search_vector(cat, "audio", query, k=1)] == [items[keep[0]]["id"]]
