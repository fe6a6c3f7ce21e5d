"""The watch service's pure part: its wire format, and what a watcher decides.

A watch node (``smartmesh node --watch``) accepts requests from mesh peers and acts on
chain for them: it updates a closed channel with the newest proof a participant gave it
(as that participant's delegate, for the reward its delegation names), registers
secrets before their deadlines, unlocks after settle, settles, and broadcasts signed
transactions of nodes that cannot reach the chain themselves (as a gateway).

Belongs here, pure like ``offchain.protocol`` (no I/O, no clock, no randomness; time
and chain facts come in as arguments): ``wire`` (the 0xA2 payload family), ``rules``
(whether a request is accepted, and why not), ``plan`` (what to do next for a held
request, given what the chain shows and the time), ``beacons`` (which watchers a node
has heard of) and ``client`` (the requests a delegating node makes of its channels).

Does not belong here: sockets, SQL, JSON-RPC, timers: ``offchain.node`` runs the
effects (``watcher``, ``delegation``, ``watch_service``). This package imports nothing
of ours but ``offchain.protocol``.
"""
