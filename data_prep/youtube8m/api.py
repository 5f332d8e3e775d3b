"""Network steps: YouTube-8M pseudo ids → YouTube ids, and YouTube Data API metadata.

Both steps are resumable: every finished id is appended (and fsync'd) to a JSONL log, and a
re-run skips the ids already in it. The HTTP client is injectable (:class:`HttpClient`; the
default :class:`UrllibClient` uses the standard library) and every base URL is configurable,
which is how the tests run both steps against a local fake server.

The API key is read from an environment variable by the caller and only ever travels in the
``X-Goog-Api-Key`` request header (or, if asked, the ``key`` query parameter); every message
this module produces is passed through :func:`redact` so the key cannot leak into logs,
exceptions or output files.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import random
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from data_prep.youtube8m.jsonl import JsonlAppender, read_jsonl

log = logging.getLogger(__name__)

DEFAULT_ID_MAP_URL = "http://data.yt8m.org/2/j/i"
DEFAULT_API_URL = "https://www.googleapis.com/youtube/v3"
DEFAULT_API_KEY_ENV = "YOUTUBE_API_KEY"
API_PARTS = "snippet,contentDetails,statistics"
MAX_IDS_PER_REQUEST = 50  # videos.list accepts at most 50 ids
QUOTA_REASONS = {"quotaExceeded", "dailyLimitExceeded"}
RATE_REASONS = {"rateLimitExceeded", "userRateLimitExceeded"}  # per-second limits: back off
EXIT_QUOTA = 75  # EX_TEMPFAIL: stopped cleanly, run the same command again later

_PSEUDO_ID = re.compile(r"^[A-Za-z0-9_-]{4}$")
_YOUTUBE_ID = re.compile(r"^[A-Za-z0-9_-]{11}$")
_JSONP = re.compile(r'^\s*i\(\s*"([^"\\]*)"\s*,\s*"([^"\\]*)"\s*\)\s*;?\s*$')


# --------------------------------------------------------------------------------------------
# HTTP


@dataclasses.dataclass
class HttpResponse:
    """Status, body and headers of one HTTP answer (any status, 2xx or not)."""

    status: int
    body: bytes
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def text(self) -> str:
        """The body decoded as UTF-8 (undecodable bytes replaced)."""
        return self.body.decode("utf-8", errors="replace")


class TransportError(Exception):
    """No HTTP answer: timeout, refused or reset connection, malformed response."""


class HttpClient(Protocol):
    """What the network steps need from an HTTP client: one GET."""

    def get(
        self,
        url: str,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> HttpResponse:
        """GET ``url`` with query ``params``; return any HTTP answer, raise TransportError if none."""
        ...


class UrllibClient:
    """:class:`HttpClient` on ``urllib.request`` (no dependency)."""

    def __init__(self, user_agent: str = "trimodal-data-prep") -> None:
        self.user_agent = user_agent

    def get(
        self,
        url: str,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> HttpResponse:
        if params:
            url = f"{url}?{urllib.parse.urlencode(params)}"
        req = urllib.request.Request(
            url, headers={"User-Agent": self.user_agent, **(headers or {})}
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return HttpResponse(resp.status, resp.read(), dict(resp.headers.items()))
        except urllib.error.HTTPError as err:
            try:
                body = err.read()
            except OSError:  # includes timeouts
                body = b""
            return HttpResponse(err.code, body, dict(err.headers.items()) if err.headers else {})
        except (urllib.error.URLError, OSError, TimeoutError, ValueError) as err:
            # ValueError covers http.client's malformed-status errors; never include the URL
            # (it may carry the key when key_in_query is used).
            reason = getattr(err, "reason", err)
            raise TransportError(f"{type(err).__name__}: {reason}") from None


def redact(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` (raw or URL-encoded) replaced by ``***``."""
    if not secret:
        return text
    for form in {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}:
        text = text.replace(form, "***")
    return text


