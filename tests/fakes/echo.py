"""Small servers standing in for Marathon tasks: each answers with its own name."""

from __future__ import annotations

import asyncio

from aiohttp import web


class EchoHTTP:
    """HTTP server answering `name path` on every path; /health follows `healthy`;
    /redirect?to=LOCATION answers 302 with that Location."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.healthy = True
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        if request.path == "/health":
            return web.Response(status=200 if self.healthy else 503, text=self.name)
        headers = {"X-Echo-Path": request.path_qs}
        if request.path == "/redirect":
            headers["Location"] = request.query["to"]
            return web.Response(status=302, text=self.name, headers=headers)
        return web.Response(text=self.name, headers=headers)

    async def start(self) -> EchoHTTP:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()


class EchoTCP:
    """TCP server that writes its name and closes."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.port = 0
        self._server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(self.name.encode() + b"\n")
        await writer.drain()
        writer.close()

    async def start(self) -> EchoTCP:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server:
            self._server.close()
            await self._server.wait_closed()
