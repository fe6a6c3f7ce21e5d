"""SmartMesh off-chain stack: the Python side of the payment-channel network.

Sub-packages, from the inside out: ``protocol`` (pure rules and data, no I/O), ``chain``
(JSON-RPC access), ``node`` (the asyncio runtime that owns persistence and effects) and
``api`` (the HTTP face). Nothing with behaviour belongs in this file; it only marks the
package.
"""