@dataclasses.dataclass
class RetryPolicy:
    """Exponential backoff for transient failures (timeouts, 5xx, 429, rate limits).

    Attempt ``n`` (0-based) waits ``min(max_delay, base_delay * 2**n)``, scaled by a random
    factor in [0.5, 1] so that parallel workers do not retry in lockstep.
    """

    max_attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 64.0
    timeout: float = 30.0
    sleep: Callable[[float], None] = time.sleep

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt + 1``."""
        return min(self.max_delay, self.base_delay * 2**attempt) * random.uniform(0.5, 1.0)


class RetriesExhausted(Exception):
    """A request failed transiently ``max_attempts`` times in a row."""


def get_with_retries(
    client: HttpClient,
    url: str,
    params: Mapping[str, str] | None,
    headers: Mapping[str, str] | None,
    policy: RetryPolicy,
    is_transient: Callable[[HttpResponse], bool],
    secret: str | None = None,
) -> HttpResponse:
    """GET with retries on transport errors and on answers that ``is_transient`` flags.

    Returns the first non-transient answer; raises :class:`RetriesExhausted` (message
    redacted) when every attempt failed.
    """
    last = ""
    for attempt in range(policy.max_attempts):
        try:
            resp = client.get(url, params=params, headers=headers, timeout=policy.timeout)
        except TransportError as err:
            last = f"no answer ({err})"
        else:
            if not is_transient(resp):
                return resp
            last = f"HTTP {resp.status}"
        if attempt + 1 < policy.max_attempts:
            wait = policy.delay(attempt)
            log.info("transient failure (%s); retrying in %.1f s", redact(last, secret), wait)
            policy.sleep(wait)
    raise RetriesExhausted(redact(f"{policy.max_attempts} attempts failed; last: {last}", secret))


def _default_transient(resp: HttpResponse) -> bool:
    return resp.status >= 500 or resp.status in (408, 429)


# --------------------------------------------------------------------------------------------
# Pseudo id → YouTube id


def pseudo_id_url(base_url: str, pseudo_id: str) -> str:
    """``{base}/XX/XXXX.js``: the YouTube-8M id-mapping file of a 4-character pseudo id."""
    return f"{base_url.rstrip('/')}/{pseudo_id[:2]}/{pseudo_id}.js"


def parse_id_jsonp(text: str, pseudo_id: str) -> str:
    """The YouTube id in a mapping answer ``i("XXXX","realid");``.

    Raises:
        ValueError: the answer is not of that form, names another pseudo id, or the id does
            not look like a YouTube id (11 characters of ``[A-Za-z0-9_-]``).
    """
    m = _JSONP.match(text)
    if not m:
        raise ValueError(f"unexpected id-mapping answer {text[:80]!r}")
    got, real = m.groups()
    if got != pseudo_id:
        raise ValueError(f"answer is for pseudo id {got!r}, not {pseudo_id!r}")
    if not _YOUTUBE_ID.match(real):
        raise ValueError(f"{real!r} is not a YouTube video id")
    return real


def _map_one(
    client: HttpClient, base_url: str, pseudo_id: str, policy: RetryPolicy
) -> dict[str, Any] | None:
    """The log line for one pseudo id, or ``None`` if it failed transiently (retry next run)."""
    if not _PSEUDO_ID.match(pseudo_id):
        return {"pseudo_id": pseudo_id, "youtube_id": None, "reason": "invalid pseudo id"}
    try:
        resp = get_with_retries(
            client, pseudo_id_url(base_url, pseudo_id), None, None, policy, _default_transient
        )
    except RetriesExhausted as err:
        log.warning("%s: %s", pseudo_id, err)
        return None
    if resp.status != 200:
        # 404/403: the mapping site has no entry (video removed from the dataset's index).
        return {"pseudo_id": pseudo_id, "youtube_id": None, "reason": f"HTTP {resp.status}"}
    try:
        return {"pseudo_id": pseudo_id, "youtube_id": parse_id_jsonp(resp.text(), pseudo_id)}
    except ValueError as err:
        return {"pseudo_id": pseudo_id, "youtube_id": None, "reason": str(err)}


@dataclasses.dataclass
class StepSummary:
    """What a network step did in this run."""

    total: int = 0
    already_done: int = 0
    done: int = 0
    missing: int = 0
    failed: int = 0
    requests: int = 0
    stopped: str | None = None  # why the run stopped early (None: it finished)
    exit_code: int = 0


def map_pseudo_ids(
    pseudo_ids: Iterable[str],
    out_path: str | Path,
    client: HttpClient | None = None,
    base_url: str = DEFAULT_ID_MAP_URL,
    policy: RetryPolicy | None = None,
    workers: int = 4,
    max_consecutive_failures: int = 50,
    progress: bool = True,
) -> StepSummary:
    """Resolve pseudo ids to YouTube ids, appending ``{"pseudo_id", "youtube_id"}`` lines.

    Ids already in ``out_path`` are skipped. Ids without a mapping (HTTP 404, unparseable
    answer) are recorded with ``youtube_id: null`` and a ``reason``. Ids that keep failing
    transiently are *not* recorded, so the next run retries them; after
    ``max_consecutive_failures`` such ids in a row the run stops (the server is down).
    """
    client = client or UrllibClient()
    policy = policy or RetryPolicy()
    ids = list(dict.fromkeys(pseudo_ids))
    done = {e.get("pseudo_id") for e in read_jsonl(out_path)}
    todo = [i for i in ids if i not in done]
    s = StepSummary(total=len(ids), already_done=len(ids) - len(todo))
    consecutive = 0
    chunk = max(1, workers) * 8
    with (
        JsonlAppender(out_path) as out,
        ThreadPoolExecutor(max_workers=max(1, workers)) as pool,
        tqdm(total=len(todo), desc="yt8m-ids", unit="id", disable=not progress) as bar,
    ):
        for start in range(0, len(todo), chunk):
            batch = todo[start : start + chunk]
            for entry in pool.map(lambda p: _map_one(client, base_url, p, policy), batch):
                bar.update(1)
                s.requests += 1
                if entry is None:
                    s.failed += 1
                    consecutive += 1
                    continue
                consecutive = 0
                out.write(entry)
                if entry["youtube_id"] is None:
                    s.missing += 1
                else:
                    s.done += 1
            if consecutive >= max_consecutive_failures:
                s.stopped = (
                    f"{consecutive} ids in a row failed after retries: the id-mapping server "
                    "looks unreachable; progress is saved, run the command again later"
                )
                s.exit_code = EXIT_QUOTA
                break
    return s


def read_id_map(path: str | Path) -> dict[str, str | None]:
    """``{pseudo_id: youtube_id or None}`` from an id-map log."""
    return {e["pseudo_id"]: e.get("youtube_id") for e in read_jsonl(path) if "pseudo_id" in e}


# --------------------------------------------------------------------------------------------
# YouTube Data API: videos.list


class ApiError(Exception):
    """A non-transient API error other than quota (bad key, bad request); message redacted."""


def next_quota_reset(now: _dt.datetime | None = None) -> _dt.datetime:
    """The next midnight in America/Los_Angeles (when YouTube Data API quotas reset), in UTC."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    try:
        from zoneinfo import ZoneInfo

        pacific: _dt.tzinfo = ZoneInfo("America/Los_Angeles")
    except Exception:  # no tz database: PST is a safe approximation (off by <= 1 h in summer)
        pacific = _dt.timezone(_dt.timedelta(hours=-8))
    local = now.astimezone(pacific)
    midnight = _dt.datetime.combine(local.date() + _dt.timedelta(days=1), _dt.time(), pacific)
    return midnight.astimezone(_dt.timezone.utc)


