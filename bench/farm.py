#!/usr/bin/env python3
"""alertd's own loopback feed farm: N RSS 2.0 feeds whose items, once published, never change.

    python bench/farm.py --port 8765 --feeds 1000 --items 50 --latency 100 --tick 30

Same command line and protocol as ``../shared/tools/feedfarm.py`` (``/feed/<i>.xml``, a fixed latency per
response, ETag / If-None-Match, one new item per feed every TICK seconds, ``/stats``), with one difference that
matters for measuring alertd: the shared farm re-dates every item of a feed at every tick (an item's
``pubDate`` is computed from the current tick), so no item is ever byte-identical from one poll to the next;
here an item's bytes are fixed when it appears, as in real feeds. ``--redate`` restores the shared farm's
behaviour. Used by ``bench/poll.py --farm own`` and whenever ../shared is absent. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import hashlib
import random
import time

RELEVANT = (
    "Alibaba ouvre un entrepôt en France pour les marques exportatrices",
    "Temu et Shein: Bruxelles veut taxer les petits colis",
    "Cognac: les droits de douane chinois pèsent sur les exportations",
    "Airbus livre davantage, la balance commerciale s'améliore",
)
NOISE = (
    "La Bourse de Paris termine en légère hausse",
    "Les taux des crédits immobiliers se stabilisent",
    "Le chômage recule au troisième trimestre",
    "Une nouvelle citadine électrique présentée à Paris",
    "La BCE laisse ses taux inchangés",
    "Le prix du gazole baisse pour la troisième semaine",
)
SENTENCE = (
    "les entreprises françaises observent une demande solide sur le marché européen malgré la hausse des coûts "
    "selon les analystes interrogés cette semaine la croissance reste modeste mais les perspectives s'améliorent"
)
WORDS = SENTENCE.split()
EPOCH = 1_764_000_000


def item(feed: int, seq: int, redate_at: int | None = None) -> str:
    """The ``<item>`` number ``seq`` of ``feed``: the same bytes at every request (unless re-dated)."""
    rnd = random.Random(feed * 104_729 + seq)
    title = rnd.choice(RELEVANT) if rnd.random() < 0.05 else rnd.choice(NOISE)
    body = " ".join(rnd.choice(WORDS) for _ in range(60))
    published = EPOCH + seq * 600 if redate_at is None else redate_at
    return (
        f"<item><title>{title} ({feed}-{seq})</title>"
        f"<link>http://127.0.0.1/article/{feed}/{seq}.html</link>"
        f"<description><![CDATA[<p>{body}</p>]]></description>"
        f"<pubDate>{email.utils.formatdate(published, usegmt=True)}</pubDate>"
        f'<guid isPermaLink="false">farm-{feed}-{seq}</guid></item>'
    )


def render(feed: int, items: int, generation: int, *, redate: bool = False) -> bytes:
    newest = generation + items
    entries = "".join(
        item(feed, seq, EPOCH + generation * 60 - (newest - seq) * 600 if redate else None)
        for seq in range(newest, newest - items, -1)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
        f"<title>Farm feed {feed}</title><link>http://127.0.0.1/{feed}</link>"
        f"<description>alertd bench farm</description>{entries}</channel></rss>"
    ).encode()


class Farm:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.started = time.time()
        self.hits = 0
        self.not_modified = 0

    def generation(self) -> int:
        return int((time.time() - self.started) / self.args.tick) if self.args.tick else 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while request := await reader.readline():
                path = request.decode("latin-1").split(" ")[1]
                headers = {}
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                await asyncio.sleep(self.args.latency / 1000)
                self.hits += 1
                writer.write(self.answer(path, headers))
                await writer.drain()
        except (ConnectionError, ValueError, IndexError):
            pass
        finally:
            writer.close()

    def answer(self, path: str, headers: dict[str, str]) -> bytes:
        if path == "/stats":
            body = f"hits={self.hits} not_modified={self.not_modified}\n".encode()
            return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
        if not (path.startswith("/feed/") and path.endswith(".xml") and path[6:-4].isdigit()):
            return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
        feed, generation = int(path[6:-4]), self.generation()
        etag = f'"{hashlib.md5(f"{feed}-{generation}".encode()).hexdigest()}"'
        if headers.get("if-none-match") == etag:
            self.not_modified += 1
            return f"HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\nContent-Length: 0\r\n\r\n".encode()
        body = render(feed, self.args.items, generation, redate=self.args.redate)
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml; charset=utf-8\r\n"
            f"ETag: {etag}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--feeds", type=int, default=100)
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--latency", type=float, default=100.0, help="ms per response")
    parser.add_argument("--tick", type=float, default=0.0, help="s between new items (0: static)")
    parser.add_argument("--redate", action="store_true", help="re-date every item at each tick (shared farm)")
    args = parser.parse_args()
    server = await asyncio.start_server(Farm(args).handle, "127.0.0.1", args.port, backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
