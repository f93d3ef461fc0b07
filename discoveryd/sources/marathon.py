"""The Marathon source: a `/v2/apps` snapshot kept current by the `/v2/events` stream.

Task status and health events are applied to the model directly (consumers see them
without waiting for a fetch); app-level events schedule a snapshot fetch, coalesced
to one in flight plus one pending. Every (re)connect and every `refresh_seconds`
re-syncs. `marathon.urls` are tried in order; the first that answers is kept, so a
dead first URL costs one short connect timeout, never stalled updates.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

import aiohttp

from discoveryd.metrics import MARATHON_EVENT_TYPES, Metrics
from discoveryd.model.cluster import with_marathon
from discoveryd.model.marathon import MarathonSnapshot
from discoveryd.model.marathon_update import (
    apply_health_change,
    apply_status_update,
    health_change_needs_fetch,
    remove_app,
)
from discoveryd.settings import MarathonSettings, redact_url
from discoveryd.sources.backoff import backoff
from discoveryd.sources.marathon_apps import (
    MarathonFormatError,
    parse_apps,
    parse_health_change,
    parse_status_update,
)
from discoveryd.sources.sse import SseError, SseParser
from discoveryd.store import Store

log = logging.getLogger("discoveryd.marathon")

Reducer = Callable[[MarathonSnapshot], MarathonSnapshot]
SUBSCRIBED = ("status_update_event", "health_status_changed_event", "api_post_event",
              "app_terminated_event", "deployment_info", "deployment_success",
              "deployment_failed", "deployment_step_success", "event_stream_attached")
# A stream that stayed connected this long (or as long as the pause before it) served:
# the next reconnect starts back-off afresh instead of waiting longer and longer.
HEALTHY_STREAM_SECONDS = 1.0
REFETCH = frozenset({"api_post_event", "app_terminated_event", "deployment_info",
                     "deployment_success", "deployment_failed", "deployment_step_success"})
# Marathon 1.6/1.7 send deployment events with whole group trees (many MB) unless asked
# for light ones; 1.8+ only sends light ones, and 1.4/1.5 ignore the unknown parameter.
EVENTS_PATH = ("/v2/events?" + "&".join(f"event_type={t}" for t in SUBSCRIBED)
               + "&plan-format=light")


def _decode_apps(body: bytes) -> MarathonSnapshot:
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise MarathonFormatError(f"/v2/apps answer is not JSON: {e}") from None
    return parse_apps(raw)


def _tasks(snap: MarathonSnapshot) -> set[tuple[str, str | None]]:
    return {(t.task_id, t.state) for a in snap.apps.values() for t in a.tasks}


def _basic(credentials: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}


def split_userinfo(url: str) -> tuple[str, str | None]:
    """"http://u:p@host/x" -> ("http://host/x", "u:p"): aiohttp refuses an Authorization
    header together with credentials in the URL, so they travel as the header alone."""
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at:
        return url, None
    user, _, password = userinfo.partition(":")
    bare = urlunsplit(parts._replace(netloc=host))
    return bare, f"{unquote(user)}:{unquote(password)}"


class MarathonError(Exception):
    """A request to every Marathon URL failed; the message says how."""


class MarathonSource:
    def __init__(self, settings: MarathonSettings, store: Store, metrics: Metrics, *,
                 on_task_change: Callable[[], None] | None = None,
                 stall_timeout: float = 60.0, connect_timeout: float = 2.0,
                 backoff_base: float = 0.5, backoff_cap: float = 30.0,
                 coalesce_seconds: float = 0.2) -> None:
        if not settings.urls:
            raise ValueError("marathon.urls is empty")
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.on_task_change = on_task_change
        self.stall_timeout = stall_timeout  # no bytes (not even keep-alives) for this long
        self.connect_timeout = min(connect_timeout, settings.timeout)
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self.coalesce_seconds = coalesce_seconds  # events this close together share a fetch
        # The URLs as requested (no userinfo) and the Authorization header each one gets:
        # marathon.auth for all of them, else the user:pass@ of that URL, if any.
        self._urls: list[str] = []
        self._auth_headers: list[dict[str, str]] = []
        in_urls = False
        for url in settings.urls:
            bare, credentials = split_userinfo(url)
            in_urls |= credentials is not None
            self._urls.append(bare)
            credentials = settings.auth or credentials
            self._auth_headers.append(_basic(credentials) if credentials else {})
        if settings.auth and in_urls:
            log.warning("marathon_auth_overrides_url_credentials: marathon.auth is set, the "
                        "user:password in marathon.urls is not used")
        self._current = 0  # index of the URL that last worked
        self._fetch_wanted = asyncio.Event()
        self._replay: list[Reducer] | None = None  # events applied while a fetch is in flight
        self._session: aiohttp.ClientSession | None = None
        self.connected = False
        self._connected_at: float | None = None  # monotonic time the open stream connected
        self.last_snapshot_at: float | None = None
        self.last_error: str | None = None

    def status(self) -> dict[str, Any]:
        """For /v1/state."""
        snap = self.store.current.marathon
        return {
            "url": redact_url(self.settings.urls[self._current]),
            "connected": self.connected,
            "events": self.settings.events,
            "last_snapshot": self.last_snapshot_at,
            "apps": len(snap.apps) if snap else 0,
            "tasks": snap.task_count if snap else 0,
            "last_error": self.last_error,
        }

    def request_fetch(self) -> None:
        """Ask for a snapshot fetch; calls while one is pending or running coalesce."""
        self._fetch_wanted.set()

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session:
            self._session = session
            fetcher = asyncio.create_task(self._fetch_loop(), name="marathon-fetch")
            events = (asyncio.create_task(self._event_loop(), name="marathon-events")
                      if self.settings.events else None)
            deaths = 0
            try:
                while True:
                    started = time.monotonic()
                    await asyncio.wait({fetcher} if events is None else {fetcher, events},
                                       return_when=asyncio.FIRST_COMPLETED)
                    if events is not None and events.done():
                        events.result()  # it never returns: raise what ended it
                        raise RuntimeError("marathon event loop returned")
                    # The fetcher never ends on its own (fetch_once never raises): had it
                    # died silently, no snapshot would ever be fetched again.
                    error = fetcher.exception() if not fetcher.cancelled() else None
                    reason = "cancelled" if error is None else f"{type(error).__name__}: {error}"
                    deaths = 1 if time.monotonic() - started > self.backoff_cap else deaths + 1
                    pause = self._backoff(deaths)
                    log.error("marathon_fetcher_died error=%s restart_in=%.1fs", reason, pause,
                              exc_info=error)
                    self.last_error = f"snapshot fetcher died: {reason}"
                    await asyncio.sleep(pause)
                    fetcher = asyncio.create_task(self._fetch_loop(), name="marathon-fetch")
            finally:
                for task in (fetcher, events):
                    if task is not None:
                        task.cancel()
                self._set_connected(False)
                await asyncio.gather(fetcher, *([events] if events else []),
                                     return_exceptions=True)

    # --- snapshot ---------------------------------------------------------------------

    async def _fetch_loop(self) -> None:
        ok = await self.fetch_once()
        failures = 0
        while True:
            if ok:
                failures = 0
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation.
                try:
                    async with asyncio.timeout(self.settings.refresh_seconds):
                        await self._fetch_wanted.wait()
                    # A burst arrives over many reads: let it finish, then fetch once.
                    await asyncio.sleep(self.coalesce_seconds)
                except TimeoutError:
                    pass
            else:
                # Retry on our own, not at the next event or refresh_seconds: the changes
                # that asked for this fetch are not announced again. Events meanwhile do
                # not make a failing Marathon answer more often than the back-off.
                failures += 1
                await asyncio.sleep(min(self._backoff(failures), self.settings.refresh_seconds))
            self._fetch_wanted.clear()
            ok = await self.fetch_once()
            if not self.settings.events:
                self._set_connected(ok)

    async def fetch_once(self) -> bool:
        """Fetch and install a snapshot; on any failure keep the last one. Never raises."""
        try:
            return await self._fetch_once()
        except Exception as e:  # a bug must not stop all future fetches: log, retry later
            log.exception("marathon_fetch_error")
            self.metrics.marathon_fetches.labels("error").inc()
            self.last_error = f"{type(e).__name__}: {e}"
            return False

    async def _fetch_once(self) -> bool:
        self._replay = []
        try:
            body = await self._get_body("/v2/apps?embed=apps.tasks")
            # Decoding thousands of apps takes a few hundred ms: off the loop thread.
            snap = await asyncio.to_thread(_decode_apps, body)
        except (MarathonError, MarathonFormatError) as e:
            self.metrics.marathon_fetches.labels("error").inc()
            self.last_error = str(e)
            log.warning("marathon_fetch_failed error=%s", e)
            return False
        finally:
            replay, self._replay = self._replay, None
        for reducer in replay:  # events newer than the fetch's start win
            snap = reducer(snap)
        for app_id, reason in snap.skipped:
            log.warning("marathon_app_skipped app_id=%s reason=%s", app_id, reason)
        self.metrics.marathon_fetches.labels("ok").inc()
        old = self.store.current.marathon
        self._install(snap)
        self.last_snapshot_at = time.time()
        if self.connected or not self.settings.events:
            self.last_error = None  # recovered: /v1/state shows no stale error
        if self.on_task_change is not None and old is not None and _tasks(old) != _tasks(snap):
            # The snapshot found task changes no event told us of (lost while the stream
            # was down or stalled): Mesos has them too, and DNS follows Mesos only when
            # told, else not before mesos.refresh_seconds.
            self.on_task_change()
        return True

    def _install(self, snap: MarathonSnapshot) -> None:
        now = time.time()
        self.store.apply(lambda s: with_marathon(s, snap, now))
        self.metrics.marathon_apps.set(len(snap.apps))
        self.metrics.marathon_tasks.set(snap.task_count)
        self.metrics.last_update.labels("marathon").set(now)

    async def _get_body(self, path: str) -> bytes:
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout,
                                        sock_connect=self.connect_timeout)
        resp = await self._open(path, timeout, {"Accept": "application/json"})
        async with resp:
            try:
                return await resp.read()
            except (aiohttp.ClientError, TimeoutError) as e:
                raise MarathonError(f"{resp.url}: invalid answer: {e}") from None

    async def _open(self, path: str, timeout: aiohttp.ClientTimeout,
                    headers: dict[str, str],
                    headers_timeout: float | None = None) -> aiohttp.ClientResponse:
        """GET `path` from the URL that last worked, then the others in order.

        `headers_timeout` bounds the wait for each URL's response headers (a URL that
        accepts the connection and never answers then fails over like a refused one).
        """
        urls = self._urls
        order = [self._current, *(i for i in range(len(urls)) if i != self._current)]
        errors = []
        for i in order:
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation.
                async with asyncio.timeout(headers_timeout):
                    resp = await self._get_following(urls[i] + path, timeout,
                                                     {**headers, **self._auth_headers[i]})
            except TimeoutError as e:
                what = str(e) or f"no answer within {headers_timeout or self.settings.timeout}s"
                errors.append(f"{redact_url(urls[i])}: TimeoutError {what}")
                continue
            except aiohttp.ClientError as e:
                errors.append(f"{redact_url(urls[i])}: {type(e).__name__} {e}".strip())
                continue
            if resp.status == 200:
                if i != self._current:
                    log.info("marathon_failover url=%s", redact_url(urls[i]))
                    self._current = i
                return resp
            errors.append(f"{redact_url(urls[i])}: HTTP {resp.status}")
            resp.release()
        raise MarathonError("; ".join(errors))

    async def _get_following(self, url: str, timeout: aiohttp.ClientTimeout,
                             headers: dict[str, str]) -> aiohttp.ClientResponse:
        """GET, following redirects to the leader ourselves so basic auth is kept."""
        assert self._session is not None
        for _ in range(5):
            resp = await self._session.get(url, timeout=timeout, allow_redirects=False,
                                           headers=headers)
            location = resp.headers.get("Location")
            if resp.status not in (301, 302, 303, 307, 308) or not location:
                return resp
            resp.release()
            # Credentials in a Location are not sent (aiohttp refuses them with our header).
            url = split_userinfo(urljoin(url, location))[0]
        raise aiohttp.ClientError(f"too many redirects ending at {redact_url(url)}")

    # --- events -----------------------------------------------------------------------

    async def _event_loop(self) -> None:
        failures, pause = 0, 0.0
        while True:
            self._connected_at = None
            try:
                await self._stream_once()
                reason = "stream_ended"
            except (MarathonError, SseError, aiohttp.ClientError, TimeoutError) as e:
                reason = f"{type(e).__name__}: {e}"
            except Exception as e:  # a bug must not end the source: log it and reconnect
                log.exception("marathon_stream_error")
                reason = f"{type(e).__name__}: {e}"
            self._set_connected(False)
            self.last_error = reason
            up = 0.0 if self._connected_at is None else time.monotonic() - self._connected_at
            if up >= min(pause, HEALTHY_STREAM_SECONDS):
                # It served: a stream a proxy cuts every few seconds is reopened at once,
                # not after a back-off grown to backoff_cap (changes meanwhile unseen).
                # Streams that die as soon as they open still back off exponentially.
                failures = 0
            failures += 1
            pause = self._backoff(failures)
            log.warning("marathon_stream_lost reason=%s retry_in=%.1fs", reason, pause)
            await asyncio.sleep(pause)

    def _backoff(self, failures: int) -> float:
        return backoff(failures, self.backoff_base, self.backoff_cap)

    async def _stream_once(self) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout,
                                        sock_read=None)
        # The read timeouts above stay off for the stream itself (stall_timeout watches it),
        # so the wait for its response headers is bounded here.
        resp = await self._open(EVENTS_PATH, timeout, {"Accept": "text/event-stream"},
                                headers_timeout=self.settings.timeout)
        async with resp:
            self._set_connected(True)
            self._connected_at = time.monotonic()
            log.info("marathon_stream_connected url=%s", redact_url(str(resp.url)))
            self.request_fetch()  # re-sync: events before this point were missed
            parser = SseParser()
            while True:
                try:
                    async with asyncio.timeout(self.stall_timeout):
                        chunk = await resp.content.readany()
                except TimeoutError:
                    raise MarathonError(f"stream silent for {self.stall_timeout}s") from None
                if not chunk:
                    return
                for event in parser.feed(chunk):
                    self.handle_event(event.event, event.data)

    def handle_event(self, event_type: str, data: str) -> None:
        """Apply one event from the stream (public so tests and benchmarks can drive it)."""
        payload = None
        # Deployment events carry whole group trees (megabytes in a big cluster) and only
        # ask for a fetch: their name says so, no need to decode them on the loop.
        if event_type not in REFETCH or event_type == "app_terminated_event":
            try:
                payload = json.loads(data)
            except ValueError:
                pass
        if event_type == "message" and isinstance(payload, dict):
            event_type = str(payload.get("eventType", "message"))
        known = event_type if event_type in MARATHON_EVENT_TYPES else "other"
        self.metrics.marathon_events.labels(known).inc()
        try:
            if event_type == "status_update_event":
                update = parse_status_update(payload)
                self._apply(update.app_id, lambda s: apply_status_update(s, update))
                if update.state == "TASK_LOST":
                    # Kept as TASK_LOST; whether Marathon keeps it too (agent may come
                    # back) or expunges it, the event does not say: a fetch does.
                    self.request_fetch()
                if self.on_task_change is not None:
                    self.on_task_change()
            elif event_type == "health_status_changed_event":
                ch = parse_health_change(payload)
                snap = self.store.current.marathon
                if snap is not None and health_change_needs_fetch(snap, ch.app_id, ch.task_id,
                                                                  ch.alive):
                    # Several health checks and the event does not say which one passed:
                    # only a fetch knows whether all of them do now.
                    self.request_fetch()
                else:
                    self._apply(ch.app_id,
                                lambda s: apply_health_change(s, ch.app_id, ch.task_id, ch.alive))
            elif event_type in REFETCH:
                if event_type == "app_terminated_event" and isinstance(payload, dict):
                    app_id = "/" + str(payload.get("appId", "")).strip("/")
                    # Not replayed onto a fetch in flight: its answer may already hold an
                    # app re-created under the same id, and no event re-adds an app. The
                    # app's tasks go with their own (replayed) terminal status updates.
                    self._apply(app_id, lambda s: remove_app(s, app_id), replay=False)
                self.request_fetch()
        except MarathonFormatError as e:
            log.warning("marathon_event_invalid type=%s error=%s", event_type, e)
            self.request_fetch()

    def _apply(self, app_id: str, reducer: Reducer, replay: bool = True) -> None:
        if replay and self._replay is not None:
            self._replay.append(reducer)
        snap = self.store.current.marathon
        if snap is None or app_id not in snap.apps:
            self.request_fetch()  # a new app (or no snapshot yet): only a fetch knows it
            return
        new = reducer(snap)
        if new is not snap:
            self._install(new)

    def _set_connected(self, connected: bool) -> None:
        self.connected = connected
        self.metrics.marathon_connected.set(1 if connected else 0)
