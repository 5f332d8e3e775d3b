"""Tiny random-weight assets for tests and the embedded demo.

The tiny presets run the same code paths as the full backbones; only sizes differ. The one
asset a random init cannot provide is BPEmb's SentencePiece model, so
:func:`make_tiny_bpemb` trains a small BPE model on a built-in music word list (in well
under a second) and writes it, with random vectors, in BPEmb's own cache layout.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from trimodal.backbones.bpemb import bpemb_file_names

# Enough varied text for a 200-piece BPE vocabulary; the words are the kind the text
# channel sees (YouTube-8M music labels and tags).
_MUSIC_WORDS = """
music video concert guitar piano drum bass electric acoustic string instrument keyboard
organ violin cello saxophone trumpet orchestra choir singing singer vocal band rock pop
jazz blues country folk hip hop rap electronic dance techno house dubstep heavy metal punk
reggae soul funk disco classical opera musical theatre karaoke cover remix live official
audio lyrics album single record studio tour festival stage dj drummer guitarist pianist
bassist percussion accordion harmonica banjo ukulele flute clarinet trombone harp synthesizer
beat rhythm tempo melody harmony chord note scale key major minor tune song track hit chart
rhythm and blues music of latin america gospel christian worship anime game soundtrack
""".split()


def make_tiny_bpemb(
    cache_dir: str | Path, vocab_size: int = 200, dim: int = 32, seed: int = 0, lang: str = "en"
) -> Path:
    """Write a tiny BPEmb-compatible pair under ``cache_dir`` and return ``cache_dir``.

    Files: ``{lang}/{lang}.wiki.bpe.vs{vocab_size}.model`` (SentencePiece BPE) and
    ``{lang}/{lang}.wiki.bpe.vs{vocab_size}.d{dim}.w2v.bin`` (gensim word2vec binary, one
    random vector per piece, in SentencePiece id order, as BPEmb publishes them).
    Existing files are reused.
    """
    import sentencepiece as spm
    from gensim.models import KeyedVectors

    cache_dir = Path(cache_dir)
    model_rel, emb_rel = bpemb_file_names(vocab_size, dim, lang)
    model_path, emb_path = cache_dir / model_rel, cache_dir / emb_rel
    if model_path.is_file() and emb_path.is_file():
        return cache_dir
    model_path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sentences = [" ".join(rng.choice(_MUSIC_WORDS, size=8)) for _ in range(400)]
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=proto,
        vocab_size=vocab_size,
        model_type="bpe",
        character_coverage=1.0,
        num_threads=1,
        minloglevel=2,
    )
    model_path.write_bytes(proto.getvalue())
    sp = spm.SentencePieceProcessor(model_proto=proto.getvalue())
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    vectors = KeyedVectors(vector_size=dim)
    vectors.add_vectors(pieces, rng.standard_normal((len(pieces), dim)).astype(np.float32))
    vectors.save_word2vec_format(str(emb_path), binary=True)
    return cache_dir