def _error_reasons(resp: HttpResponse) -> tuple[set[str], str]:
    """The ``reason`` codes and message of a Google API error body."""
    try:
        err = json.loads(resp.body).get("error", {})
    except (ValueError, AttributeError):
        return set(), resp.text()[:200]
    reasons = {e.get("reason", "") for e in err.get("errors", []) if isinstance(e, dict)}
    for detail in err.get("details", []) or []:
        if isinstance(detail, dict) and detail.get("reason"):
            reasons.add(detail["reason"])
    return reasons, str(err.get("message", ""))[:300]


def _api_transient(resp: HttpResponse) -> bool:
    if _default_transient(resp):
        return True
    if resp.status == 403:
        return bool(_error_reasons(resp)[0] & RATE_REASONS)
    if resp.status == 200:
        # A cut-off or garbled body is a transport problem in disguise: ask again.
        try:
            return not isinstance(json.loads(resp.body).get("items"), list)
        except (ValueError, AttributeError):
            return True
    return False


def _slim_item(item: dict[str, Any]) -> dict[str, Any]:
    """Drop the bulky parts of an item that nothing downstream reads (thumbnails, localised copy)."""
    out = {k: item[k] for k in ("snippet", "contentDetails", "statistics") if k in item}
    if "snippet" in out:
        out["snippet"] = {
            k: v for k, v in out["snippet"].items() if k not in ("thumbnails", "localized")
        }
    return out


