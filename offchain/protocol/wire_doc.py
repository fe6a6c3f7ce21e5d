"""Markdown tables of the wire format, generated from the codec's own layout tables.

Belongs here: turning `messages.FIELDS` into the byte-by-byte tables of docs/spec.md, so
the document cannot drift from the code (a unit test compares them). Pure string work.
"""

from __future__ import annotations

from offchain.protocol import codec
from offchain.protocol.messages import MAX_BATCH_PAYMENTS, MESSAGE_CLASSES, BatchEntry, Field

_WIDTH = {
    Field.ADDRESS: "20",
    Field.BYTES32: "32",
    Field.U8: "1",
    Field.U32: "4 (big-endian)",
    Field.U64: "8 (big-endian)",
    Field.VARINT64: "1-10 (varint, < 2^64)",
    Field.AMOUNT: "1-14 (varint, < 2^96)",
}


def message_tables() -> str:
    """One markdown table per message type, in type order."""
    parts: list[str] = []
    for message_type, cls in sorted(MESSAGE_CLASSES.items()):
        parts.append(
            f"#### {message_type.value}. {cls.__name__} "
            f"(signature: {cls.SIGNING.value}; at most {codec.max_size(message_type)} bytes)\n"
        )
        parts.append("| # | field | bytes |\n|---|---|---|")
        parts.append("| 0 | version = 1 | 1 |")
        parts.append(f"| 1 | type = {message_type.value} | 1 |")
        for index, (name, kind) in enumerate(cls.FIELDS, start=2):
            if kind is Field.PAYMENTS:
                # A list: its count, then each entry's fields, numbered index.1, index.2...
                parts.append(f"| {index} | {name}: count n, 1..{MAX_BATCH_PAYMENTS} | 1 |")
                for sub, (entry, entry_kind) in enumerate(BatchEntry.FIELDS, start=1):
                    width = _WIDTH[entry_kind]
                    parts.append(f"| {index}.{sub} | {name}[i].{entry}, i = 1..n | {width} |")
            else:
                parts.append(f"| {index} | {name} | {_WIDTH[kind]} |")
        parts.append(f"| {len(cls.FIELDS) + 2} | signature | 65 |\n")
    return "\n".join(parts)


if __name__ == "__main__":  # python -m offchain.protocol.wire_doc > tables.md
    print(message_tables())
