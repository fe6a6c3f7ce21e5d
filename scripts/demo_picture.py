"""The picture of `make demo-offline`: the island's mesh, who was blind, the payment paths.

Belongs here: ``Picture`` (what the demo saw, as plain values) and ``render`` (a
self-contained SVG document of it, written by hand: no drawing library). The layout is
the demo's: the chain at the top with a line to it from every node (its uplink: cut ones
crossed out), the channel line (A-B-C-D-E) across the middle, the watcher between the
two, linked to every node over the mesh. The payment paths are arrows along the line;
every numbered step of the text timeline is placed where it happened and listed under
the drawing with its time.

Does not belong here: running anything (``scripts.demo_offline``), reading a node.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from typing import Final
from xml.sax.saxutils import escape

WIDTH: Final = 1000
CHAIN_Y: Final = 84
BUS_Y: Final = 140
GATEWAY_Y: Final = 214
LINE_Y: Final = 370
NODE_R: Final = 28
STEP_R: Final = 11
PATH1: Final = 44
PATH2: Final = 84
"""How far above the line the first and the second payment's arrows run."""
LINK_AT: Final = 0.3
LINK_STEP: Final = 0.15
"""Where a badge on a watcher's mesh link goes (a fraction of the link from the watcher),
and how much further each next badge on the same link."""
FONT: Final = "DejaVu Sans, Arial, Helvetica, sans-serif"
WRAP: Final = 125
"""Characters per line of the timeline under the drawing."""

TONES: Final = {
    "chain": "#1f5fbf",
    "path1": "#00838f",
    "path2": "#6a3fb5",
    "blind": "#5f6368",
    "cheat": "#c62828",
    "watch": "#e08a00",
    "gateway": "#8d5524",
    "sees": "#1b8a3a",
    "channel": "#333333",
    "mesh": "#9aa0a6",
}
"""Colours by role; a ``Step``'s ``tone`` is one of these keys."""


@dataclass(frozen=True)
class Step:
    """One numbered step of the timeline: when (seconds since the start), what, where on
    the drawing its badge goes and in which colour.

    ``where``: node names (``"E"``), channels (``"B-C"``), ``"chain"``, ``"uplinks"``,
    ``"path1"``/``"path2"`` (the payment arrows), ``"C>G"`` (the mesh link from a node to
    the watcher: what it carried for that node), several separated by commas (a badge at
    each); empty: listed only. ``tone``: a key of ``TONES``."""

    number: int
    at: float
    text: str
    where: str
    tone: str = "channel"


@dataclass(frozen=True)
class Path:
    """A payment along the line, ``hops[0]`` to ``hops[-1]``, and its label."""

    hops: tuple[str, ...]
    label: str


@dataclass(frozen=True)
class Carried:
    """A submission of ``origin`` that the watcher carried to the chain (as a gateway)."""

    origin: str
    label: str


@dataclass
class Picture:
    line: tuple[str, ...]
    """The channel line, left to right."""
    gateway: str
    """The watcher that kept its chain uplink (linked to every node over the mesh)."""
    caption: str
    """How the island was made (namespaces or loopback)."""
    blind: frozenset[str] = frozenset()
    """Nodes whose uplink was cut during the blackout."""
    attacker: str | None = None
    """The node that cheats (blind or not: its uplink is drawn as it was)."""
    cheated_channel: tuple[str, str] | None = None
    channel_labels: dict[tuple[str, str], str] = field(default_factory=dict)
    paths: list[Path] = field(default_factory=list)
    carried: list[Carried] = field(default_factory=list)
    """What the watcher carried to the chain for blind nodes, in order."""
    steps: list[Step] = field(default_factory=list)
    title: str = "SmartMesh island demo"


def _x(picture: Picture, name: str) -> float:
    if name == picture.gateway:  # between the middle nodes: its uplink crosses no other
        middle = (len(picture.line) - 1) / 2
        return _line_x(picture, middle + 0.5)
    return _line_x(picture, picture.line.index(name))


def _line_x(picture: Picture, index: float) -> float:
    gap = (WIDTH - 200) / max(1, len(picture.line) - 1)
    return 100 + index * gap


def _y(picture: Picture, name: str) -> float:
    return GATEWAY_Y if name == picture.gateway else LINE_Y


def _text(x: float, y: float, text: str, size: int = 13, **attrs: str) -> str:
    """Text with a white halo, so that it reads over the lines it crosses."""
    extra = "".join(f' {k.replace("_", "-")}="{escape(v)}"' for k, v in attrs.items())
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" font-family="{FONT}" '
        f'stroke="white" stroke-width="3" paint-order="stroke"{extra}>{escape(text)}</text>'
    )


def _line(
    x1: float, y1: float, x2: float, y2: float, colour: str, width: float, dash: str = ""
) -> str:
    dashed = f' stroke-dasharray="{dash}"' if dash else ""
    return (
        f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{colour}" '
        f'stroke-width="{width}"{dashed}/>'
    )


