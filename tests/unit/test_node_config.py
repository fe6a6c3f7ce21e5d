"""offchain.node.config: every setting from a flag, a variable and node.toml (in that
order of precedence), checked with errors that name the setting and the source; the
sample file docs/node.example.toml is what the generator writes and loads to the
defaults. `smartmesh config` prints both."""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path
from typing import Any

import pytest

from mesh_relay import cli as relay_cli
from offchain import cli
from offchain.node import config as node_config
from offchain.node.config import SETTINGS, NodeConfig
from offchain.node.errors import ConfigError, NodeValidationError
from offchain.node.store import Store
from offchain.protocol.fees import FeeSchedule
from offchain.protocol.state import Settings

SAMPLE = Path(__file__).resolve().parents[2] / "docs" / "node.example.toml"
ADDRESS = "0x008AeEda4D805471dF9b2A5B0f38A0C3bCBA786b"
TOKEN = "a-bearer-token-of-32-characters!"


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home of our own: no ~/.smartmesh/node.toml of the machine leaks in."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    return home


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser()
    node_config.add_arguments(result)
    return result


def resolve(
    *argv: str | Path, env: dict[str, str] | None = None
) -> tuple[NodeConfig, dict[str, str]]:
    args = parser().parse_args([str(a) for a in argv])
    return node_config.resolve(args, environ=env or {})


def load(*argv: str | Path, env: dict[str, str] | None = None) -> NodeConfig:
    return resolve(*argv, env=env)[0]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# -- defaults -----------------------------------------------------------------------------


def test_defaults(home: Path) -> None:
    config, sources = resolve()
    assert set(sources.values()) == {"default"}
    assert config.data_dir == home / ".smartmesh" / "node"
    assert config.keystore == home / ".smartmesh" / "keystore"
    assert config.database_path == home / ".smartmesh" / "node" / "node.sqlite3"
    assert config.lock_path.parent == config.mesh_snapshot_path.parent == config.data_dir
    assert (config.api_host, config.api_port, config.bearer_token()) == ("127.0.0.1", 5001, None)
    assert config.account is None and config.password_file is None
    assert config.protocol_settings() == Settings()
    assert config.fee_schedule() == FeeSchedule()
    assert (config.sync, config.snapshot_every, config.watch) == ("FULL", 1000, False)
    assert config.mesh_config().routed_mtu == 1200
    [udp] = config.udp_settings()
    assert (udp.listen, udp.beacons) == (("0.0.0.0", 7777), [("255.255.255.255", 7777)])
    assert config.tcp_settings() is None


def test_the_store_opens_where_the_config_says(tmp_path: Path) -> None:
    config = load("--data-dir", tmp_path / "node", "--sync", "NORMAL")
    store = Store.open(config.database_path, synchronous=config.sync)
    try:
        assert config.database_path.is_file() and config.lock_path.is_file()
    finally:
        store.close()


def test_confirmation_policy() -> None:
    config = load()
    assert config.confirmations is None
    assert config.confirmations_for(31337) == 1
    assert config.confirmations_for(1337) == 1
    assert config.confirmations_for(1) == 5
    assert config.confirmations_for(11155111) == 5
    assert load("--confirmations", "12").confirmations_for(31337) == 12
    assert node_config.default_confirmations(31337) == 1


def test_protocol_settings_carry_every_value() -> None:
    config = load(
        *("--reveal-timeout", "90", "--lock-timeout", "1200", "--hop-margin", "30"),
        *("--clock-tolerance", "10", "--max-attempts", "5", "--fee-flat", "7"),
        *("--fee-proportional-ppm", "100", "--fee-imbalance-ppm", "1000"),
    )
    assert config.protocol_settings() == Settings(
        reveal_timeout=90,
        lock_timeout=1200,
        hop_margin=30,
        clock_tolerance=10,
        max_attempts=5,
        fees=FeeSchedule(flat=7, proportional_ppm=100, imbalance_ppm=1000),
    )
    # Every field of the core's Settings (and FeeSchedule) is a setting of the node.
    names = {s.name for s in SETTINGS}
    for f in dataclasses.fields(Settings):
        assert f.name == "fees" or f.name in names
    for f in dataclasses.fields(FeeSchedule):
        assert f"fee_{f.name}" in names


