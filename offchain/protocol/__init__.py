"""The pure core of SmartMesh: data types, signatures and channel rules.

Everything in this package is deterministic and side-effect free: no sockets, no asyncio,
no clock, no randomness, no database, and no import of any other SmartMesh package. Time
and randomness come in as inputs. It holds the Python mirror of the on-chain rules
(EIP-712 structs, locksroot and balance hash, settlement payouts), so that the node
computes exactly what the contracts check, and the off-chain protocol built on them.

Modules:
    errors      the exception taxonomy of the package
    types       NewTypes for quantities and byte strings, with range-checking constructors
    crypto      keccak256, sha256, secp256k1 signing and strict recovery
    eip712      the domain and the five signed structs of docs/spec.md section 2
    locks       hash-time locks, locksroot, balance hash, channel id
    settlement  the payouts the token network computes at settle, unlock and cooperative
                settle
    messages, codec, signing, wire_doc   the off-chain messages and their wire format
    channel, cooperative                 one channel's rules (proofs, withdraw, coop settle)
    fees, routes                         mediation fees and the route search
    transitions, state, step, node       the node's transition: inputs, effects, state
    initiator, mediator, target          the three roles of a mediated payment
    frozen                               a fast replace for the frozen dataclasses
"""
