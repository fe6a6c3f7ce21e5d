"""mesh_relay.cli: the relay's settings from defaults, a TOML file and flags; bad input
gets a clear error; ``smartmesh relay`` and ``python -m mesh_relay`` share the parser.
No sockets are opened here (tests/integration runs the relay)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from mesh_relay import cli
from mesh_relay.errors import ConfigError
from mesh_relay.links import Impaired
from mesh_relay.tcp import TcpLinks
from mesh_relay.udp import UdpLink
from offchain import cli as smartmesh_cli


def settings(*argv: str) -> cli.RelaySettings:
    return cli.load_settings(cli.build_parser().parse_args(list(argv)))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:7777", ("127.0.0.1", 7777)),
        (":7777", ("0.0.0.0", 7777)),
        ("7777", ("0.0.0.0", 7777)),
        ("[::1]:7777", ("::1", 7777)),
        ("relay.example.org:0", ("relay.example.org", 0)),
    ],
)
def test_parse_endpoint(text: str, expected: tuple[str, int]) -> None:
    assert cli.parse_endpoint(text, "x") == expected


@pytest.mark.parametrize("text", ["", "host:", "host:port", "host:70000", "host:-1"])
def test_parse_endpoint_rejects(text: str) -> None:
    with pytest.raises(ConfigError):
        cli.parse_endpoint(text, "x")


def test_defaults_are_one_lan_segment_in_a_data_folder() -> None:
    s = settings()
    assert s.key_file == Path("relay-data/relay.key")
    assert s.snapshot == Path("relay-data/relay.snapshot")
    assert [(u.listen, u.beacons) for u in s.udp] == [
        (("0.0.0.0", 7777), [("255.255.255.255", 7777)])
    ]
    assert s.tcp is None and s.control is None
    assert s.mesh_config().routed_mtu == 1200


def test_config_file_then_flags(tmp_path: Path) -> None:
    config = tmp_path / "relay.toml"
    config.write_text(
        """
data_dir = "state"
snapshot_interval = 2
log_level = "warning"
mtu = 210
control = "relay.sock"

[[udp]]
listen = "0.0.0.0:7777"
beacons = ["192.168.1.255:7777", "239.255.77.77:7778"]

[[udp]]
listen = "10.0.0.2:7777"
beacons = ["10.0.0.255:7777"]
mtu = 1200

[tcp]
listen = "0.0.0.0:7778"
peers = ["relay.example.org:7778", "7779"]