# -- every setting from every source ------------------------------------------------------

# name: (TOML literal, text for a flag or a variable, expected value, extra flags that the
# value needs to be consistent). "{tmp}" is the test's folder.
CASES: dict[str, tuple[str, str, Any, tuple[str, ...]]] = {
    "data_dir": ('"/srv/node"', "/srv/node", Path("/srv/node"), ()),
    "log_level": ('"debug"', "DEBUG", "debug", ()),
    "sync": ('"normal"', "normal", "NORMAL", ()),
    "snapshot_every": ("50", "50", 50, ()),
    "deadline_warn_lead": ("600", "600", 600, ()),
    "watch": ("true", "true", True, ()),
    "watch_min_reward": ("5", "5", 5, ()),
    "delegates": (
        f'["{ADDRESS}"]',
        ADDRESS.lower(),
        (bytes.fromhex(ADDRESS[2:]),),
        (),
    ),
    "delegate_reward": (str(2**96 - 1), str(2**96 - 1), 2**96 - 1, ()),
    "gateway_patience": ("5.5", "5.5", 5.5, ()),
    "watch_drop_submissions": ("true", "true", True, ()),
    "keystore": ('"/srv/keys"', "/srv/keys", Path("/srv/keys"), ()),
    "account": (f'"{ADDRESS}"', ADDRESS.lower(), bytes.fromhex(ADDRESS[2:]), ()),
    "password_file": ('"{tmp}/password"', "{tmp}/password", "{tmp}/password", ()),
    "rpc_url": ('"wss://rpc.example.org/v3/k"', "wss://rpc.example.org/v3/k", None, ()),
    "deployment": ('"{tmp}/31337.json"', "{tmp}/31337.json", "{tmp}/31337.json", ()),
    "confirmations": ("12", "12", 12, ()),
    "poll_interval": ("0.5", "0.5", 0.5, ()),
    "log_range": ("10", "10", 10, ()),
    "chain_timeout": ("5", "5", 5.0, ()),
    "chain_max_block_age": ("86400", "86400", 86400, ()),
    "api_host": ('"::1"', "::1", "::1", ()),
    "api_port": ("0", "0", 0, ()),
    "api_token": (f'"{TOKEN}"', TOKEN, TOKEN, ()),
    "api_token_file": ('"{tmp}/token"', "{tmp}/token", "{tmp}/token", ()),
    "mesh_udp": ("false", "false", False, ("--mesh-peers", "relay.example.org:7778")),
    "mesh_udp_listen": ('"127.0.0.1:7000"', "127.0.0.1:7000", ("127.0.0.1", 7000), ()),
    "mesh_broadcast": ("false", "false", False, ("--mesh-beacons", "192.168.1.255:7777")),
    "mesh_multicast": ('"239.255.77.77:7777"', "239.255.77.77:7777", ("239.255.77.77", 7777), ()),
    "mesh_beacons": (
        '["10.0.0.255:7777", "[ff02::1]:7777"]',
        "10.0.0.255:7777, [ff02::1]:7777",
        (("10.0.0.255", 7777), ("ff02::1", 7777)),
        (),
    ),
    "mesh_tcp_listen": ('":7778"', ":7778", ("0.0.0.0", 7778), ()),
    "mesh_peers": (
        '["relay.example.org:7778", "7779"]',
        "relay.example.org:7778,7779",
        (("relay.example.org", 7778), ("127.0.0.1", 7779)),
        (),
    ),
    "mesh_mtu": ("210", "210", 210, ()),
    "mesh_rate_kib_per_s": ("256", "256", 256, ()),
    "mesh_snapshot_interval": ("5", "5", 5.0, ()),
    "mesh_impair_loss": ("0.1", "0.1", 0.1, ()),
    "mesh_impair_delay": ("0.02", "0.02", 0.02, ()),
    "mesh_impair_jitter": ("1", "1", 1.0, ()),
    "reveal_timeout": ("90", "90", 90, ()),
    "lock_timeout": ("1200", "1200", 1200, ()),
    "hop_margin": ("30", "30", 30, ()),
    "clock_tolerance": ("10", "10", 10, ()),
    "max_attempts": ("5", "5", 5, ()),
    "submit_margin": ("60", "60", 60, ()),
    "offline_min_lead": ("300", "300", 300, ()),
    "settle_window": ("7200", "7200", 7200, ()),
    "fee_flat": (str(2**255), str(2**255), 2**255, ()),
    "fee_proportional_ppm": ("100", "100", 100, ()),
    "fee_imbalance_ppm": ("1000", "1000", 1000, ()),
}


