"""How `offchain.node.app.Node` assembles its parts from the settings (no chain needed:
the endpoint is only dialled when the node starts)."""

from __future__ import annotations

from pathlib import Path

from mesh_relay.links import Impaired
from mesh_relay.tcp import TcpLinks
from mesh_relay.udp import UdpLink
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


def test_mesh_impairment_reaches_every_link(tmp_path: Path) -> None:
    # Testing only (benches and the island test use it where the kernel has no netem).
    config = NodeConfig(
        data_dir=tmp_path,
        mesh_broadcast=False,
        mesh_beacons=(("127.0.0.1", 7777),),
        mesh_tcp_listen=("127.0.0.1", 0),
        mesh_impair_loss=0.1,
        mesh_impair_delay=0.02,
        mesh_impair_jitter=0.01,
    )
    node = Node(config, make_key(1), DEPLOYMENT)
    try:
        adapters = node.mesh.adapters
        assert [type(a) for a in adapters] == [Impaired, Impaired]
        assert [type(a.inner) for a in adapters if isinstance(a, Impaired)] == [UdpLink, TcpLinks]
        for adapter in adapters:
            impaired = adapter.describe()["impaired"]
            assert impaired == {"loss": 0.1, "delay": 0.02, "jitter": 0.01}
    finally:
        node.store.close()
    plain_config = NodeConfig(
        data_dir=tmp_path / "plain", mesh_udp=False, mesh_tcp_listen=("127.0.0.1", 0)
    )
    plain = Node(plain_config, make_key(2), DEPLOYMENT)
    try:
        assert [type(a) for a in plain.mesh.adapters] == [TcpLinks]
    finally:
        plain.store.close()