[mesh]
hello_interval = 5
hop_window = 32
"""
    )
    s = settings("--config", str(config))
    assert s.key_file == tmp_path / "state" / "relay.key"  # relative to the file
    assert s.snapshot_interval == 2.0 and s.log_level == "warning" and s.mtu == 210
    assert s.control == str(tmp_path / "relay.sock")
    assert [u.beacons for u in s.udp] == [
        [("192.168.1.255", 7777), ("239.255.77.77", 7778)],
        [("10.0.0.255", 7777)],
    ]
    assert s.udp[1].mtu == 1200
    assert s.tcp is not None
    assert s.tcp.peers == [("relay.example.org", 7778), ("127.0.0.1", 7779)]
    mesh = s.mesh_config()
    assert (mesh.hello_interval, mesh.hop_window, mesh.routed_mtu) == (5.0, 32, 210)

    s = settings(
        "--config",
        str(config),
        "--key-file",
        "k.hex",
        "--mtu",
        "1200",
        "--udp-listen",
        "127.0.0.1:9000",
        "--udp-beacon",
        "127.255.255.255:9001",
        "--tcp-peer",
        "127.0.0.1:9100",
        "--mesh",
        "hello_interval=3",
        "--control",
        "127.0.0.1:7700",
        "--log-level",
        "debug",
    )
    assert s.key_file == Path("k.hex") and s.mtu == 1200 and s.log_level == "debug"
    assert [(u.listen, u.beacons) for u in s.udp] == [
        (("127.0.0.1", 9000), [("127.255.255.255", 9001)])
    ]
    assert s.tcp is not None and s.tcp.peers == [("127.0.0.1", 9100)]
    assert s.tcp.listen == ("0.0.0.0", 7778)  # still from the file
    assert s.mesh_config().hello_interval == 3.0 and s.mesh_config().hop_window == 32
    assert s.control == "127.0.0.1:7700"


def test_tcp_only_when_only_tcp_is_asked_for() -> None:
    s = settings("--tcp-listen", "127.0.0.1:0")
    assert s.udp == [] and s.tcp is not None and s.tcp.listen == ("127.0.0.1", 0)
    assert settings("--no-udp", "--tcp-peer", "9").udp == []


@pytest.mark.parametrize(
    ("file", "flags", "message"),
    [
        ("colour = 'blue'", [], "unknown config keys: colour"),
        ("mtu = 'big'", [], "mtu: expected int"),
        ("mtu = true", [], "mtu: expected int"),
        ("[mesh]\nhello_intervals = 3", [], "no MeshConfig field named 'hello_intervals'"),
        ("[mesh]\nhop_window = 1.5", [], "mesh.hop_window: expected int"),
        ("[mesh]\nhello_interval = 40", [], "neighbour_timeout must exceed hello_interval"),
        ("[udp]\nlisten = ':1'\nport = 3", [], "udp: keys are listen, beacons, mtu"),
        ("[udp]\nbeacons = '1.2.3.255:1'", [], "udp.beacons: a list"),
        ("[[udp]]\nmtu = 200\n", ["--mtu", "210"], "below the routed MTU 210"),
        ("[tcp]\npeers = 'x:1'", [], "tcp.peers: a list"),
        ("", ["--no-udp"], "no link"),
        ("", ["--mtu", "100"], "routed_mtu must be within"),
        ("", ["--mesh", "hello_interval"], "expected NAME=VALUE"),
        ("", ["--mesh", "hello_interval=fast"], "not a number"),
        ("", ["--control", "192.168.1.2:7700"], "only on a loopback address"),
        ("", ["--impair-loss", "1.5"], "impair-loss"),
        ("", ["--snapshot-interval", "0"], "must be positive"),
        ("this is = not toml =", [], "relay.toml"),
    ],
)
def test_bad_settings_say_what_is_wrong(
    tmp_path: Path, file: str, flags: list[str], message: str
) -> None:
    config = tmp_path / "relay.toml"
    config.write_text(file)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        settings("--config", str(config), *flags)


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        settings("--config", str(tmp_path / "absent.toml"))


def test_parser_errors_exit_with_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        cli.main(["--no-udp"])
    assert raised.value.code == 2
    assert "no link" in capsys.readouterr().err


def test_adapters_follow_the_settings() -> None:
    s = settings(
        "--udp-listen", "127.0.0.1:0", "--tcp-listen", "127.0.0.1:0", "--tcp-peer", "127.0.0.1:1"
    )
    adapters = cli.build_adapters(s)
    assert [type(a) for a in adapters] == [UdpLink, TcpLinks]
    impaired = cli.build_adapters(
        settings("--udp-listen", "127.0.0.1:0", "--impair-loss", "0.1", "--impair-delay", "0.01")
    )
    assert [type(a) for a in impaired] == [Impaired]


def test_print_address_creates_the_key_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "relay.key"
    assert cli.main(["--key-file", str(key), "--print-address"]) == 0
    first = capsys.readouterr().out.strip()
    assert first.startswith("0x") and len(first) == 42
    assert key.stat().st_mode & 0o777 == 0o600
    assert cli.main(["--key-file", str(key), "--print-address"]) == 0
    assert capsys.readouterr().out.strip() == first


def test_smartmesh_relay_is_the_same_command(tmp_path: Path) -> None:
    parser = smartmesh_cli.build_parser()
    args = parser.parse_args(["relay", "--no-udp", "--tcp-listen", "127.0.0.1:0"])
    assert isinstance(args, argparse.Namespace)
    s = cli.load_settings(args)
    assert s.udp == [] and s.tcp is not None
    key = tmp_path / "k"
    assert smartmesh_cli.main(["relay", "--key-file", str(key), "--print-address"]) == 0
    assert key.exists()
