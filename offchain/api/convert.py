"""Service values to JSON and JSON text to service values: the API's edge encoding.

Belongs here: how a value looks on the wire. Addresses are ``0x`` hex, EIP-55 checksummed
on output and accepted in any single case on input (a mixed-case address must carry a
valid checksum, so a typo in a pasted address is caught); byte strings (secrets, hashes,
channel ids) are ``0x`` hex; amounts and payment ids are decimal strings, because they do
not fit a JSON number that a JavaScript client reads exactly (the proto3 JSON mapping makes
the same choice for 64-bit integers); timestamps are JSON numbers of Unix seconds.

Parsers raise ``ValueError`` with a short reason (without the field name: ``schemas`` adds
it and turns it into a 400). Does not belong here: which request carries which field
(``schemas``), the OpenAPI document (``openapi``), HTTP (``app``).
"""

from __future__ import annotations

import re
from typing import Final

from offchain.node.service import (
    ChannelInfo,
    DeadlineInfo,
    NodeEvent,
    NodeStatus,
    PaymentInfo,
    PaymentRisk,
    PendingTransfer,
    TokenInfo,
)
from offchain.protocol.crypto import keccak256

UINT256_MAX: Final = 2**256 - 1
UINT64_MAX: Final = 2**64 - 1
ADDRESS_LENGTH: Final = 20
BYTES32_LENGTH: Final = 32
_ZERO_ADDRESS: Final = bytes(ADDRESS_LENGTH)

_ADDRESS_RE: Final = re.compile(r"0x[0-9a-fA-F]{40}")
_BYTES32_RE: Final = re.compile(r"0x[0-9a-fA-F]{64}")
# Canonical decimal: no sign, no leading zeros, no spaces or underscores (int() takes those).
_DECIMAL_RE: Final = re.compile(r"0|[1-9][0-9]*")
_UINT256_DIGITS: Final = len(str(UINT256_MAX))
_UINT64_DIGITS: Final = len(str(UINT64_MAX))


def checksum_address(address: bytes) -> str:
    """EIP-55: a hex letter is upper case when the matching nibble of keccak(hex) is >= 8."""
    if len(address) != ADDRESS_LENGTH:
        raise ValueError(f"an address is {ADDRESS_LENGTH} bytes, not {len(address)}")
    lower = address.hex()
    digest = keccak256(lower.encode("ascii")).hex()
    return "0x" + "".join(
        c.upper() if c.isalpha() and int(digest[i], 16) >= 8 else c for i, c in enumerate(lower)
    )


def parse_address(text: str) -> bytes:
    """A non-zero address from ``0x`` + 40 hex digits; mixed case must be a valid checksum."""
    if _ADDRESS_RE.fullmatch(text) is None:
        raise ValueError("must be an address: 0x and 40 hex digits")
    digits = text[2:]
    raw = bytes.fromhex(digits)
    if digits not in (digits.lower(), digits.upper()) and checksum_address(raw) != text:
        raise ValueError("has mixed case but a wrong EIP-55 checksum (a typo?)")
    if raw == _ZERO_ADDRESS:
        raise ValueError("must not be the zero address")
    return raw


def parse_bytes32(text: str) -> bytes:
    if _BYTES32_RE.fullmatch(text) is None:
        raise ValueError("must be 0x and 64 hex digits")
    return bytes.fromhex(text[2:])


def _parse_decimal(text: str, digits: int, maximum: int, what: str) -> int:
    if len(text) > digits or _DECIMAL_RE.fullmatch(text) is None:
        raise ValueError(f"must be {what}: a decimal string without sign or leading zeros")
    value = int(text)
    if value > maximum:
        raise ValueError(f"must be at most {maximum}")
    return value


def parse_amount(text: str) -> int:
    """An amount in the token's base units, 0 to 2**256 - 1, as a canonical decimal string."""
    return _parse_decimal(text, _UINT256_DIGITS, UINT256_MAX, "an amount in base units")


def parse_uint64(text: str) -> int:
    return _parse_decimal(text, _UINT64_DIGITS, UINT64_MAX, "an unsigned 64-bit integer")


