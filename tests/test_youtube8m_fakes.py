"""A loopback stand-in for the YouTube-8M id-mapping site and the YouTube Data API.

Not a test module itself (it holds no tests): the other ``test_youtube8m_*`` modules import it.
The server listens on 127.0.0.1 only, answers in the recorded formats (``i("XXXX","id");``
JSONP, ``videos.list`` JSON, Google error bodies), records every request, can be scripted to
fail (500, slow answers, quota exhaustion, partial and garbled answers), refuses to serve more
than ``max_requests`` requests, and shuts itself down after ``lifetime_s`` in any case.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from data_prep.youtube8m.tfrecord import encode_frame_level, encode_video_level, quantize


def make_item(
    youtube_id: str,
    duration: str = "PT3M20S",
    views: int | None = 50_000,
    likes: int | None = 1_000,
    comments: int | None = 50,
    published: str = "2012-06-01T12:00:00Z",
    title: str | None = None,
    tags: list[str] | None = None,
) -> dict[str, Any]:
    """A ``videos.list`` item as the API returns it (statistics are strings there)."""
    stats = {"favoriteCount": "0"}
    for key, value in (("viewCount", views), ("likeCount", likes), ("commentCount", comments)):
        if value is not None:
            stats[key] = str(value)
    return {
        "kind": "youtube#video",
        "etag": "x",
        "id": youtube_id,
        "snippet": {
            "publishedAt": published,
            "channelId": "UC" + "a" * 22,
            "title": title or f"Video {youtube_id}",
            "description": "",
            "thumbnails": {"default": {"url": "http://127.0.0.1/t.jpg"}},
            "tags": tags if tags is not None else ["live", "rock band"],
            "categoryId": "10",
            "liveBroadcastContent": "none",
        },
        "contentDetails": {"duration": duration, "definition": "hd"},
        "statistics": stats,
    }


class FakeYouTube:
    """The fake server. Script failures by setting the attributes before (or between) runs.

    Attributes:
        id_map: pseudo id -> YouTube id (others answer 404).
        videos: YouTube id -> item (ids not in it are left out of answers).
        id_failures: pseudo id -> list of behaviours consumed one per request
            (``"500"``, ``"slow"``, ``"garbage"``).
        api_failures: list of behaviours consumed one per videos.list request
            (``"500"``, ``"slow"``, ``"garbled"``, ``"ratelimit"``, ``"ok"``).
        quota_left: videos.list requests answered before 403 quotaExceeded (None: unlimited).
        drop_ids: YouTube ids left out of answers although known (partial answers).
    """

    def __init__(
        self,
        id_map: dict[str, str],
        videos: dict[str, dict[str, Any]],
        api_key: str,
        slow_s: float = 1.0,
        max_requests: int = 400,
        lifetime_s: float = 90.0,
    ) -> None:
        self.id_map = dict(id_map)
        self.videos = dict(videos)
        self.api_key = api_key
        self.slow_s = slow_s
        self.max_requests = max_requests
        self.id_failures: dict[str, list[str]] = {}
        self.api_failures: list[str] = []
        self.quota_left: int | None = None
        self.drop_ids: set[str] = set()
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                fake._handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        # A client that gave up on a slow answer leaves a broken pipe: not worth a traceback.
        self.server.handle_error = lambda *a: None  # type: ignore[method-assign]
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,))
        self._thread.daemon = True
        self._watchdog = threading.Timer(lifetime_s, self.server.shutdown)
        self._watchdog.daemon = True

    def __enter__(self) -> FakeYouTube:
        self._thread.start()
        self._watchdog.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._watchdog.cancel()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    # -- helpers for assertions

    def api_requests(self) -> list[dict[str, Any]]:
        """The videos.list requests received, in order."""
        return [r for r in self.requests if r["path"].endswith("/videos")]

    def requested_video_ids(self) -> list[str]:
        """Every YouTube id asked for, over all videos.list requests."""
        return [i for r in self.api_requests() for i in r["query"].get("id", "").split(",") if i]

    def id_requests(self) -> list[str]:
        """Pseudo ids asked for, in order."""
        return [
            r["path"].rsplit("/", 1)[-1][:-3] for r in self.requests if r["path"].endswith(".js")
        ]

    # -- request handling

    def _send(self, h: BaseHTTPRequestHandler, status: int, body: bytes | str, ctype: str) -> None:
        data = body.encode("utf-8") if isinstance(body, str) else body
        try:
            h.send_response(status)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
        except OSError:
            pass  # the client timed out and went away

    def _error(self, h: BaseHTTPRequestHandler, status: int, reason: str, message: str) -> None:
        body = {
            "error": {
                "code": status,
                "message": message,
                "errors": [{"message": message, "domain": "youtube.quota", "reason": reason}],
            }
        }
        self._send(h, status, json.dumps(body), "application/json")

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        parsed = urllib.parse.urlsplit(h.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(parsed.query).items()}
        with self.lock:
            self.requests.append(
                {"path": parsed.path, "query": query, "headers": dict(h.headers.items())}
            )
            over = len(self.requests) > self.max_requests
        if over:
            self._send(h, 503, "request limit of the fake server reached", "text/plain")
            return
        if parsed.path.endswith(".js"):
            self._handle_id(h, parsed.path)
        elif parsed.path.endswith("/videos"):
            self._handle_videos(h, query)
        else:
            self._send(h, 404, "not found", "text/plain")

    def _handle_id(self, h: BaseHTTPRequestHandler, path: str) -> None:
        pid = path.rsplit("/", 1)[-1][:-3]
        with self.lock:
            script = self.id_failures.get(pid, [])
            action = script.pop(0) if script else None
        if action == "500":
            self._send(h, 500, "Internal Server Error", "text/html")
        elif action == "slow":
            time.sleep(self.slow_s)
            self._send(h, 200, f'i("{pid}","{self.id_map.get(pid, "")}");', "text/javascript")
        elif action == "garbage":
            self._send(h, 200, "<html>maintenance</html>", "text/html")
        elif pid in self.id_map and path.split("/")[-2] == pid[:2]:
            self._send(h, 200, f'i("{pid}","{self.id_map[pid]}");', "text/javascript")
        else:
            self._send(h, 404, "<html>Not Found</html>", "text/html")

    def _handle_videos(self, h: BaseHTTPRequestHandler, query: dict[str, str]) -> None:
        key = h.headers.get("X-Goog-Api-Key") or query.get("key")
        if key != self.api_key:
            # Google echoes nothing secret, but a proxy might: prove the client redacts.
            self._error(h, 400, "keyInvalid", f"API key not valid: {key}")
            return
        if query.get("part") != "snippet,contentDetails,statistics":
            self._error(h, 400, "invalidPart", "bad part")
            return
        ids = [i for i in query.get("id", "").split(",") if i]
        if not ids or len(ids) > 50:
            self._error(h, 400, "invalidFilters", "1 to 50 ids")
            return
        with self.lock:
            action = self.api_failures.pop(0) if self.api_failures else "ok"
            if action == "ok" and self.quota_left is not None:
                if self.quota_left <= 0:
                    action = "quota"
                else:
                    self.quota_left -= 1
        if action == "500":
            self._error(h, 500, "backendError", "Backend Error")
        elif action == "slow":
            time.sleep(self.slow_s)
            self._send(h, 200, json.dumps({"items": []}), "application/json")
        elif action == "garbled":
            self._send(
                h, 200, '{"kind": "youtube#videoListResponse", "items": [{"id', "application/json"
            )
        elif action == "ratelimit":
            self._error(h, 403, "rateLimitExceeded", "slow down")
        elif action == "quota":
            self._error(
                h,
                403,
                "quotaExceeded",
                "The request cannot be completed because you have exceeded your quota.",
            )
        else:
            items = [self.videos[i] for i in ids if i in self.videos and i not in self.drop_ids]
            body = {
                "kind": "youtube#videoListResponse",
                "items": items,
                "pageInfo": {"totalResults": len(items), "resultsPerPage": len(items)},
            }
            self._send(h, 200, json.dumps(body), "application/json")


def random_video(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random (mean_rgb, mean_audio) in the dataset's range."""
    return (
        rng.uniform(-2, 2, 1024).astype(np.float32),
        rng.uniform(-2, 2, 128).astype(np.float32),
    )


def video_level_records(
    videos: list[tuple[str, list[int]]], seed: int = 0
) -> tuple[list[bytes], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Serialised video-level Examples for (pseudo id, labels) pairs, and their features."""
    rng = np.random.default_rng(seed)
    records, features = [], {}
    for pid, labels in videos:
        rgb, audio = random_video(rng)
        records.append(encode_video_level(pid, labels, rgb, audio))
        features[pid] = (rgb, audio)
    return records, features


def frame_level_records(
    videos: list[tuple[str, list[int], int]], seed: int = 0
) -> tuple[list[bytes], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Serialised frame-level SequenceExamples for (pseudo id, labels, n frames), and frames."""
    rng = np.random.default_rng(seed)
    records, frames = [], {}
    for pid, labels, n in videos:
        rgb = quantize(rng.uniform(-2, 2, (n, 1024)))
        audio = quantize(rng.uniform(-2, 2, (n, 128)))
        records.append(encode_frame_level(pid, labels, rgb, audio))
        frames[pid] = (rgb, audio)
    return records, frames
