"""Text backbone: BPEmb subword embeddings (frozen table), masked mean over tokens.

BPEmb (Heinzerling & Strube, 2018) publishes, per language, a SentencePiece BPE model and
word2vec vectors with one row per subword. Files for English, vocabulary ``vs`` and
dimension ``dim``::

    {cache_dir}/en/en.wiki.bpe.vs{vs}.model
    {cache_dir}/en/en.wiki.bpe.vs{vs}.d{dim}.w2v.bin

They are downloaded from https://bpemb.h-its.org/en/ (the ``bpemb`` package's default
``cache_dir`` is ``~/.cache/bpemb``). This adapter never downloads: it loads those files
from a cache directory, or an explicit pair given as ``model_file`` + ``emb_file``.

Text handling: BPEmb's own preprocessing (lower case, digits → 0), runs of whitespace
collapsed, so "Music video" and "music   video" are the same text. A string with no
non-space character is refused with a ``ValueError``; characters the BPE model does not
know become its ``<unk>`` piece, which has a vector, so they embed to a finite vector.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import torch
from torch import nn

from trimodal.backbones.base import Backbone, MissingCheckpointError

BPEMB_URL = "https://bpemb.h-its.org/en/"
TOKENIZER_FILE = "bpemb.model"


def bpemb_file_names(vocab_size: int, dim: int, lang: str = "en") -> tuple[str, str]:
    """Relative paths of the SentencePiece model and the vectors inside a BPEmb cache dir."""
    return (
        f"{lang}/{lang}.wiki.bpe.vs{vocab_size}.model",
        f"{lang}/{lang}.wiki.bpe.vs{vocab_size}.d{dim}.w2v.bin",
    )


def normalize_text(text: str) -> str:
    """BPEmb's preprocessing (lower case, every digit → 0) plus whitespace collapsing."""
    return re.sub(r"\d", "0", " ".join(text.split()).lower())


@dataclasses.dataclass
class BPEmbOptions:
    """Architecture of the BPEmb channel.

    ``vocab_size`` and ``dim`` select the published files (vocabulary 100k in the study's
    slides, 10k in its code); ``max_tokens`` truncates very long texts.
    """

    vocab_size: int = 100000
    dim: int = 300
    lang: str = "en"
    max_tokens: int = 64


