"""Balance proofs made by the protocol core are what the contract accepts and pays.

Belongs here: the cross-check between `offchain.protocol.channel` (the node's view of a
channel, message by message) and the token network: the partner's latest proof from each
view (made by any balance-proof message, a `TransferBatch` included) closes and updates
the channel on chain, and settle pays what the core's view of the balances says
(docs/spec.md I-C2).
"""

from __future__ import annotations

import dataclasses

import boa
from hypothesis import given
from hypothesis import strategies as st

from offchain.protocol import channel as ch
from offchain.protocol import codec
from offchain.protocol import cooperative as coop
from offchain.protocol.channel import ChannelState, EndState, Rejected
from offchain.protocol.crypto import keccak256, sha256
from offchain.protocol.locks import Lock
from offchain.protocol.messages import BatchEntry, CoopSettleResponse, TransferBatch
from offchain.protocol.settlement import ParticipantTotals, settlement_payout
from offchain.protocol.types import Generation, PrivateKey, Secret, Timestamp, TokenAmount
from tests.lib import harness
from tests.lib.harness import Account, Deployment

DEPOSIT_A, DEPOSIT_B = 1_000, 600


def _views(d: Deployment, a: Account, b: Account) -> tuple[ChannelState, ChannelState]:
    generation = Generation(d.generation(a, b))
    chain_id = boa.env.evm.patch.chain_id
    network = harness.raw(d.network.address)
    end_a = EndState(a.raw, deposit=TokenAmount(DEPOSIT_A))
    end_b = EndState(b.raw, deposit=TokenAmount(DEPOSIT_B))
    window = harness.SETTLE_WINDOW

    def view(our: EndState, partner: EndState) -> ChannelState:
        return ChannelState(chain_id, network, generation, window, 60, our, partner)

    return view(end_a, end_b), view(end_b, end_a)


def _close_update_settle(
    d: Deployment, a: Account, b: Account, view_a: ChannelState, view_b: ChannelState
) -> tuple[int, int]:
    """A closes with B's latest proof as A holds it, B updates with A's, both settle.

    Returns what each was paid, (A, B).
    """
    proof_b, proof_a = view_a.partner, view_b.partner
    with boa.env.prank(a.address):
        d.network.close_channel(
            a.address,
            b.address,
            proof_b.nonce,
            proof_b.balance_hash if proof_b.nonce else bytes(32),
            proof_b.additional_hash if proof_b.nonce else bytes(32),
            proof_b.signature or b"",
            b"",
        )
    if proof_a.nonce:
        with boa.env.prank(b.address):
            d.network.update_non_closing_balance_proof(
                a.address,
                b.address,
                proof_a.nonce,
                proof_a.balance_hash,
                proof_a.additional_hash,
                proof_a.signature,
                harness.ZERO_ADDRESS,
                0,
                b"",
            )
    boa.env.time_travel(seconds=harness.SETTLE_WINDOW + 1)
    before = d.token.balanceOf(a.address), d.token.balanceOf(b.address)
    args_a = (
        (proof_a.transferred, proof_a.locked, proof_a.locksroot)
        if proof_a.nonce
        else (0, 0, bytes(32))
    )
    args_b = (
        (proof_b.transferred, proof_b.locked, proof_b.locksroot)
        if proof_b.nonce
        else (0, 0, bytes(32))
    )
    d.network.settle_channel(a.address, *args_a, b.address, *args_b)
    return d.token.balanceOf(a.address) - before[0], d.token.balanceOf(b.address) - before[1]


step = st.tuples(
    st.sampled_from(["direct", "batch", "lock", "unlock", "expire"]),
    st.booleans(),  # True: A sends, False: B sends
    st.integers(1, 120),
)


