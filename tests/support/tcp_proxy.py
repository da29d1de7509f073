"""A TCP proxy in front of the database, so a test can cut the connection and restore it."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit, urlunsplit


class TcpProxy:
    """Forwards 127.0.0.1:port to the database; `stop()` cuts every connection."""

    def __init__(self, target: tuple[str, int] | str) -> None:
        self.target = target
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Cut every connection and refuse new ones (the port stays reserved)."""
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if isinstance(self.target, str):
                up_reader, up_writer = await asyncio.open_unix_connection(self.target)
            else:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, ConnectionError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


def proxied(dsn: str, port: int) -> tuple[str, tuple[str, int] | str]:
    """The DSN through 127.0.0.1:port, and where the proxy must connect."""
    parts = urlsplit(dsn)
    query = parse_qs(parts.query)
    if parts.hostname:
        target: tuple[str, int] | str = (parts.hostname, parts.port or 5432)
    else:  # unix socket (pgserver): host=<dir> in the query
        target = f"{query['host'][0]}/.s.PGSQL.{parts.port or 5432}"
    user = parts.username or "postgres"
    password = f":{parts.password}" if parts.password else ""
    netloc = f"{user}{password}@127.0.0.1:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", "")), target
