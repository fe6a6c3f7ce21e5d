"""mesh_relay: delivery of opaque, signed payloads between node addresses over a mesh.

It knows nothing of payments. Its core is sans-I/O; sockets live in thin adapters. The
mesh-relay issue builds it; until then the package holds only this docstring.
"""
