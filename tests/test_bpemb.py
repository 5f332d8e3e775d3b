"""BPEmb text backbone: offline loading of a real BPEmb file pair, text handling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trimodal.backbones import MissingCheckpointError
from trimodal.backbones.bpemb import BPEmbBackbone, BPEmbOptions, bpemb_file_names


@pytest.fixture(scope="module")
def backbone(tiny_bpemb_dir):
    backbone = BPEmbBackbone(BPEmbOptions(vocab_size=200, dim=32))
    backbone.load_pretrained(tiny_bpemb_dir)
    return backbone


def test_embedding_is_masked_mean_of_the_bpemb_vectors(backbone, tiny_bpemb_dir):
    from bpemb import BPEmb

    model_rel, emb_rel = bpemb_file_names(200, 32)
    reference = BPEmb(
        model_file=tiny_bpemb_dir / model_rel, emb_file=tiny_bpemb_dir / emb_rel, dim=32
    )
    texts = ["Music video", "Organ (music)", "drum"]
    ours = backbone(texts)
    for text, row in zip(texts, ours):
        expected = reference.embed(text).mean(axis=0)  # BPEmb's own lookup, one text alone
        np.testing.assert_allclose(row.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_padding_never_counts_as_a_token(backbone):
    alone = backbone(["rock"])
    in_batch = backbone(["rock", "rhythm and blues music of latin america"])
    torch.testing.assert_close(alone[0], in_batch[0], rtol=0, atol=1e-6)


def test_whitespace_and_case_do_not_change_the_text(backbone):
    a, b, c = backbone(["Music video", "music   video", "  MUSIC\tvideo "])
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(a, c, rtol=0, atol=0)


def test_empty_text_is_refused_and_unknown_characters_embed_finitely(backbone):
    with pytest.raises(ValueError, match="empty text"):
        backbone(["Guitar", "   "])
    out = backbone(["☃☃ 漢字", "\u0000"])
    assert torch.isfinite(out).all()


def test_table_is_frozen_whatever_is_asked(backbone):
    backbone.set_trainable("all")
    assert not any(p.requires_grad for p in backbone.parameters())


def test_missing_files_error_names_them_and_where_to_get_them(tmp_path):
    backbone = BPEmbBackbone(BPEmbOptions())
    with pytest.raises(MissingCheckpointError) as err:
        backbone.load_pretrained(tmp_path)
    message = str(err.value)
    assert "en.wiki.bpe.vs100000.model" in message
    assert "en.wiki.bpe.vs100000.d300.w2v.bin" in message
    assert "https://bpemb.h-its.org/en/" in message


def test_explicit_file_pair_and_mismatched_vocabulary(tiny_bpemb_dir):
    model_rel, emb_rel = bpemb_file_names(200, 32)
    source = f"{tiny_bpemb_dir / model_rel},{tiny_bpemb_dir / emb_rel}"
    backbone = BPEmbBackbone(BPEmbOptions(vocab_size=200, dim=32))
    backbone.load_pretrained(source)
    assert backbone(["guitar"]).shape == (1, 32)
    wrong = BPEmbBackbone(BPEmbOptions(vocab_size=300, dim=32))
    with pytest.raises(ValueError, match="vocab_size=300"):
        wrong.load_pretrained(source)