@given(steps=st.lists(step, max_size=12))
def test_settle__proofs_from_the_core__pays_what_the_core_predicts(
    deployed: Deployment, accounts: list[Account], steps: list[tuple[str, bool, int]]
) -> None:
    d = deployed
    a, b = accounts[6], accounts[7]
    with boa.env.anchor():
        for account in (a, b):
            d.fund(account, 10**6)
        d.open(a, b, deposit_a=DEPOSIT_A, deposit_b=DEPOSIT_B)
        view_a, view_b = _views(d, a, b)
        keys = {True: PrivateKey(a.key), False: PrivateKey(b.key)}
        now = Timestamp(harness.now())
        secrets: dict[bytes, Secret] = {}
        counter = 0
        for kind, from_a, amount in steps:
            sender, receiver = (view_a, view_b) if from_a else (view_b, view_a)
            counter += 1
            made: object
            if kind == "direct":
                made = ch.make_direct_transfer(sender, keys[from_a], TokenAmount(amount), counter)
            elif kind == "batch":
                # `amount` split into 1 to 4 payments; ids distinct across the whole run.
                parts = 1 + amount % 4
                entries = [
                    BatchEntry(counter * 8 + i, TokenAmount(max(1, amount // parts)))
                    for i in range(parts)
                ]
                made = ch.make_transfer_batch(sender, keys[from_a], entries)
            elif kind == "lock":
                secret = Secret(keccak256(counter.to_bytes(4, "big")))
                lock = Lock(Timestamp(now + 600), TokenAmount(amount), sha256(secret))  # type: ignore[arg-type]
                secrets[lock.secrethash] = secret
                made = ch.make_locked_transfer(
                    sender, keys[from_a], lock, counter, receiver.our.address, lock.amount, now
                )
            elif kind == "unlock" and sender.our.locks:
                secret = secrets[sender.our.locks[0].secrethash]
                made = ch.make_unlock(sender, keys[from_a], secret, counter)
            else:
                continue
            if isinstance(made, Rejected):
                continue
            new_sender, message = made  # type: ignore[misc]
            new_receiver = ch.receive(receiver, message, now)
            assert not isinstance(new_receiver, Rejected), new_receiver
            view_a, view_b = (new_sender, new_receiver) if from_a else (new_receiver, new_sender)

        paid = _close_update_settle(d, a, b, view_a, view_b)
        proof_a, proof_b = view_b.partner, view_a.partner
        expected = settlement_payout(
            ParticipantTotals(DEPOSIT_A, 0, proof_a.transferred, proof_a.locked),
            ParticipantTotals(DEPOSIT_B, 0, proof_b.transferred, proof_b.locked),
        )
        assert paid == (expected.payout1, expected.payout2)
        # With honest views, each side's payout is its balance minus its own pending locks.
        assert paid[0] == ch.balance(view_a.our, view_a.partner) - view_a.our.locked
        assert paid[1] == ch.balance(view_b.our, view_b.partner) - view_b.our.locked


def test_settle__batch_proofs_on_both_sides__accepted_and_pays_what_the_core_predicts(
    d: Deployment, accounts: list[Account]
) -> None:
    a, b = accounts[6], accounts[7]
    for account in (a, b):
        d.fund(account, 10**6)
    d.open(a, b, deposit_a=DEPOSIT_A, deposit_b=DEPOSIT_B)
    view_a, view_b = _views(d, a, b)
    key_a, key_b = PrivateKey(a.key), PrivateKey(b.key)
    now = Timestamp(harness.now())

    def send(
        sender: ChannelState,
        receiver: ChannelState,
        key: PrivateKey,
        amounts: list[int],
        first: int,
    ) -> tuple[ChannelState, ChannelState, TransferBatch]:
        entries = [BatchEntry(first + i, TokenAmount(x)) for i, x in enumerate(amounts)]
        made = ch.make_transfer_batch(sender, key, entries)
        assert not isinstance(made, Rejected), made
        new_sender, message = made
        decoded = codec.decode(codec.encode(message))
        assert isinstance(decoded, TransferBatch)
        received = ch.receive(receiver, decoded, now)
        assert isinstance(received, ChannelState), received
        return new_sender, received, decoded

    # A: a full batch of 255 payments (3 each), then a direct transfer, then a small batch
    # whose proof is A's latest. B: one batch, its latest proof.
    view_a, view_b, _ = send(view_a, view_b, key_a, [3] * 255, 1_000)
    made = ch.make_direct_transfer(view_a, key_a, TokenAmount(40), 2_000)
    assert not isinstance(made, Rejected)
    view_a, direct = made
    received = ch.receive(view_b, direct, now)
    assert isinstance(received, ChannelState)
    view_b = received
    view_a, view_b, last_a = send(view_a, view_b, key_a, [1, 2, 3], 3_000)
    view_b, view_a, last_b = send(view_b, view_a, key_b, [100, 25, 7, 1], 4_000)
    assert (view_b.partner.nonce, view_b.partner.transferred) == (3, 765 + 40 + 6)
    assert (view_a.partner.nonce, view_a.partner.transferred) == (1, 133)

    # Each receiver holds the body behind the proof's additionalHash, so it can show which
    # payments the one signature covers.
    for holder, message in ((view_b, last_a), (view_a, last_b)):
        assert keccak256(codec.encode_body(message)) == holder.partner.additional_hash
    paid = _close_update_settle(d, a, b, view_a, view_b)
    assert paid == (ch.balance(view_a.our, view_a.partner), ch.balance(view_b.our, view_b.partner))
    assert paid == (DEPOSIT_A - 811 + 133, DEPOSIT_B + 811 - 133)


def test_withdraw_and_coop_settle__signed_through_the_core__accepted_by_the_contract(
    d: Deployment, accounts: list[Account]
) -> None:
    a, b = accounts[6], accounts[7]
    for account in (a, b):
        d.fund(account, 10**6)
    d.open(a, b, deposit_a=DEPOSIT_A, deposit_b=DEPOSIT_B)
    view_a, view_b = _views(d, a, b)
    key_a, key_b = PrivateKey(a.key), PrivateKey(b.key)
    now = Timestamp(harness.now())
    expiration = Timestamp(now + 600)

    made = ch.make_direct_transfer(view_a, key_a, TokenAmount(300), 1)
    assert not isinstance(made, Rejected)
    view_a, transfer = made
    received = ch.receive(view_b, transfer, now)
    assert isinstance(received, ChannelState)
    view_b = received

    requested = coop.request_withdraw(view_b, key_b, TokenAmount(700), expiration)
    assert not isinstance(requested, Rejected)
    view_b, request = requested
    confirmed = coop.receive_withdraw_request(view_a, key_a, request, now)
    assert not isinstance(confirmed, Rejected)
    view_a, confirmation = confirmed
    signed = coop.receive_withdraw_confirmation(view_b, request, confirmation)
    assert isinstance(signed, coop.SignedWithdraw)
    before_b = d.token.balanceOf(b.address)
    d.network.set_total_withdraw(
        b.address,
        a.address,
        signed.total_withdraw,
        signed.expiration,
        signed.participant_signature,
        signed.partner_signature,
    )
    assert d.token.balanceOf(b.address) - before_b == 700
    # Both views learn the withdraw from the chain's event.
    view_a = dataclasses.replace(
        view_a, partner=dataclasses.replace(view_a.partner, withdrawn=TokenAmount(700))
    )
    view_b = dataclasses.replace(
        view_b, our=dataclasses.replace(view_b.our, withdrawn=TokenAmount(700))
    )

    offer = coop.request_coop_settle(view_a, key_a, expiration)
    assert not isinstance(offer, Rejected)
    response = coop.receive_coop_settle_request(view_b, key_b, offer, now)
    assert isinstance(response, CoopSettleResponse)
    settled = coop.receive_coop_settle_response(view_a, offer, response)
    assert isinstance(settled, coop.SignedCoopSettle)
    before = d.token.balanceOf(a.address), d.token.balanceOf(b.address)
    first_is_a = a.raw < b.raw
    total_a, total_b = (
        (settled.total_withdraw1, settled.total_withdraw2)
        if first_is_a
        else (settled.total_withdraw2, settled.total_withdraw1)
    )
    d.network.cooperative_settle(
        a.address,
        b.address,
        total_a,
        total_b,
        settled.expiration,
        settled.our_signature,
        settled.partner_signature,
    )
    paid = d.token.balanceOf(a.address) - before[0], d.token.balanceOf(b.address) - before[1]
    assert paid == (ch.balance(view_a.our, view_a.partner), ch.balance(view_b.our, view_b.partner))
    assert paid == (DEPOSIT_A - 300, DEPOSIT_B + 300 - 700)
