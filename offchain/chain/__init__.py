"""Chain access layer: turns confirmed logs into protocol inputs and protocol effects into
transactions, over any Ethereum JSON-RPC node.

Belongs here: loading the compiled contracts the build ships (``artifacts``), reading
logs and state through web3.py, building and sending transactions. It holds no channel
logic: what a log means for a channel, and which transaction a channel needs, are decided
in ``offchain.protocol``; this package only translates between those values and the chain.
It never imports ape: the node at run time needs only web3 and the shipped artifacts.
"""
