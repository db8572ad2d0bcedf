"""The pipelines measured: one output per item, with and without a query of their own;
with a ``fetch`` hook, without I/O and with HTTP calls."""

import asyncio
import functools
import re
import ssl
import urllib.parse
import urllib.request

from django.db.models import F

from datapipe import Pipe, pipeline
from tests.testapp.models import ResultItem, SourceItem


@pipeline("benchmarks.outputs")
class Outputs(Pipe):
    """One buffered ResultItem per SourceItem; no query of its own (no savepoint)."""

    def process(self):
        item = super().process()
        self.add_to_save(ResultItem(source=item, number=item.number))
        return item


@pipeline("benchmarks.outputs_and_update")
class OutputsAndUpdate(Outputs):
    """As :class:`Outputs`, plus an UPDATE of the item: the item needs its savepoint."""

    def process(self):
        item = super().process()
        SourceItem.objects.filter(pk=item.pk).update(touched=F("touched") + 1)
        return item


@pipeline("benchmarks.outputs_and_buffered_update")
class OutputsAndBufferedUpdate(Outputs):
    """As :class:`Outputs`, plus the item's update buffered with ``add_to_update``: written
    in bulk at the flush, so the item issues no query and needs no savepoint."""

    def process(self):
        item = super().process()
        item.touched += 1
        self.add_to_update(item, fields=["touched"])
        return item


# fetch(): the hook's cost without I/O, and HTTP calls (python -m benchmarks.concurrency) ---


@pipeline("benchmarks.outputs_fetch")
class OutputsAfterFetch(Outputs):
    """As :class:`Outputs`, with a ``fetch`` that does no I/O: what the hook costs."""

    def fetch(self):
        self.number = self.item.number
        return super().fetch()


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """One SSL context for every client: making one loads the CA bundle (~50 ms), which
    an ``httpx.AsyncClient()`` per item would otherwise do per item."""
    return ssl.create_default_context()


#: No proxy from the environment: the benchmark's server is on 127.0.0.1, and only there.
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Remote(Pipe):
    """Saves the number that the server at ``context.base_url`` answers for the item."""

    def url(self) -> str:
        return f"{self.context['base_url']}/{self.item.number}"

    def process(self):
        item = super().process()
        self.add_to_save(ResultItem(source=item, number=int(self.body)))
        return item


@pipeline("benchmarks.fetch_async")
class FetchAsync(Remote):
    """``async def fetch`` with an ``httpx.AsyncClient`` per item (``trust_env=False``:
    no proxy, and no reading of the environment per client)."""

    async def fetch(self):
        import httpx

        async with httpx.AsyncClient(verify=ssl_context(), trust_env=False) as client:
            self.body = (await client.get(self.url())).text
        await super().fetch()


@pipeline("benchmarks.fetch_streams")
class FetchStreams(Remote):
    """``async def fetch`` with a minimal HTTP/1.1 GET on asyncio streams: what the event
    loop reaches when the client costs little CPU (httpx costs about 2 ms per request)."""

    async def fetch(self):
        url = urllib.parse.urlsplit(self.url())
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        try:
            writer.write(f"GET {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\n\r\n".encode())
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
            self.body = (await reader.readexactly(length)).decode()
        finally:
            writer.close()
        await super().fetch()


@pipeline("benchmarks.fetch_threads")
class FetchThreads(Remote):
    """``def fetch`` on the thread pool, with the standard library's ``urllib``."""

    def fetch(self):
        with NO_PROXY.open(self.url(), timeout=60) as response:
            self.body = response.read().decode()
        return super().fetch()
