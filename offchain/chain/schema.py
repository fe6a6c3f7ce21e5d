"""Every table of ``offchain.chain`` in one place, for the node's migrations.

Belongs here: ``SCHEMA``, the CREATE statements of the follower's tables (``store``) and
of the outbox (``outbox``), in an order that satisfies their references, and
``create_tables`` for tests and tools. The node runs ``SCHEMA`` inside its own versioned
migrations on its one database.

Does not belong here: the statements themselves (each module owns its tables).
"""

from __future__ import annotations

import sqlite3
from typing import Final

from offchain.chain import outbox, store

SCHEMA: Final[tuple[str, ...]] = store.SCHEMA + outbox.SCHEMA


def create_tables(conn: sqlite3.Connection) -> None:
    """Create every table of the package (statements safe to run twice)."""
    store.create_tables(conn, SCHEMA)