def fetch_metadata(
    youtube_ids: Iterable[str],
    out_path: str | Path,
    api_key: str,
    client: HttpClient | None = None,
    base_url: str = DEFAULT_API_URL,
    policy: RetryPolicy | None = None,
    batch_size: int = MAX_IDS_PER_REQUEST,
    max_requests: int | None = None,
    key_in_query: bool = False,
    max_consecutive_failures: int = 5,
    progress: bool = True,
) -> StepSummary:
    """Fetch ``videos.list`` metadata, appending one line per id to ``out_path``.

    Lines are ``{"youtube_id", "status": "ok", "snippet", "contentDetails", "statistics"}`` or
    ``{"youtube_id", "status": "missing", "reason"}`` for ids the API did not return (deleted,
    private, blocked). Ids already in ``out_path`` are not requested again.

    Stops cleanly, with everything so far saved and ``exit_code`` :data:`EXIT_QUOTA`, when the
    daily quota is exhausted (HTTP 403 ``quotaExceeded``; the summary says when it resets),
    after ``max_requests`` requests (a self-imposed quota budget), or when
    ``max_consecutive_failures`` batches in a row failed after retries.

    Raises:
        ApiError: a non-transient error (invalid key, bad request); message redacted.
    """
    if not api_key:
        raise ApiError("no API key given")
    if not 1 <= batch_size <= MAX_IDS_PER_REQUEST:
        raise ValueError(f"batch_size must be in 1..{MAX_IDS_PER_REQUEST}")
    client = client or UrllibClient()
    policy = policy or RetryPolicy()
    ids = list(dict.fromkeys(i for i in youtube_ids if i))
    done = {e.get("youtube_id") for e in read_jsonl(out_path)}
    todo = [i for i in ids if i not in done]
    s = StepSummary(total=len(ids), already_done=len(ids) - len(todo))
    request = _VideosRequest(client, base_url, api_key, policy, key_in_query, batch_size)
    consecutive = 0
    with (
        JsonlAppender(out_path) as out,
        tqdm(total=len(todo), desc="yt8m-metadata", unit="video", disable=not progress) as bar,
    ):
        for start in range(0, len(todo), batch_size):
            if max_requests is not None and s.requests >= max_requests:
                s.stopped = (
                    f"request budget of {max_requests} used; progress is saved, "
                    "run the command again to continue"
                )
                break
            batch = todo[start : start + batch_size]
            s.requests += 1
            resp = request(batch)
            if resp is None:
                s.failed += len(batch)
                consecutive += 1
                if consecutive >= max_consecutive_failures:
                    s.stopped = (
                        f"{consecutive} batches in a row failed after retries; progress is "
                        "saved, run the command again later"
                    )
                    break
                continue
            consecutive = 0
            if _quota_exhausted(resp):
                s.stopped = _quota_message(s)
                break
            _raise_for_status(resp, api_key)
            _write_batch(out, batch, json.loads(resp.body)["items"], s, bar)
    if s.stopped:
        s.exit_code = EXIT_QUOTA
    return s