def _badge(x: float, y: float, number: int, colour: str) -> str:
    return (
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{STEP_R}" fill="{colour}" stroke="white" '
        f'stroke-width="1.5"/>'
        f'<text x="{x:.1f}" y="{y + 4.5:.1f}" font-size="12" font-family="{FONT}" '
        f'text-anchor="middle" fill="white" font-weight="bold">{number}</text>'
    )


def _anchor(picture: Picture, where: str, slot: int) -> tuple[float, float]:
    """The centre of the ``slot``-th badge at ``where``."""
    shift = slot * (2 * STEP_R + 3)
    if where == "chain":
        return WIDTH / 2 + 125 + shift, CHAIN_Y
    if where == "uplinks":
        return 40 + shift, BUS_Y
    if where in ("path1", "path2"):
        return 40 + shift, LINE_Y - (PATH1 if where == "path1" else PATH2)
    if ">" in where:  # on the mesh link, near the watcher's end (clear of the paths)
        origin, target = where.split(">", 1)
        nx, ny = _x(picture, origin), _y(picture, origin)
        gx, gy = _x(picture, target), _y(picture, target)
        along = LINK_AT + slot * LINK_STEP
        return gx + (nx - gx) * along, gy + (ny - gy) * along
    if "-" in where:
        left, right = where.split("-", 1)
        return (_x(picture, left) + _x(picture, right)) / 2 - 20 + shift, LINE_Y
    return _x(picture, where) + NODE_R + 12 + shift, _y(picture, where) - NODE_R + 4


def _path(picture: Picture, path: Path, index: int) -> str:
    """Payment ``index`` (0, 1) as an arrow above the line, relaying hops marked."""
    tone = TONES["path1" if index == 0 else "path2"]
    y = LINE_Y - (PATH1 if index == 0 else PATH2)
    xs = [_x(picture, hop) for hop in path.hops]
    # Up from the payer, along the line, down into the payee (offset from the uplinks).
    # The first payment's ends inside the line's span, the second's outside: they never
    # share a segment.
    nudge = (10 if xs[-1] > xs[0] else -10) * (1 if index == 0 else -1)
    first, last = xs[0] + nudge, xs[-1] - nudge
    top = LINE_Y - NODE_R + 2
    parts = [
        f'<path d="M {first:.1f} {top} L {first:.1f} {y} L {last:.1f} {y} L {last:.1f} '
        f'{top - 6}" stroke="{tone}" stroke-width="4" fill="none" stroke-linejoin="round" '
        f'marker-end="url(#arrow{index})"/>',
    ]
    for hop in path.hops[1:-1]:  # the relaying hops: each took a fee
        parts.append(f'<circle cx="{_x(picture, hop):.1f}" cy="{y}" r="6" fill="{tone}"/>')
    label_x = (_line_x(picture, 1) + _line_x(picture, 2)) / 2
    parts.append(
        _text(label_x, y - 8, path.label, 13, text_anchor="middle", fill=tone, font_weight="bold")
    )
    return "\n".join(parts)


def _carried(picture: Picture) -> str:
    """``carried: close (C) · co-op settle (A, D, E)``: by label, origins in line order."""
    groups: dict[str, list[str]] = {}
    for item in picture.carried:
        groups.setdefault(item.label, []).append(item.origin)
    order = {name: index for index, name in enumerate(picture.line)}
    parts = [
        f"{label} ({', '.join(sorted(origins, key=lambda n: order.get(n, len(order))))})"
        for label, origins in groups.items()
    ]
    return "carried: " + " · ".join(parts)