def test_the_cases_cover_every_setting() -> None:
    assert list(CASES) == [s.name for s in SETTINGS]


def _case(name: str, tmp: Path) -> tuple[str, str, Any, tuple[str, ...]]:
    toml, text, expected, extra = CASES[name]
    write(tmp / "password", "pw\n")
    write(tmp / "token", TOKEN + "\n")
    write(tmp / "31337.json", "{}")
    toml, text = toml.replace("{tmp}", str(tmp)), text.replace("{tmp}", str(tmp))
    if isinstance(expected, str) and "{tmp}" in expected:
        expected = Path(expected.replace("{tmp}", str(tmp)))
    if expected is None:
        expected = text
    return toml, text, expected, extra


@pytest.mark.parametrize("setting", SETTINGS, ids=[s.name for s in SETTINGS])
def test_every_setting_from_flag_env_and_file(tmp_path: Path, setting: Any) -> None:
    toml, text, expected, extra = _case(setting.name, tmp_path)
    flag: list[str] = [setting.flag, text]
    if isinstance(expected, bool):
        flag = [setting.flag if expected else "--no-" + setting.flag[2:]]
    file = write(tmp_path / "node.toml", f"[{setting.table}]\n{setting.key} = {toml}\n")

    from_flag, sources = resolve(*flag, *extra)
    assert getattr(from_flag, setting.name) == expected
    assert sources[setting.name] == setting.flag

    from_env, sources = resolve(*extra, env={setting.env: text})
    assert getattr(from_env, setting.name) == expected
    assert sources[setting.name] == setting.env

    from_file, sources = resolve("--config", file, *extra)
    assert getattr(from_file, setting.name) == expected
    assert sources[setting.name] == f"{file} [{setting.table}] {setting.key}"

    assert from_flag == from_env == from_file != load(*extra)


def test_precedence_flag_then_environment_then_file_then_default(tmp_path: Path) -> None:
    file = write(tmp_path / "node.toml", "[api]\nport = 6001\n[chain]\nlog_range = 7\n")
    env = {"SMARTMESH_API_PORT": "6002", "SMARTMESH_CONFIG": str(file)}
    assert load("--api-port", "6003", env=env).api_port == 6003
    config, sources = resolve(env=env)
    assert (config.api_port, sources["api_port"]) == (6002, "SMARTMESH_API_PORT")
    assert config.log_range == 7  # the file still counts for what the others leave out
    assert load("--config", file).api_port == 6001
    assert load().api_port == 5001
    # --config wins over SMARTMESH_CONFIG as well.
    other = write(tmp_path / "other.toml", "[api]\nport = 6004\n")
    assert load("--config", other, env={"SMARTMESH_CONFIG": str(file)}).api_port == 6004


def test_the_default_file_is_in_the_home_folder(home: Path) -> None:
    write(home / ".smartmesh" / "node.toml", "[node]\nsnapshot_every = 5\n")
    config, sources = resolve()
    assert config.snapshot_every == 5
    assert sources["snapshot_every"].startswith(str(home / ".smartmesh" / "node.toml"))
    assert load(env={"SMARTMESH_CONFIG": ""}).snapshot_every == 1000  # set empty: no file


