"""``smartmesh node``: start a payment node from its settings, serve its API until stopped.

Belongs here: the process around ``app.Node``: unlock the key, load and check the
deployment manifest against the endpoint (a wrong chain or a missing contract stops the
node with a clear message; an endpoint that does not answer does not: the node starts
blind and keeps trying), start the node and its API, print one JSON "ready" line on
stdout (scripts and tests read it), and stop cleanly on SIGINT or SIGTERM.

``SMARTMESH_FAILPOINT=after_commit:N`` makes the process kill itself (``os._exit``, as
``kill -9`` would) right after its N-th commit, before that commit's effects run: the
crash tests use it to stop a node at every persistence point of a payment. With
``after_commit:N:on_sigusr1`` the count starts when the process gets SIGUSR1 instead of
at its start (a test lets the node settle, arms it, then makes it act), and a later
SIGUSR1 starts it again. ``SMARTMESH_PROFILE=FILE`` runs the node under cProfile and
writes the statistics to FILE (``%p`` becomes the process id) when it stops.

Once started, the objects of the start (modules, ABIs, settings: about 100,000) are moved
out of the garbage collector's sight (``gc.freeze``) and the youngest generation is
collected every ``GC_THRESHOLD[0]`` allocations instead of 700: a payment allocates many
short-lived values that reference counting frees, and the collector's passes over the
long-lived heap were about a tenth of a busy node's CPU.

Does not belong here: settings parsing (``config``), keys (``keystore``), the node itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import json
import logging
import os
import signal
import sys
from typing import Final, TextIO

from offchain.api.server import serve
from offchain.chain.errors import ChainUnavailable, DeploymentError
from offchain.chain.manifest import load_deployment, verify_deployment
from offchain.node import keystore
from offchain.node.app import Node
from offchain.node.config import NodeConfig
from offchain.node.errors import NodeError

log = logging.getLogger("smartmesh.node")

GC_THRESHOLD: Final = (20_000, 20, 20)


class StartError(NodeError):
    """The node cannot start: the message says what to fix."""


def install_failpoint(node: Node) -> None:
    """Set up ``SMARTMESH_FAILPOINT`` (call inside the running loop, before the start)."""
    spec = os.environ.get("SMARTMESH_FAILPOINT", "")
    if not spec:
        return
    name, _, rest = spec.partition(":")
    count, _, arming = rest.partition(":")
    if name != "after_commit" or not count.isdigit() or arming not in ("", "on_sigusr1"):
        raise StartError(f"SMARTMESH_FAILPOINT: unknown failpoint {spec!r}")
    if arming:
        runtime = node.runtime
        asyncio.get_running_loop().add_signal_handler(
            signal.SIGUSR1, lambda: runtime.crash_after(int(count))
        )
    else:
        node.runtime.crash_after_commits = int(count)


async def run_node(config: NodeConfig, out: TextIO = sys.stdout) -> int:
    if config.deployment is None:
        raise StartError("no deployment manifest: set [chain] deployment (or --deployment)")
    try:
        deployment = load_deployment(config.deployment)
    except DeploymentError as exc:
        raise StartError(str(exc)) from exc
    _, key = keystore.unlock(config.keystore, config.account, config.password_file)
    node = Node(config, bytes(key), deployment)
    try:
        try:
            await verify_deployment(node.endpoint, deployment)
        except ChainUnavailable as exc:
            log.warning("chain endpoint not reachable (%s): starting blind, will retry", exc)
        except DeploymentError as exc:
            raise StartError(str(exc)) from exc
        install_failpoint(node)
        await node.start()
        api = await serve(node, config.api_host, config.api_port, config.bearer_token())
    except BaseException:
        await node.stop()
        raise
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
    ready = {
        "event": "ready",
        "address": "0x" + node.address.hex(),
        "api": api.url,
        "chain_id": deployment.chain_id,
        "mesh": node.mesh.status()["adapters"],
    }
    out.write(json.dumps(ready) + "\n")
    out.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        await api.close()
        await node.stop()
    return 0


def run(args: argparse.Namespace, config: NodeConfig) -> int:
    logging.basicConfig(
        level=getattr(logging, config.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    profile_path = os.environ.get("SMARTMESH_PROFILE", "").replace("%p", str(os.getpid()))
    profiler = cProfile.Profile() if profile_path else None
    try:
        if profiler is not None:
            profiler.enable()
        return asyncio.run(run_node(config))
    except StartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if profiler is not None and profile_path:
            profiler.disable()
            profiler.dump_stats(profile_path)