def render(picture: Picture) -> str:
    """The SVG document (UTF-8 text) of ``picture``."""
    timeline = [
        (step, textwrap.wrap(f"{step.at:6.1f} s   {step.text}", WRAP, subsequent_indent="  "))
        for step in picture.steps
    ]
    lines = sum(len(wrapped) for _, wrapped in timeline)
    legend_y = LINE_Y + 100
    height = legend_y + 60 + 18 * lines + 20
    out: list[str] = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}">',
        "<defs>",
    ]
    for index, tone in enumerate(("path1", "path2")):
        out.append(
            f'<marker id="arrow{index}" viewBox="0 0 10 10" refX="7" refY="5" '
            f'markerWidth="4" markerHeight="4" orient="auto-start-reverse">'
            f'<path d="M 0 0 L 10 5 L 0 10 z" fill="{TONES[tone]}"/></marker>'
        )
    out += ["</defs>", f'<rect width="{WIDTH}" height="{height}" fill="white"/>']
    out.append(_text(20, 26, picture.title, 17, font_weight="bold"))
    out.append(_text(20, 44, picture.caption, 11, fill="#555555"))

    # The chain; its "bus" stands for whatever carries the nodes' uplinks to it.
    out.append(
        f'<rect x="{WIDTH / 2 - 100}" y="{CHAIN_Y - 20}" width="200" height="40" rx="8" '
        f'fill="#eef3fb" stroke="{TONES["chain"]}" stroke-width="2"/>'
    )
    out.append(
        _text(WIDTH / 2, CHAIN_Y + 5, "chain (anvil)", 15, text_anchor="middle", font_weight="bold")
    )
    names = (*picture.line, picture.gateway)
    xs = [_x(picture, name) for name in names]
    out.append(_line(min(xs), BUS_Y, max(xs), BUS_Y, TONES["chain"], 2))
    out.append(_line(WIDTH / 2, CHAIN_Y + 20, WIDTH / 2, BUS_Y, TONES["chain"], 2))
    for name in names:
        x, y = _x(picture, name), _y(picture, name)
        if name in picture.blind:
            out.append(_line(x, y - NODE_R, x, BUS_Y, TONES["blind"], 1.5, "3 5"))
            out.append(
                _text(
                    x,
                    (BUS_Y + y) / 2 - 30,
                    "✕",
                    18,
                    text_anchor="middle",
                    fill=TONES["cheat"],
                    font_weight="bold",
                )
            )
        else:
            out.append(_line(x, y - NODE_R, x, BUS_Y, TONES["sees"], 3))

    # The watcher's mesh links (it relays for everyone; it holds no channel); those that
    # carried a node's submissions to the chain in the gateway's colour.
    gx = _x(picture, picture.gateway)
    carriers = {c.origin for c in picture.carried}
    for name in picture.line:
        if name in carriers:
            out.append(
                _line(gx, GATEWAY_Y, _x(picture, name), LINE_Y, TONES["gateway"], 3.5, "9 5")
            )
        else:
            out.append(_line(gx, GATEWAY_Y, _x(picture, name), LINE_Y, TONES["mesh"], 1.2, "2 4"))

    # Channels along the line, with their balances after the blind payments.
    for left, right in zip(picture.line, picture.line[1:], strict=False):
        x1, x2 = _x(picture, left) + NODE_R, _x(picture, right) - NODE_R
        cheated = picture.cheated_channel in ((left, right), (right, left))
        tone = TONES["cheat" if cheated else "channel"]
        out.append(_line(x1, LINE_Y, x2, LINE_Y, tone, 6))
        label = picture.channel_labels.get((left, right))
        if label:
            out.append(
                _text((x1 + x2) / 2, LINE_Y + 24, label, 11, text_anchor="middle", fill=tone)
            )

    for index, path in enumerate(picture.paths[:2]):
        out.append(_path(picture, path, index))

    # Nodes, and what each was during the blackout.
    for name in names:
        x, y = _x(picture, name), _y(picture, name)
        if name == picture.gateway:
            fill, caption = TONES["sees"], "watcher + gateway, sees the chain"
        elif name == picture.attacker:
            fill, caption = TONES["cheat"], "cheats"
            if name in picture.blind:
                caption = "blind, cheats"
            if name in carriers:
                caption += f" (via {picture.gateway})"
        elif name in picture.blind:
            fill, caption = TONES["blind"], "blind"
        else:
            fill, caption = TONES["sees"], ""
        out.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{NODE_R}" fill="{fill}" stroke="#222222" '
            f'stroke-width="1.5"/>'
        )
        out.append(
            f'<text x="{x:.1f}" y="{y + 7:.1f}" font-size="20" font-family="{FONT}" '
            f'text-anchor="middle" fill="white" font-weight="bold">{escape(name)}</text>'
        )
        if caption and name == picture.gateway:
            out.append(_text(x + NODE_R + 8, y + 18, caption, 11, fill=fill))
            if picture.carried:
                out.append(
                    _text(x + NODE_R + 8, y + 33, _carried(picture), 11, fill=TONES["gateway"])
                )
        elif caption:
            out.append(_text(x, y + NODE_R + 38, caption, 11, text_anchor="middle", fill=fill))

    # The numbered steps where they happened.
    used: dict[str, int] = {}
    for step in picture.steps:
        for where in filter(None, (w.strip() for w in step.where.split(","))):
            slot = used.get(where, 0)
            used[where] = slot + 1
            x, y = _anchor(picture, where, slot)
            out.append(_badge(x, y, step.number, TONES.get(step.tone, TONES["channel"])))

    # Legend, then the timeline.
    legend = [
        ("sees", "sees the chain"),
        ("blind", "blind: uplink cut"),
        ("cheat", "cheater"),
        ("watch", f"{picture.gateway} as delegate"),
        ("gateway", f"{picture.gateway} as gateway"),
        ("path1", "first payment"),
        ("path2", "second payment"),
        ("mesh", "mesh link"),
    ]
    x = 20.0
    for tone, text in legend:
        out.append(
            f'<rect x="{x:.1f}" y="{legend_y - 11}" width="13" height="13" fill="{TONES[tone]}"/>'
        )
        out.append(_text(x + 18, legend_y, text, 12))
        x += 30 + 6.8 * len(text)
    y = legend_y + 34.0
    out.append(_text(20, y, "timeline (seconds since the start)", 14, font_weight="bold"))
    for step, wrapped in timeline:
        y += 18
        out.append(_badge(30, y - 4, step.number, TONES.get(step.tone, TONES["channel"])))
        for index, text in enumerate(wrapped):
            if index:
                y += 18
            out.append(
                f'<text x="48" y="{y:.1f}" font-size="12" font-family="{FONT}" '
                f'xml:space="preserve">{escape(text)}</text>'
            )
    out.append("</svg>")
    return "\n".join(out) + "\n"