def test_relative_paths(tmp_path: Path, home: Path) -> None:
    file = write(
        tmp_path / "etc" / "node.toml",
        '[node]\ndata_dir = "state"\n[keys]\nkeystore = "~/keys"\n',
    )
    config = load("--config", file)
    assert config.data_dir == tmp_path / "etc" / "state"  # the file's folder
    assert config.keystore == home / "keys"
    config = load("--config", file, "--data-dir", "here", env={"SMARTMESH_KEYSTORE": "ks"})
    assert config.data_dir == tmp_path / "here"  # the working directory
    assert config.keystore == tmp_path / "ks"


def test_an_empty_text_unsets_an_optional_setting(tmp_path: Path) -> None:
    file = write(tmp_path / "node.toml", f'[keys]\naccount = "{ADDRESS}"\n')
    assert load("--config", file).account is not None
    assert load("--config", file, env={"SMARTMESH_ACCOUNT": ""}).account is None
    assert load("--config", file, "--account", "").account is None


def test_lists_from_repeated_flags_and_commas() -> None:
    config = load("--mesh-peers", "a.example:1", "--mesh-peers", "b.example:2,c.example:3")
    assert config.mesh_peers == (("a.example", 1), ("b.example", 2), ("c.example", 3))
    assert load(env={"SMARTMESH_MESH_PEERS": " a.example:1 , "}).mesh_peers == (("a.example", 1),)


def test_mesh_links_as_the_relay_describes_them() -> None:
    config = load(
        *("--mesh-udp-listen", ":7000", "--mesh-multicast", "239.255.77.77:7001"),
        *("--mesh-beacons", "10.0.0.255:7000,255.255.255.255:7000"),
        *("--mesh-tcp-listen", "0.0.0.0:7778", "--mesh-peers", "relay.example.org:7778"),
    )
    [udp] = config.udp_settings()
    assert udp == relay_cli.UdpSettings(
        ("0.0.0.0", 7000),
        [("255.255.255.255", 7000), ("239.255.77.77", 7001), ("10.0.0.255", 7000)],
    )
    assert config.tcp_settings() == relay_cli.TcpSettings(
        ("0.0.0.0", 7778), [("relay.example.org", 7778)]
    )
    tcp_only = load("--no-mesh-udp", "--mesh-tcp-listen", ":7778")
    assert tcp_only.udp_settings() == []


# -- errors -------------------------------------------------------------------------------

