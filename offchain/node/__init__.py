"""The payment node: the runtime shell that composes the protocol core, the chain and the mesh.

Belongs here: persistence (``store``), the asyncio runtime that feeds the core and runs its
effects (``runtime``), the mesh transport of protocol messages (``transport``), keys
(``keystore``), configuration (``config``) and the service interface the API uses
(``service``). The only package where effects run (DESIGN.md §1).
"""
