"""``python -m mesh_relay``: the relay command (``mesh_relay.cli``), without ``offchain``.

Belongs here: only the entry point. ``smartmesh relay`` runs the same code.
"""

import sys

from mesh_relay.cli import main

sys.exit(main())