ERRORS: list[tuple[tuple[str, ...], dict[str, str], str, str]] = [
    # (flags, environment, setting, words of the message)
    (("--api-port", "70000"), {}, "api_port", "70000 is not within 0..65535 (from --api-port)"),
    (
        (),
        {"SMARTMESH_API_PORT": "http"},
        "api_port",
        "integer, got 'http' (from SMARTMESH_API_PORT)",
    ),
    (("--log-level", "loud"), {}, "log_level", "one of debug, info, warning, error"),
    (("--sync", "OFF"), {}, "sync", "one of FULL, NORMAL"),
    ((), {"SMARTMESH_WATCH": "maybe"}, "watch", "expected true or false"),
    (("--rpc-url", "ftp://example.org"), {}, "rpc_url", "http/https/ws/wss URL"),
    (("--account", "0x1234"), {}, "account", "0x and 40 hex digits"),
    (("--account", "0x" + ADDRESS[2:].swapcase()), {}, "account", "EIP-55 checksum"),
    (("--mesh-peers", "relay:port"), {}, "mesh_peers", "port of 'relay:port' is not a number"),
    (("--mesh-mtu", "100"), {}, "mesh_mtu", "not within 140..65507"),
    (("--poll-interval", "0"), {}, "poll_interval", "above 0"),
    (("--poll-interval", "nan"), {}, "poll_interval", "above 0"),
    (("--confirmations", "0"), {}, "confirmations", "not within 1..10000"),
    (("--mesh-impair-loss", "1"), {}, "mesh_impair_loss", "1.0 is not within [0, 1)"),
    (("--mesh-impair-delay", "-0.1"), {}, "mesh_impair_delay", "-0.1 is not within [0, 60)"),
    ((), {"SMARTMESH_MESH_IMPAIR_JITTER": "inf"}, "mesh_impair_jitter", "inf is not within"),
    (("--fee-proportional-ppm", "2000000"), {}, "fee_proportional_ppm", "0..1000000"),
    (("--fee-imbalance-ppm", "600000"), {}, "fee_imbalance_ppm", "0..500000"),
    (("--max-attempts", "0"), {}, "max_attempts", "not within 1..100"),
    (("--lock-timeout", "80"), {}, "lock_timeout", "must exceed reveal_timeout + hop_margin"),
    (("--settle-window", "600"), {}, "lock_timeout", "must be below settle_window (600)"),
    (("--clock-tolerance", "60"), {}, "clock_tolerance", "below reveal_timeout (60)"),
    (
        ("--settle-window", "700", "--lock-timeout", "100", "--offline-min-lead", "700"),
        {},
        "settle_window",
        "must exceed clock_tolerance + submit_margin + offline_min_lead (735)",
    ),
    (("--chain-max-block-age", "0"), {}, "chain_max_block_age", "not within 1.."),
    (("--chain-timeout", "0"), {}, "chain_timeout", "above 0"),
    (("--api-host", "0.0.0.0"), {}, "api_host", "set api_token_file"),
    (("--api-token", "short"), {}, "api_token", "at least 16 characters"),
    (("--api-token", TOKEN, "--api-token-file", "token"), {}, "api_token", "not both"),
    (("--api-token-file", "absent"), {}, "api_token_file", "cannot read"),
    (("--mesh-multicast", "10.0.0.1:7777"), {}, "mesh_multicast", "not a multicast group"),
    (("--no-mesh-udp",), {}, "mesh_udp", "no mesh link"),
    (("--no-mesh-broadcast",), {}, "mesh_udp", "sends no beacons"),
    (("--mesh-udp-listen", ":0"), {}, "mesh_broadcast", "needs a fixed one"),
    (("--password-file", "absent"), {}, "password_file", "no such file"),
    ((), {"SMARTMESH_DEPLOYMENT": "absent.json"}, "deployment", "(from SMARTMESH_DEPLOYMENT)"),
    (("--config", "absent.toml"), {}, "config", "no such file"),
]


@pytest.mark.parametrize(("argv", "env", "setting", "words"), ERRORS, ids=[e[3] for e in ERRORS])
def test_errors_name_the_setting(
    argv: tuple[str, ...], env: dict[str, str], setting: str, words: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load(*argv, env=env)
    assert raised.value.setting == setting
    message = str(raised.value)
    assert words in message
    assert message.startswith(setting) or setting == "config"
    assert isinstance(raised.value, NodeValidationError | ValueError)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[api]\nprot = 5001\n", "unknown setting 'prot' in [api] (did you mean 'port'?)"),
        ("[chian]\nrpc_url = 'http://x'\n", "unknown table [chian] (did you mean 'chain'?)"),
        ("api_port = 5001\n", "'api_port' outside a table"),
        ("[api]\nport = '5001'\n", "api_port: expected an integer, got '5001'"),
        ("[mesh]\npeers = 'a:1'\n", "mesh_peers: expected a list"),
        ("[mesh.tuning]\nhello_interval = 1\n", "unknown setting 'tuning' in [mesh]"),
        ("[api]\nport = \n", "Invalid value"),
        ("api = 1\n", "api must be a table ([api])"),
    ],
)
def test_file_errors(tmp_path: Path, text: str, words: str) -> None:
    file = write(tmp_path / "node.toml", text)
    with pytest.raises(ConfigError) as raised:
        load("--config", file)
    assert words in str(raised.value)
    assert str(file) in str(raised.value)


