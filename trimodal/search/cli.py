"""The search commands: ``python -m trimodal.search embed|index|search|serve``.

Each command is a ``main_<name>(argv) -> exit code`` with its ``build_<name>_parser()``. Bad
input (a missing file, an unknown id, a wrong option) prints one ``error:`` line and exits
with 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trimodal.search.errors import SearchError

DEFAULT_PORT = 8765


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (exit 2), like every other bad input."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown, except unset ones (``None``, off switches)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False) or action.default is argparse.SUPPRESS:
            return action.help or ""
        return super()._get_help_string(action) or ""


def _parser(prog: str, description: str) -> _Parser:
    parser = _Parser(
        prog=f"trimodal {prog}",
        description=description,
        formatter_class=_Formatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def _run(args: argparse.Namespace, work: Callable[[argparse.Namespace], int]) -> int:
    from trimodal.config import ConfigError
    from trimodal.prepare.errors import PrepareError

    try:
        return work(args)
    except (SearchError, ConfigError, PrepareError, FileNotFoundError, KeyError) as err:
        if args.debug:
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {message}", file=sys.stderr)
        return 2


def _options(args: argparse.Namespace) -> Any:
    from trimodal.search.embedder import EmbedOptions

    return EmbedOptions(
        batch_size=args.batch_size,
        num_workers=0,
        prepare_workers=args.workers,
        device=args.device,
        precision=args.precision,
        previews=not getattr(args, "no_previews", False),
        show_progress=not args.no_progress,
        executor=getattr(args, "executor", "local"),
        ray_address=getattr(args, "ray_address", None),
        replicas=getattr(args, "replicas", 1),
    )


def _cluster(options: Any) -> Any:
    """The Ray session of an ``--executor ray`` run (one for its decoding and its model
    pass), else nothing."""
    if options.executor != "ray":
        return contextlib.nullcontext()
    from trimodal.prepare.ray_executor import ray_session

    return ray_session(options.ray_address, max(options.prepare_workers, options.replicas))


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    from trimodal.search.embedder import PRECISIONS

    parser.add_argument("--batch-size", type=int, default=16, help="clips per forward pass")
    parser.add_argument("--workers", type=int, default=2, help="decoding processes")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps")
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=sorted(PRECISIONS),
        help="floating-point precision of the model",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


# ----------------------------------------------------------------------------- embed


def build_embed_parser() -> argparse.ArgumentParser:
    parser = _parser(
        "embed",
        "Embed media files, directories or raw corpora (videos.jsonl), a prepared split, or "
        "texts, with a trained model. Media are cut into clips exactly as for training.",
    )
    parser.add_argument("sources", nargs="*", help="media files, directories, videos.jsonl")
    parser.add_argument("--model", required=True, help="a saved model directory (RUN/best)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--prepared", help="embed this prepared directory's --split instead")
    parser.add_argument("--split", default="test", help="the split of --prepared")
    parser.add_argument("--text", action="append", default=[], help="a text to embed (repeat)")
    parser.add_argument("--text-file", help="texts to embed, one per line")
    parser.add_argument(
        "--data-config",
        help="clip settings: a YAML (data: section) or a prepared directory; default: those "
        "of the data the model was trained on (RUN/config.yaml), else DataConfig's",
    )
    parser.add_argument("--no-previews", action="store_true", help="no thumbnails/audio snippets")
    parser.add_argument(
        "--executor",
        default="local",
        choices=["local", "ray"],
        help="local, or ray: decoding in Ray tasks, the model in --replicas Ray actors "
        "(pip install 'trimodal[ray]'; docs/cluster.md)",
    )
    parser.add_argument(
        "--ray-address",
        help="with --executor ray: the cluster to join (auto, or ray://HOST:10001); default: "
        "start a local Ray with --workers CPUs",
    )
    parser.add_argument(
        "--replicas", type=int, default=1, help="with --executor ray: model replicas (actors)"
    )
    _add_run_options(parser)
    return parser


def main_embed(argv: list[str] | None = None) -> int:
    args = build_embed_parser().parse_args(argv)
    return _run(args, _embed)


def _embed(args: argparse.Namespace) -> int:
    from trimodal.search import embedder

    texts = list(args.text) + (embedder.read_text_file(args.text_file) if args.text_file else [])
    kinds = sum(map(bool, (args.sources, args.prepared, texts)))
    if kinds != 1:
        raise SearchError("give exactly one of: media sources, --prepared DIR, --text/--text-file")
    if any(not t.strip() for t in texts):
        raise SearchError("empty text query")
    options = _options(args)
    options.check()
    if args.sources:  # validated before the model loads
        embedder.collect_records(args.sources)
    data_config = None
    if args.sources:
        data_config = embedder.data_config_from(args.data_config, args.model)
    model, model_fp = embedder.load_model(args.model, args.device)
    info = {"model": str(Path(args.model).resolve())}
    if texts:
        path = embedder.write_texts(args.out, texts, embedder.embed_texts(model, texts), info)
        print(f"embedded {len(texts)} texts into {path}")
        return 0
    with _cluster(options):
        if args.prepared:
            meta = embedder.embed_prepared(
                model, args.prepared, args.split, args.out, model_fp=model_fp, options=options,
                info=info,
            )  # fmt: skip
        else:
            meta = embedder.embed_media(
                model, args.sources, args.out, model_fp=model_fp, data_config=data_config,
                options=options, info=info,
            )  # fmt: skip
    print(
        f"embedded {meta['videos']} videos ({meta['clips']} clips; {meta['reused_videos']} "
        f"reused from an earlier run), skipped {meta['skipped']} (see "
        f"{Path(args.out) / 'skipped.jsonl'}), into {args.out}"
    )
    return 0


# ----------------------------------------------------------------------------- index


def build_index_parser() -> argparse.ArgumentParser:
    from trimodal.search.index import (
        APPROXIMATE_ABOVE,
        CODECS,
        DEFAULT_CODEC,
        DEFAULT_NPROBE,
        DEFAULT_RESCORE,
    )

    parser = _parser(
        "index",
        "Build a search index (one FAISS index per gallery: audio, video) from embed outputs, "
        "or --add them to an existing one without a rebuild.",
    )
    parser.add_argument("embeddings", nargs="+", help="embed output directories")
    parser.add_argument("--out", required=True, help="index directory")
    parser.add_argument("--add", action="store_true", help="add to the index at --out")
    parser.add_argument(
        "--kind",
        default="auto",
        choices=["auto", "exact", "ivf"],
        help="exact search, an IVF (approximate) index, or auto: IVF above --approximate-above items",
    )
    parser.add_argument(
        "--approximate-above", type=int, default=APPROXIMATE_ABOVE,
        help="with --kind auto: an IVF index above this many items, exact below",
    )  # fmt: skip
    parser.add_argument("--nlist", type=int, default=None, help="IVF lists (default: 4*sqrt(N))")
    parser.add_argument("--nprobe", type=int, default=DEFAULT_NPROBE, help="IVF lists per query")
    parser.add_argument(
        "--codec", default=DEFAULT_CODEC, choices=list(CODECS),
        help="how IVF lists store vectors: Flat (float32) or SQ8 (8-bit codes, re-scored)",
    )  # fmt: skip
    parser.add_argument(
        "--rescore", type=int, default=None,
        help="IVF: re-score rescore*k candidates exactly from the stored vectors (1: none; "
        f"default: {DEFAULT_RESCORE})",
    )  # fmt: skip
    return parser


def main_index(argv: list[str] | None = None) -> int:
    args = build_index_parser().parse_args(argv)
    return _run(args, _index)


def _index(args: argparse.Namespace) -> int:
    import numpy as np

    from trimodal.search.embedder import load_videos
    from trimodal.search.index import IndexSpec, add_to_index, build_index

    runs = [load_videos(path) for path in args.embeddings]
    galleries = sorted({"audio", "video"} & set(runs[0][2]["modalities"]))
    if not galleries:
        raise SearchError("the embeddings have neither audio nor video to index")
    for _, _, meta in runs[1:]:
        if meta["model_fingerprint"] != runs[0][2]["model_fingerprint"]:
            raise SearchError("the embed outputs come from different models")
    items = [item for run in runs for item in run[0]]
    vectors = {m: np.concatenate([run[1][m] for run in runs]) for m in galleries}
    if args.add:
        meta = add_to_index(args.out, items, vectors)
        print(f"added {len(items)} items to {args.out} (now {meta['count']}, {meta['kind']})")
        return 0
    first = runs[0][2]
    info = {k: first.get(k) for k in ("model", "model_fingerprint", "data_config")}
    spec = IndexSpec(
        args.kind, args.approximate_above, args.nlist, args.nprobe, args.codec, args.rescore
    )
    meta = build_index(args.out, items, vectors, spec, info | {"embeddings": args.embeddings})
    print(f"indexed {meta['count']} items ({meta['kind']}, {', '.join(galleries)}) in {args.out}")
    return 0


# ----------------------------------------------------------------------------- search


def _add_query_model(parser: argparse.ArgumentParser) -> None:
    """The model that embeds text and media queries, and its device."""
    parser.add_argument(
        "--model", help="model directory (default: the one the index was made with)"
    )
    parser.add_argument("--device", default="cpu", help="device for embedding queries")


def build_search_parser() -> argparse.ArgumentParser:
    parser = _parser(
        "search",
        "Search an index: by text, by an audio or video file, or for more items like one of "
        "the catalogue (audio and video similarity, weighted).",
    )
    parser.add_argument("--index", required=True, help="index directory")
    query = parser.add_mutually_exclusive_group(required=True)
    query.add_argument("--text", help="a text query")
    query.add_argument("--text-file", help="text queries, one per line")
    query.add_argument("--audio", help="a media file: search with its sound")
    query.add_argument("--video", help="a media file: search with its picture")
    query.add_argument("--like", metavar="ID", help="more items like this catalogue item")
    parser.add_argument(
        "--in", dest="gallery", choices=["audio", "video"], default=None,
        help="the gallery (default: video for text and audio queries, audio for video ones)",
    )  # fmt: skip
    parser.add_argument("-k", type=int, default=10, help="results per query")
    parser.add_argument(
        "--like-weights", nargs=2, type=float, default=[0.5, 0.5], metavar=("AUDIO", "VIDEO"),
        help="--like: weights of the audio and the video similarity",
    )  # fmt: skip
    _add_query_model(parser)
    parser.add_argument("--nprobe", type=int, help="IVF lists per query (default: the index's)")
    parser.add_argument("--json", action="store_true", help="JSON instead of a table")
    return parser


def main_search(argv: list[str] | None = None) -> int:
    args = build_search_parser().parse_args(argv)
    return _run(args, _search)


def _search(args: argparse.Namespace) -> int:
    from trimodal.search.embedder import read_text_file
    from trimodal.search.index import Catalogue
    from trimodal.search.query import QueryEngine, format_table, like_weights

    if args.k < 1:
        raise SearchError(f"-k must be >= 1, got {args.k}")
    engine = QueryEngine(Catalogue.load(args.index), args.model, args.device)
    if args.nprobe:
        engine.cat.set_nprobe(args.nprobe)
    if args.like is not None:
        weights = like_weights(*args.like_weights)
        results = [(f"like {args.like}", engine.like(args.like, args.k, weights))]
    elif args.text is not None or args.text_file:
        texts = [args.text] if args.text is not None else read_text_file(args.text_file)
        results = list(zip(texts, engine.text(texts, args.gallery, args.k)))
    else:
        modality = "audio" if args.audio else "video"
        path = args.audio or args.video
        results = [(f"{modality} of {path}", engine.media(path, modality, args.gallery, args.k))]
    if args.json:
        out = [{"query": q, "hits": [h.to_dict() for h in hits]} for q, hits in results]
        print(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        print("\n\n".join(f"{q}\n\n{format_table(hits)}" for q, hits in results))
    return 0


# ----------------------------------------------------------------------------- serve


def build_serve_parser() -> argparse.ArgumentParser:
    from trimodal.search.server import MAX_UPLOAD_MB

    parser = _parser(
        "serve", "A local search page over an index (text box, upload, more like this)."
    )
    parser.add_argument("--index", required=True, help="index directory")
    _add_query_model(parser)
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (local only by default)"
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on")
    parser.add_argument("--max-upload-mb", type=float, default=MAX_UPLOAD_MB, help="upload limit")
    parser.add_argument(
        "--media-root", help="media are served only from inside this directory (default: the "
        "deepest directory holding every catalogue item's file)",
    )  # fmt: skip
    return parser


def main_serve(argv: list[str] | None = None) -> int:
    args = build_serve_parser().parse_args(argv)
    return _run(args, _serve)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from trimodal.search.index import Catalogue
    from trimodal.search.query import QueryEngine
    from trimodal.search.server import create_app

    engine = QueryEngine(Catalogue.load(args.index), args.model, args.device)
    app = create_app(engine, media_root=args.media_root, max_upload_mb=args.max_upload_mb)
    print(f"serving {len(engine.cat)} items on http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


COMMANDS = {"embed": main_embed, "index": main_index, "search": main_search, "serve": main_serve}


def main(argv: list[str] | None = None) -> int:
    """``python -m trimodal.search COMMAND ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        names = "|".join(COMMANDS)
        if argv and argv[0] in ("-h", "--help"):
            print(f"usage: python -m trimodal.search {{{names}}} ... (COMMAND --help for more)")
            return 0
        got = repr(argv[0]) if argv else "nothing"
        print(f"error: expected a command {{{names}}}, got {got}", file=sys.stderr)
        return 2
    return COMMANDS[argv[0]](argv[1:])
