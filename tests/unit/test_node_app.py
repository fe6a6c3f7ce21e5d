"""How `offchain.node.app.Node` assembles its parts from the settings (no chain needed:
the endpoint is only dialled when the node starts)."""

from __future__ import annotations

from pathlib import Path

from offchain.chain.manifest import Deployment
from offchain.node.app import Node
from offchain.node.config import NodeConfig
from tests.lib.network import make_key

DEPLOYMENT = Deployment(31337, b"\x01" * 20, b"\x02" * 20, {}, 0)  # type: ignore[arg-type]


def test_settings_reach_the_parts(tmp_path: Path) -> None:
    config = NodeConfig(
        data_dir=tmp_path,
        mesh_udp=False,
        mesh_snapshot_interval=5.0,
        mesh_rate_kib_per_s=512,
        reveal_timeout=30,
    )
    node = Node(config, make_key(1), DEPLOYMENT)
    try:
        assert node.mesh.node.config.app_acks  # acks follow commits, whatever the settings
        assert node.mesh.node.config.rate_bytes_per_s == 512 * 1024
        assert node.mesh._snapshot_interval == 5.0
        assert node.runtime.settings.reveal_timeout == 30
        assert node.store.path == config.database_path
    finally:
        node.store.close()