def hex0x(data: bytes) -> str:
    return "0x" + data.hex()


def _optional_address(address: bytes | None) -> str | None:
    return None if address is None else checksum_address(address)


def status_json(status: NodeStatus) -> dict[str, object]:
    return {
        "address": checksum_address(status.address),
        "chain_id": status.chain_id,
        "synced": status.synced,
        "chain_reachable": status.chain_reachable,
        "latest_block": status.latest_block,
        "confirmed_block": status.confirmed_block,
        "blind_since": status.blind_since,
        "peers": status.peers,
        "version": status.version,
        "blind_for_s": status.blind_for_s,
        "view_time": status.view_time,
        "next_deadline": status.next_deadline,
        "next_deadline_what": status.next_deadline_what,
    }


def token_json(token: TokenInfo) -> dict[str, object]:
    return {
        "token": checksum_address(token.token),
        "token_network": checksum_address(token.token_network),
        "symbol": token.symbol,
        "decimals": token.decimals,
    }


def channel_json(channel: ChannelInfo) -> dict[str, object]:
    return {
        "token": checksum_address(channel.token),
        "token_network": checksum_address(channel.token_network),
        "partner": checksum_address(channel.partner),
        "channel_id": hex0x(channel.channel_id),
        "generation": channel.generation,
        "status": channel.status.value,
        "settle_window": channel.settle_window,
        "settle_deadline": channel.settle_deadline,
        "our_deposit": str(channel.our_deposit),
        "partner_deposit": str(channel.partner_deposit),
        "our_withdrawn": str(channel.our_withdrawn),
        "partner_withdrawn": str(channel.partner_withdrawn),
        "our_balance": str(channel.our_balance),
        "partner_balance": str(channel.partner_balance),
        "our_locked": str(channel.our_locked),
        "partner_locked": str(channel.partner_locked),
        "spendable": str(channel.spendable),
    }


def payment_json(payment: PaymentInfo) -> dict[str, object]:
    return {
        "payment_id": str(payment.payment_id),
        "direction": payment.direction.value,
        "token": checksum_address(payment.token),
        "partner": checksum_address(payment.partner),
        "amount": str(payment.amount),
        "fee": str(payment.fee),
        "status": payment.status.value,
        "reason": payment.reason,
        "failed_hop": _optional_address(payment.failed_hop),
        "secrethash": hex0x(payment.secrethash),
        "created_at": payment.created_at,
        "finished_at": payment.finished_at,
        "payer": _optional_address(payment.payer),
        "risk": None if payment.risk is None else risk_json(payment.risk),
    }


def risk_json(risk: PaymentRisk) -> dict[str, object]:
    return {
        "nonce": str(risk.nonce),
        "deadline": risk.deadline,
        "chain_deadline": risk.chain_deadline,
        "covered_by": risk.covered_by.value,
        "delegate": _optional_address(risk.delegate),
        "within_window": risk.within_window,
    }


def deadline_json(item: DeadlineInfo) -> dict[str, object]:
    return {
        "what": item.what,
        "token": checksum_address(item.token),
        "partner": _optional_address(item.partner),
        "deadline": item.deadline,
        "chain_deadline": item.chain_deadline,
        "covered_by": item.covered_by.value,
        "delegate": _optional_address(item.delegate),
        "nonce": str(item.nonce),
        "amount": str(item.amount),
        "secrethash": None if item.secrethash is None else hex0x(item.secrethash),
        "pending": item.pending,
        "text": item.text,
    }


def pending_json(pending: PendingTransfer) -> dict[str, object]:
    return {
        "token": checksum_address(pending.token),
        "partner": checksum_address(pending.partner),
        "direction": pending.direction.value,
        "payment_id": str(pending.payment_id),
        "amount": str(pending.amount),
        "secrethash": hex0x(pending.secrethash),
        "expiration": pending.expiration,
        "role": pending.role,
    }


def event_json(event: NodeEvent) -> dict[str, object]:
    # ``data`` is already JSON-able by the service's contract (hex addresses, decimal strings).
    return {"seq": event.seq, "time": event.time, "kind": event.kind, "data": event.data}
