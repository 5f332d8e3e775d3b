"""Use the space: embed media, index a catalogue, search it, serve a page over it.

- :mod:`~trimodal.search.embedder`: files, directories, a raw corpus or a prepared split →
  clip- and video-level embeddings (through ``prepare`` and :mod:`trimodal.embedding`);
- :mod:`~trimodal.search.index`: one FAISS index per modality with the items beside it;
- :mod:`~trimodal.search.query`: text, media or "more like this" queries;
- :mod:`~trimodal.search.server`: a local web page over an index;
- :mod:`~trimodal.search.cli`: ``python -m trimodal.search embed|index|search|serve``.

FAISS, FastAPI and uvicorn come with the ``search`` extra (``pip install -e '.[search]'``).
"""

from trimodal.search.embedder import (
    EmbedOptions,
    embed_files,
    embed_media,
    embed_prepared,
    embed_texts,
    load_model,
    load_videos,
)
from trimodal.search.errors import SearchError
from trimodal.search.index import Catalogue, IndexSpec, add_to_index, build_index
from trimodal.search.query import Hit, like_weights, more_like_this, search_vector

__all__ = [
    "Catalogue",
    "EmbedOptions",
    "Hit",
    "IndexSpec",
    "SearchError",
    "add_to_index",
    "build_index",
    "embed_files",
    "embed_media",
    "embed_prepared",
    "embed_texts",
    "like_weights",
    "load_model",
    "load_videos",
    "more_like_this",
    "search_vector",
]
