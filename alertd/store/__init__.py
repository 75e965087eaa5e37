"""All SQL: alertd's state in one SQLite file (WAL), one module per table family behind this facade.

    schema    the connection, transactions, numbered append-only migrations
    feeds     feeds and feed events          items     items and matches (a poll's writes)
    digests   subscribers and deliveries     outbox    messages and their attempts; history pruning
    daemon    the daemon's own row and the SMTP delivery pause

The store moves records (:mod:`alertd.records`) between Python and SQL and decides nothing: what a poll or a
delivery attempt amounts to is decided before (:mod:`alertd.polling`, :mod:`alertd.outbox`) and written here
whole. Reads never write. Each pipeline step is one transaction, and a state change is written only after its
side effect succeeded: a poll commits the feed's HTTP state, its new items and their matches together; a
digest commits its outbox row and the "delivered" marks of its matches together; an outbox row becomes
``sent`` only after the mail server (or the Maildir) accepted the message. A crash at any instant therefore
loses nothing and repeats at most one message, with the same Message-ID.
"""

from __future__ import annotations

from pathlib import Path

from alertd.store.daemon import DaemonTables
from alertd.store.digests import DigestTables
from alertd.store.feeds import FeedTables
from alertd.store.items import LAST_SEEN_RESOLUTION, ItemTables
from alertd.store.outbox import OutboxTables
from alertd.store.schema import MIGRATIONS, database_uri

__all__ = ["LAST_SEEN_RESOLUTION", "MIGRATIONS", "Store", "database_uri"]


class Store(FeedTables, ItemTables, DigestTables, OutboxTables, DaemonTables):
    """The state database. Open with ``Store.open(path)``; use as a context manager or call ``close()``."""

    @classmethod
    def open(cls, path: Path, *, readonly: bool = False) -> Store:
        """Open (creating and migrating unless ``readonly``) the database at ``path``."""
        store = super().open(path, readonly=readonly)
        assert isinstance(store, Store)
        return store

    def __enter__(self) -> Store:
        return self
