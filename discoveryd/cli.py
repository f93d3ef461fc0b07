"""Command line: the only place that exits. Usage and config errors: one line, exit 2."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import NoReturn

import yaml

from discoveryd import __version__
from discoveryd.logs import setup_logging
from discoveryd.settings import ConfigError, Settings, load_settings

log = logging.getLogger("discoveryd")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


# Rebuilding records, answers and haproxy.cfg allocates hundreds of thousands of small,
# acyclic objects; the default gen-0 threshold (700) makes the GC rescan them constantly.
GC_THRESHOLDS = (100_000, 50, 100)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="discoveryd", description="Mesos/Marathon service discovery: DNS + HAProxy.")
    p.add_argument("--version", action="version", version=f"discoveryd {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("--config", help="YAML or mesos-dns config.json (default $DISCOVERYD_CONFIG)")
    demo = sub.add_parser("demo", help="run against a built-in simulated cluster")
    demo.add_argument("--dns-port", type=_port, default=8053)
    demo.add_argument("--http-port", type=_port, default=8123)
    demo.add_argument("--workdir", default="./demo-run")
    render = sub.add_parser("render", help="render haproxy.cfg once and exit")
    src = render.add_mutually_exclusive_group(required=True)
    src.add_argument("--marathon", nargs="+", metavar="URL")
    src.add_argument("--apps-file", metavar="FILE")
    render.add_argument("--group", default=None)
    render.add_argument("--output", default=None, metavar="PATH")
    render.add_argument("--templates", default=None, metavar="DIR")
    render.add_argument("--config", default=None, help="take haproxy.* settings from this file")
    rec = sub.add_parser("records", help="print the DNS records of a saved Mesos state")
    rec.add_argument("--state", required=True, metavar="FILE")
    rec.add_argument("--config", default=None, metavar="PATH")
    chk = sub.add_parser("check-config", help="validate a config file and print it")
    chk.add_argument("path", nargs="?", help="default $DISCOVERYD_CONFIG")
    return p


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number (1-65535): {port}")
    return port


def _die(message: str, code: int = 2) -> NoReturn:
    # One line whatever the message holds (a path or key with a newline in it): scripts
    # and log collectors read the first line as the whole error.
    one_line = message.replace("\r", "\\r").replace("\n", "\\n")
    sys.stderr.write(f"discoveryd: {one_line}\n")
    raise SystemExit(code)


def _load(path: str | None) -> Settings:
    if path is None:
        return Settings()
    settings, warnings = load_settings(path)
    for w in warnings:
        sys.stderr.write(f"discoveryd: warning: {w}\n")
    return settings


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        code = _dispatch(args)
    except ConfigError as e:
        _die(f"config error: {e}")
    except KeyboardInterrupt:
        code = 0
    raise SystemExit(code)


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "check-config":
        settings = _load(_config_path(args.path, "check-config: PATH"))
        sys.stdout.write(yaml.safe_dump(settings.redacted(), sort_keys=False))
        return 0
    if args.command == "records":
        return _records(args)
    if args.command == "render":
        return _render(args)
    if args.command == "demo":
        from discoveryd.demo import run_demo

        workdir = Path(args.workdir)
        try:
            workdir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            _die(f"--workdir: cannot create {workdir}: {e.strerror or e}")
        setup_logging("info", "text")
        try:
            return _run_async(run_demo(args.dns_port, args.http_port, workdir))
        except OSError as e:  # typically a port already taken: one line, not a traceback
            _die(f"demo: {e.strerror or e}", 1)
    path = _config_path(args.config, "run: --config")
    settings = _load(path)
    setup_logging(settings.logging.level, settings.logging.format)
    return _run_async(serve(path, settings))


def _config_path(given: str | None, what: str | None) -> str:
    """The config file named on the command line, else $DISCOVERYD_CONFIG (CONTRACT 2.2);
    "" when neither is set and `what` is None (the command then uses the defaults)."""
    path = given or os.environ.get("DISCOVERYD_CONFIG") or ""
    if not path and what is not None:
        _die(f"{what} is required (or set DISCOVERYD_CONFIG)")
    return path


def _run_async(coro: object) -> int:
    try:
        import uvloop

        return uvloop.run(coro)  # type: ignore[arg-type]
    except ImportError:
        return asyncio.run(coro)  # type: ignore[arg-type]


def _records(args: argparse.Namespace) -> int:
    from discoveryd.dns.zonefile import records_command
    from discoveryd.sources.mesos_state import StateError

    settings = _load(_config_path(args.config, None) or None)
    try:
        sys.stdout.write(records_command(args.state, settings))
    except OSError as e:
        _die(f"--state: cannot read {args.state}: {e.strerror}")
    except json.JSONDecodeError as e:
        _die(f"--state: {args.state} is not JSON: line {e.lineno}: {e.msg}")
    except (StateError, ValueError) as e:
        _die(f"--state: {args.state}: {e}")
    return 0


def _render(args: argparse.Namespace) -> int:
    from discoveryd.haproxy.oneshot import render_command

    # A one-shot process allocating ~1M small objects for 5,000 apps: the cyclic GC would
    # rescan them again and again (a third of the run) and there is no cycle worth freeing.
    gc.disable()

    config = _config_path(args.config, None)
    haproxy = _load(config).haproxy if config else None
    return asyncio.run(render_command(
        marathon_urls=args.marathon, apps_file=args.apps_file, group=args.group,
        output=args.output, templates=args.templates, settings=haproxy,
    ))


async def serve(path: str, settings: Settings) -> int:
    """Run the daemon until SIGTERM/SIGINT; SIGHUP re-reads `path`."""
    from discoveryd.daemon import Daemon

    gc.set_threshold(*GC_THRESHOLDS)
    loop = asyncio.get_running_loop()
    daemon = Daemon(settings)
    stop = asyncio.Event()
    exit_code = 0
    reloading: set[asyncio.Task[None]] = set()
    # One reload at a time: a burst of SIGHUPs must not interleave two stop/start sequences
    # (two DNS servers racing for one port). Each reads the file when its turn comes.
    one_at_a_time = asyncio.Lock()

    async def reload() -> None:
        nonlocal exit_code
        async with one_at_a_time:
            try:
                new, warnings = load_settings(path)
            except ConfigError as e:
                log.error("config_reload_rejected %s; keeping the running configuration", e)
                return
            for w in warnings:
                log.warning("config_warning %s", w)
            try:
                applied = await daemon.reload(new)
            except OSError as e:  # not even the previous configuration starts again
                log.error("config_restore_failed %s; exiting", e)
                exit_code = 1
                stop.set()
                return
            if applied:
                setup_logging(new.logging.level, new.logging.format)

    def on_hup() -> None:
        task = loop.create_task(reload())
        reloading.add(task)
        task.add_done_callback(reloading.discard)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    try:
        await daemon.start()
    except OSError as e:
        log.error("start_failed %s", e)
        await daemon.stop()
        return 1
    await stop.wait()
    log.info("stopping")
    try:
        async with asyncio.timeout(4.0):
            # A reload half-way through would start components after stop(): end it first.
            for task in list(reloading):
                task.cancel()
            await asyncio.gather(*reloading, return_exceptions=True)
            await daemon.stop()
    except TimeoutError:
        log.warning("stop_timeout some components did not stop in time")
    return exit_code