def test_a_secret_is_never_repeated_in_an_error() -> None:
    with pytest.raises(ConfigError) as raised:
        load(env={"SMARTMESH_API_TOKEN": "too-short-secret"[:15]})
    assert "too-short-secre" not in str(raised.value)
    with pytest.raises(ConfigError) as raised:
        load("--rpc-url", "ftp://user:pass@example.org/key")
    assert "pass" not in str(raised.value) and "key" not in str(raised.value)


def test_api_token_from_a_file(tmp_path: Path) -> None:
    token_file = write(tmp_path / "token", f"{TOKEN}\nignored\n")
    config = load("--api-token-file", token_file, "--api-host", "0.0.0.0")
    assert config.bearer_token() == TOKEN
    write(token_file, "rotated-token-of-enough-length\n")
    assert config.bearer_token() == "rotated-token-of-enough-length"
    write(token_file, "short\n")
    with pytest.raises(ConfigError, match="shorter than 16"):
        load("--api-token-file", token_file)


def test_a_typo_in_a_variable_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="offchain.node.config"):
        load(env={"SMARTMESH_API_PROT": "1", "SMARTMESH_SOMETHING_ELSE": "x"})
    assert "SMARTMESH_API_PROT" in caplog.text and "SMARTMESH_API_PORT" in caplog.text
    assert "SOMETHING_ELSE" not in caplog.text  # not ours, not near one of ours


def test_secrets_stay_hidden_in_repr_and_show(tmp_path: Path) -> None:
    url = "https://mainnet.example.org/v3/0123456789abcdef"
    config, sources = resolve("--rpc-url", url, env={"SMARTMESH_API_TOKEN": TOKEN})
    for text in (repr(config), node_config.render_toml(config, sources=sources)):
        assert TOKEN not in text and "0123456789abcdef" not in text
        assert "https://mainnet.example.org/<hidden>" in text
    assert ADDRESS in repr(load("--account", ADDRESS))


# -- the sample file ----------------------------------------------------------------------


def test_sample_file_is_what_the_generator_writes() -> None:
    assert SAMPLE.read_text() == node_config.sample_toml(), (
        "docs/node.example.toml is stale: smartmesh config sample > docs/node.example.toml"
    )


def test_sample_file_loads_to_the_defaults() -> None:
    from_sample, sources = resolve("--config", SAMPLE)
    assert from_sample == load()
    assert {s for s, source in sources.items() if source == "default"} == {
        s.name for s in SETTINGS if s.default is None
    }


def test_every_setting_is_documented() -> None:
    names = [s.name for s in SETTINGS]
    assert len(set(names)) == len(names)
    assert len({(s.table, s.key) for s in SETTINGS}) == len(SETTINGS)
    for s in SETTINGS:
        assert s.table in node_config.TABLES
        assert s.help and "\n" not in s.help
        assert s.default is not None or s.example is not None, s.name
        assert s.flag in parser().format_help()


def test_cli_config_sample_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["config", "sample"]) == 0
    assert capsys.readouterr().out == node_config.sample_toml()

    file = write(tmp_path / "node.toml", "[node]\nsnapshot_every = 9\n")
    assert cli.main(["config", "show", "--config", str(file), "--api-port", "6000"]) == 0
    out = capsys.readouterr().out
    assert "port = 6000  # from --api-port" in out
    assert f"snapshot_every = 9  # from {file} [node] snapshot_every" in out
    assert "# account = " in out and "not set" in out

    assert cli.main(["config", "show", "--api-port", "x"]) == 1
    assert "smartmesh config: error: api_port" in capsys.readouterr().err


def test_mesh_rate__the_node_mesh_accepts_what_its_setting_says() -> None:
    # A radio relay's 256 KiB/s default throttled a node paying over loopback to a halt
    # (locks piled up to the cap while frames were dropped): the node sets its own.
    config = NodeConfig(mesh_rate_kib_per_s=1024)
    assert config.mesh_config().rate_bytes_per_s == 1024 * 1024
    assert config.mesh_config().rate_burst_bytes == 2 * 1024 * 1024