class BPEmbBackbone(Backbone):
    """Frozen BPEmb table + masked mean: ``list[str]`` → ``[B, dim]``."""

    modality = "text"
    Options = BPEmbOptions
    presets = {"tiny": {"vocab_size": 200, "dim": 32}, "full": {}}

    def __init__(self, options: BPEmbOptions):
        super().__init__(options)
        # The table is data, not a trainable layer: the study keeps it frozen.
        self.embeddings = nn.Embedding(options.vocab_size, options.dim)
        self.embeddings.weight.requires_grad_(False)
        self._sp = None
        self._sp_proto: bytes | None = None

    @property
    def output_dim(self) -> int:
        return self.options.dim

    def blocks(self) -> list[nn.Module]:
        return []

    def set_trainable(self, trainable_blocks: str | int) -> None:
        # Whatever is asked, the table stays frozen; only the head above it trains.
        self.requires_grad_(False)

    # ------------------------------------------------------------------ loading

    def resolve_files(self, source: str | Path) -> tuple[Path, Path]:
        """Find the (model, vectors) pair for ``source``.

        ``source`` is a BPEmb cache directory, or ``"MODEL_FILE,EMB_FILE"``.
        """
        source = str(source)
        model_rel, emb_rel = bpemb_file_names(
            self.options.vocab_size, self.options.dim, self.options.lang
        )
        if "," in source:
            model_file, emb_file = (Path(p.strip()) for p in source.split(",", 1))
        else:
            model_file, emb_file = Path(source) / model_rel, Path(source) / emb_rel
        missing = [str(p) for p in (model_file, emb_file) if not p.is_file()]
        if missing:
            url = BPEMB_URL.replace("/en/", f"/{self.options.lang}/")
            raise MissingCheckpointError(
                f"BPEmb file(s) not found: {', '.join(missing)}. Get "
                f"{url}{Path(model_rel).name} and {url}{Path(emb_rel).name}.tar.gz (unpack "
                "it) into <cache_dir>/" + self.options.lang + "/ and set "
                "model.channels.text.source to <cache_dir>, or set it to 'MODEL_FILE,EMB_FILE'."
            )
        return model_file, emb_file

    def load_pretrained(self, source: str | Path) -> None:
        """Load the SentencePiece model and the vectors (BPEmb's own loader; no network)."""
        from bpemb import BPEmb

        model_file, emb_file = self.resolve_files(source)
        # With explicit files BPEmb neither resolves a language nor downloads anything.
        bpemb = BPEmb(model_file=model_file, emb_file=emb_file, dim=self.options.dim)
        self._set_tokenizer(model_file.read_bytes())
        pieces = [self._sp.id_to_piece(i) for i in range(self._sp.get_piece_size())]
        missing = [p for p in pieces if p not in bpemb.emb.key_to_index]
        if missing or bpemb.emb.vector_size != self.options.dim:
            raise ValueError(
                f"{emb_file} does not match {model_file}: "
                + (
                    f"{len(missing)} pieces have no vector (e.g. {missing[:3]})"
                    if missing
                    else f"vectors have dim {bpemb.emb.vector_size}, expected {self.options.dim}"
                )
            )
        if len(pieces) != self.options.vocab_size:
            raise ValueError(
                f"{model_file} has {len(pieces)} pieces but vocab_size={self.options.vocab_size}"
            )
        # Rows in SentencePiece id order, whatever order the vectors file uses.
        rows = [bpemb.emb.key_to_index[p] for p in pieces]
        table = torch.from_numpy(bpemb.emb.vectors[rows]).float()
        with torch.no_grad():
            self.embeddings.weight.copy_(table)

    def _set_tokenizer(self, proto: bytes) -> None:
        import sentencepiece as spm

        self._sp_proto = proto
        self._sp = spm.SentencePieceProcessor(model_proto=proto)

    def save_assets(self, directory: Path) -> None:
        if self._sp_proto is None:
            raise RuntimeError("BPEmb backbone has no tokenizer to save; load_pretrained first")
        directory.mkdir(parents=True, exist_ok=True)
        (directory / TOKENIZER_FILE).write_bytes(self._sp_proto)

    def load_assets(self, directory: Path) -> None:
        path = directory / TOKENIZER_FILE
        if not path.is_file():
            raise MissingCheckpointError(f"text tokenizer not found: {path}")
        self._set_tokenizer(path.read_bytes())

    # ------------------------------------------------------------------ forward

    def normalize_text(self, text: str) -> str:
        """BPEmb's preprocessing (see :func:`normalize_text`)."""
        return normalize_text(text)

    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Subword ids and mask for a batch of texts.

        Returns:
            ``input_ids`` ``[B, L]`` (long, padded with 0) and ``attention_mask`` ``[B, L]``
            (bool, True on real tokens).
        """
        if self._sp is None:
            raise RuntimeError(
                "BPEmb backbone has no tokenizer: build the model with a text source "
                "(model.channels.text.source) or load it with TrimodalModel.from_pretrained"
            )
        if isinstance(texts, str):
            raise TypeError("texts must be a list of strings, not a single string")
        ids = []
        for text in texts:
            norm = self.normalize_text(text)
            if not norm:
                raise ValueError(f"cannot embed an empty text (got {text!r})")
            ids.append(self._sp.encode_as_ids(norm)[: self.options.max_tokens])
        length = max(len(t) for t in ids)
        input_ids = torch.zeros(len(ids), length, dtype=torch.long)
        mask = torch.zeros(len(ids), length, dtype=torch.bool)
        for i, t in enumerate(ids):
            input_ids[i, : len(t)] = torch.tensor(t, dtype=torch.long)
            mask[i, : len(t)] = True
        return input_ids, mask

    def forward(self, texts: list[str]) -> torch.Tensor:
        """Embed texts: ``list[str]`` (length B) → ``[B, dim]`` in the table's dtype."""
        input_ids, mask = self.tokenize(texts)
        device = self.embeddings.weight.device
        input_ids, mask = input_ids.to(device), mask.to(device)
        table = self.embeddings.weight
        # The mean in float32 (in bf16 every addition of up to 64 token vectors would round
        # to 8 bits), returned in the table's dtype.
        vectors = self.embeddings(input_ids).float()
        weights = mask.unsqueeze(-1).float()
        # Masked mean: padding rows contribute nothing, whatever the table holds at id 0.
        return ((vectors * weights).sum(1) / weights.sum(1)).to(table.dtype)
