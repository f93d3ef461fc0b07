"""The HAProxy loop: store -> view -> text -> candidate -> validate -> promote -> reload.

Latest wins: a burst of store changes costs one render, and reloads are at least
`min_reload_interval` apart. Every failure keeps the last good file in force: an
invalid candidate never touches the live file, and the apps that broke it are found
by bisection and left out. A failed reload is retried (against what HAProxy last
loaded, not what the file holds), also across restarts: a marker file next to the live
file stands for "installed, not yet loaded by HAProxy".
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

from discoveryd.haproxy import files
from discoveryd.haproxy.bisection import find_bad_apps
from discoveryd.haproxy.check import validate
from discoveryd.haproxy.reload import run_reload, save_server_state
from discoveryd.haproxy.render import Renderer
from discoveryd.haproxy.view import HAProxyView, Skipped, ViewBuilder
from discoveryd.metrics import Metrics
from discoveryd.model.cluster import ClusterState
from discoveryd.model.marathon import MarathonSnapshot
from discoveryd.settings import HAProxySettings
from discoveryd.store import Store

log = logging.getLogger("discoveryd.haproxy")
MAX_BISECTION_ROUNDS = 5


class _ValidatorHung(Exception):
    """validate_command ran past validate_timeout and was killed."""


class HAProxyPipeline:
    def __init__(self, settings: HAProxySettings, store: Store, metrics: Metrics) -> None:
        self.settings = settings
        self._store = store
        self._metrics = metrics
        self._renderer = Renderer(settings.templates_dir)
        self._builder = ViewBuilder()
        self._lock = asyncio.Lock()
        self._rendered: str | None = None  # last full render (before leaving apps out)
        self._installable: str | None = None  # what that render became after bisection
        self._installed: str | None = None  # text of the live file, installed by us
        self._loaded: str | None = None  # text HAProxy last loaded successfully
        self._loaded_known = False
        self._reload_pending = False  # the marker file exists: a reload has yet to succeed
        self._view: HAProxyView | None = None
        self._excluded: list[str] = []
        self._gauged: set[str] = set()  # app ids with a discoveryd_haproxy_skipped_apps series
        self._skipped: list[Skipped] = []
        self._last_reload: dict[str, Any] = {}
        self._last_error: str | None = None
        self._last_reload_at = 0.0
        self._pending_retry = False

    @property
    def ready(self) -> bool:
        """A valid configuration has been installed."""
        return self._installed is not None

    def current_config(self) -> str | None:
        return self._installed

    def status(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "config_path": self.settings.config_path,
            "backends": [b.name for b in self._view.backends] if self._view else [],
            "last_reload": self._last_reload,
            "last_error": self._last_error,
            "excluded_apps": self._excluded,
            "skipped": [{"app_id": a, "port_index": i, "reason": r} for a, i, r in self._skipped],
        }

    async def run(self) -> None:
        """Follow the store until cancelled; the one place that catches and backs off."""
        version = -1
        while True:
            state = await self._next_state(version)
            if state is None:  # retry timer fired with no new state
                state = self._store.current
            version = state.version
            if state.marathon is None:
                continue
            wait = self._last_reload_at + self.settings.min_reload_interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)  # rate limit; then take the newest state
                state = self._store.current
                version = state.version
            try:
                await self._cycle(state, force=False)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - keep the last good file, retry later
                self._fail(f"haproxy cycle failed: {e!r}")
                log.exception("haproxy_cycle_failed")

    async def _next_state(self, version: int) -> ClusterState | None:
        if self._store.current.version > version:
            return self._store.current
        timeout = self.settings.retry_interval if self._pending_retry else None
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # races with the store's notification, and then run() never ends.
            async with asyncio.timeout(timeout):
                return await self._store.wait_newer(version)
        except TimeoutError:
            return None

    async def reload_now(self) -> dict[str, Any]:
        """Re-render, validate and reload regardless of changes (POST /v1/haproxy/reload)."""
        state = self._store.current
        if state.marathon is None:
            return {"ok": False, "waiting": True, "error": "no Marathon state yet"}
        ok = await self._cycle(state, force=True)
        return {"ok": ok, **self.status()}

    async def _cycle(self, state: ClusterState, force: bool) -> bool:
        async with self._lock:
            assert state.marathon is not None
            started = time.perf_counter()
            # In a worker thread: 5,000 apps take a few hundred ms, and the event loop keeps
            # answering DNS queries meanwhile (the lock serialises the builder's and the
            # renderer's caches).
            view, skipped, text = await asyncio.to_thread(self._render, state.marathon)
            self._metrics.haproxy_render_seconds.observe(time.perf_counter() - started)
            self._note_skipped(skipped)
            if not self._loaded_known:
                self._installed, self._loaded = await asyncio.to_thread(self._read_live)
                self._loaded_known = True
            if force or text != self._rendered or self._installable is None:
                installable = await self._validated(view, text)
                self._rendered, self._installable = text, installable
            if self._installable is None:
                return False
            if self._installable != self._installed:
                if self.settings.reload_command is not None and not self._reload_pending:
                    # Before the rename: a stop (or crash) between it and the reload must
                    # not let the next start believe HAProxy runs the new file.
                    await asyncio.to_thread(files.write_file, self._pending_marker, "")
                    self._reload_pending = True
                await asyncio.to_thread(self._install, self._installable)
                self._installed = self._installable
                log.info("haproxy_installed path=%s backends=%d", self.settings.config_path,
                         len(self._view.backends) if self._view else 0)
            return await self._maybe_reload(force)

    def _render(self, snapshot: MarathonSnapshot) -> tuple[HAProxyView, list[Skipped], str]:
        view, skipped = self._builder.build(snapshot, self.settings)
        return view, skipped, self._renderer.render(view)

    @property
    def _candidate(self) -> str:
        return files.candidate_path(self.settings.config_path)

    @property
    def _pending_marker(self) -> str:
        return files.candidate_path(self.settings.config_path, "reload-pending")

    def _read_live(self) -> tuple[str | None, str | None]:
        """(installed, loaded) at start-up. HAProxy is taken to run the live file, so a
        restart that renders the same text does not reload it; unless the marker says a
        reload of that file never completed (discoveryd was stopped in the middle)."""
        self._reload_pending = os.path.exists(self._pending_marker)
        live = files.read_file(self.settings.config_path)
        return live, None if self._reload_pending else live

    async def _mark_loaded(self) -> None:
        self._loaded = self._installed
        if self._reload_pending:
            await asyncio.to_thread(files.remove_quietly, self._pending_marker)
            self._reload_pending = False

    def _install(self, text: str) -> None:
        files.write_file(self._candidate, text)
        files.promote(self._candidate, self.settings.config_path)

    async def _validated(self, view: HAProxyView, text: str) -> str | None:
        """The text to install: `text` if valid, else the view minus the apps breaking it."""
        try:
            return await self._validated_or_reduced(view, text)
        except _ValidatorHung as e:
            # A hung validator says nothing about the file: no bisection (each step would
            # cost another timeout), keep the live file and retry on the timer.
            self._fail(f"{e}; the live file stays")
            log.error("haproxy_validation_timeout %s", e)
            return None

    async def _validated_or_reduced(self, view: HAProxyView, text: str) -> str | None:
        if await self._valid(text, self._candidate, count=True):
            self._set_view(view, [])
            return text
        error = self._last_error
        if not await self._valid_subset(view, []):
            self._fail(f"invalid even without any app (templates or settings?): {error}")
            return None
        # The file without apps passes. Before blaming apps, ask once more: a validator
        # that failed for reasons of its own (and works again) would otherwise make the
        # bisection below find "culprits" among apps that are fine and leave them out.
        if await self._valid(text, self._candidate):
            log.warning("haproxy_validation_flapped the same file passed on a second try")
            self._set_view(view, [])
            return text
        excluded: list[str] = []
        for _ in range(MAX_BISECTION_ROUNDS):
            apps = [a for a in view.app_ids if a not in excluded]
            excluded += await find_bad_apps(apps, lambda keep: self._valid_subset(view, keep))
            reduced = view.without(set(excluded))
            text = self._renderer.render(reduced)
            if await self._valid(text, self._candidate):
                log.warning("haproxy_apps_excluded app_ids=%s reason=validation_failed",
                            ",".join(excluded))
                self._set_view(reduced, excluded)
                return text
        self._fail("rendered configuration invalid even without the offending apps; "
                   "the live file stays")
        return None

    async def _valid_subset(self, view: HAProxyView, keep: Sequence[str]) -> bool:
        drop = set(view.app_ids) - set(keep)
        text = self._renderer.render(view.without(drop))
        return await self._valid(text, files.candidate_path(self.settings.config_path, "bisect"))

    async def _valid(self, text: str, path: str, count: bool = False) -> bool:
        """Validate `text` written at `path`; `count` the failure of a full render in
        discoveryd_haproxy_validation_failures_total. Raises _ValidatorHung on timeout."""
        await asyncio.to_thread(files.write_file, path, text)
        result = await validate(self.settings.validate_command, path,
                                self.settings.validate_timeout)
        if not result.ok:
            self._last_error = result.output[-2000:]
            if count or result.timed_out:
                self._metrics.haproxy_validation_failures.inc()
        if result.timed_out:
            raise _ValidatorHung(result.output)
        return result.ok

    def _set_view(self, view: HAProxyView, excluded: list[str]) -> None:
        newly = len(set(excluded) - set(self._excluded))
        if newly:
            self._metrics.haproxy_skipped.labels("validation_failed").inc(newly)
        self._view, self._excluded = view, excluded
        self._metrics.haproxy_backends.set(len(view.backends))
        self._sync_skipped_apps()

    async def _maybe_reload(self, force: bool) -> bool:
        command = self.settings.reload_command
        if command is None or (self._installed == self._loaded and not force):
            await self._mark_loaded()
            self._succeeded()
            return True
        if self.settings.server_state_file:
            await save_server_state(self.settings.stats_socket, self.settings.server_state_file)
        self._last_reload_at = time.monotonic()
        ok, output = await run_reload(command, self.settings.reload_timeout)
        self._last_reload = {"at": time.time(), "ok": ok, "output": output[-2000:]}
        self._metrics.haproxy_reloads.labels("ok" if ok else "error").inc()
        if not ok:
            self._fail(f"reload failed: {output[-500:]}")
            log.error("haproxy_reload_failed output=%r", output[-500:])
            return False
        log.info("haproxy_reloaded")
        await self._mark_loaded()
        self._succeeded()
        return True

    def _succeeded(self) -> None:
        self._pending_retry = False
        if not self._excluded:
            self._last_error = None
        self._metrics.last_update.labels("haproxy").set(time.time())

    def _fail(self, message: str) -> None:
        self._pending_retry = True
        self._last_error = message

    def _note_skipped(self, skipped: list[Skipped]) -> None:
        """Log and count ports newly left out; keep the per-app gauge exact."""
        old = set(self._skipped)
        for app_id, index, reason in skipped:
            if (app_id, index, reason) not in old:
                log.warning("haproxy_port_skipped app_id=%s port_index=%d reason=%s",
                            app_id, index, reason)
                self._metrics.haproxy_skipped.labels(reason).inc()
        self._skipped = sorted(set(skipped))
        self._sync_skipped_apps()

    def _sync_skipped_apps(self) -> None:
        """One gauge series per app left out, whether by a bad label or by bisection (the
        contract wants a metric naming the app either way)."""
        now = {a for a, _, _ in self._skipped} | set(self._excluded)
        for app_id in self._gauged - now:
            self._metrics.haproxy_skipped_apps.remove(app_id)
        for app_id in now - self._gauged:
            self._metrics.haproxy_skipped_apps.labels(app_id).set(1)
        self._gauged = now