class _VideosRequest:
    """One ``videos.list`` call for a batch of ids, retried; ``None`` when retries ran out."""

    def __init__(
        self,
        client: HttpClient,
        base_url: str,
        api_key: str,
        policy: RetryPolicy,
        key_in_query: bool,
        batch_size: int,
    ) -> None:
        self.client, self.api_key, self.policy = client, api_key, policy
        self.key_in_query, self.batch_size = key_in_query, batch_size
        self.url = f"{base_url.rstrip('/')}/videos"
        self.headers = {"Accept": "application/json"}
        if not key_in_query:
            self.headers["X-Goog-Api-Key"] = api_key

    def __call__(self, batch: list[str]) -> HttpResponse | None:
        params = {"part": API_PARTS, "id": ",".join(batch), "maxResults": str(self.batch_size)}
        if self.key_in_query:
            params["key"] = self.api_key
        try:
            return get_with_retries(
                self.client,
                self.url,
                params,
                self.headers,
                self.policy,
                _api_transient,
                secret=self.api_key,
            )
        except RetriesExhausted as err:
            log.warning("batch of %d ids not fetched: %s", len(batch), err)
            return None


def _quota_exhausted(resp: HttpResponse) -> bool:
    return resp.status == 403 and bool(_error_reasons(resp)[0] & QUOTA_REASONS)


def _quota_message(s: StepSummary) -> str:
    reset = next_quota_reset()
    return (
        "YouTube Data API daily quota exhausted; progress is saved "
        f"({s.already_done + s.done + s.missing} of {s.total} ids done). "
        f"Quota resets at midnight Pacific time: {reset:%Y-%m-%d %H:%M} UTC. "
        "Run the same command again then to continue."
    )


def _raise_for_status(resp: HttpResponse, api_key: str) -> None:
    """Raise :class:`ApiError` (key redacted) for any answer but HTTP 200."""
    if resp.status == 200:
        return
    reasons, message = _error_reasons(resp)
    raise ApiError(
        redact(
            f"videos.list failed with HTTP {resp.status} "
            f"({', '.join(sorted(reasons)) or 'no reason given'}): {message}",
            api_key,
        )
    )


def _write_batch(
    out: JsonlAppender, batch: list[str], items: list[Any], s: StepSummary, bar: Any
) -> None:
    """One line per requested id: its metadata, or ``missing`` when the API left it out."""
    returned = {
        item["id"]: item for item in items if isinstance(item, dict) and item.get("id") in batch
    }
    for vid in batch:
        if vid in returned:
            out.write({"youtube_id": vid, "status": "ok", **_slim_item(returned[vid])})
            s.done += 1
        else:
            out.write(
                {
                    "youtube_id": vid,
                    "status": "missing",
                    "reason": "not returned by videos.list (deleted, private or blocked)",
                }
            )
            s.missing += 1
        bar.update(1)


def read_metadata(path: str | Path) -> dict[str, dict[str, Any]]:
    """``{youtube_id: metadata line}`` from a metadata log (the last line of an id wins)."""
    return {e["youtube_id"]: e for e in read_jsonl(path) if "youtube_id" in e}


def api_key_from_env(
    env_var: str = DEFAULT_API_KEY_ENV, environ: Mapping[str, str] | None = None
) -> str:
    """The API key from ``env_var``; raises :class:`ApiError` (naming the variable) if unset."""
    import os

    key = (environ if environ is not None else os.environ).get(env_var, "").strip()
    if not key:
        raise ApiError(
            f"no YouTube Data API key: set the environment variable {env_var} "
            "(the key is never read from the command line, so it stays out of shell history)"
        )
    return key


def ids_to_fetch(
    id_map: Mapping[str, str | None], pseudo_ids: Sequence[str] | None = None
) -> list[str]:
    """The YouTube ids of ``pseudo_ids`` (default: all) that the id map resolved."""
    keys = id_map.keys() if pseudo_ids is None else pseudo_ids
    return [y for p in keys if (y := id_map.get(p))]
