"""The island demo's picture (scripts/demo_picture.py): a well-formed SVG that shows what
the demo saw: every node, who was blind, the payment paths, what the watcher carried for
blind nodes and each numbered step."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from scripts.demo_picture import TONES, Carried, Path, Picture, Step, render

SVG = "{http://www.w3.org/2000/svg}"


def _picture(steps: list[Step]) -> Picture:
    return Picture(
        line=("A", "B", "C", "D", "E"),
        gateway="G",
        caption="loopback <test> & co",
        blind=frozenset("ABCDE"),
        attacker="C",
        cheated_channel=("B", "C"),
        channel_labels={("A", "B"): "A 93.94 · B 106.06"},
        paths=[Path(tuple("ABCDE"), "A → E 10 TKN"), Path(tuple("EDCBA"), "E → A 4 TKN")],
        carried=[Carried("C", "close"), Carried("E", "co-op settle"), Carried("A", "co-op settle")],
        steps=steps,
    )


def _texts(root: ET.Element) -> list[str]:
    return ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]


def test_render__demo_picture__well_formed_with_nodes_paths_and_steps() -> None:
    steps = [
        Step(1, 1.0, "channels open", "chain"),
        Step(2, 2.0, "chain cut", "uplinks", "blind"),
        Step(3, 3.0, "A -> E <blind> & paid", "path1", "path1"),
        Step(4, 4.5, "closes settled", "A-B,C-D,D-E"),
        Step(5, 5.0, "listed only", ""),
        Step(6, 6.0, "G updates", "G", "watch"),
        Step(7, 7.0, "C hands its close to G", "C>G", "gateway"),
    ]
    root = ET.fromstring(render(_picture(steps)))
    assert root.tag == f"{SVG}svg"
    texts = _texts(root)
    for name in "ABCDEG":
        assert name in texts
    assert "A → E 10 TKN" in texts and "E → A 4 TKN" in texts
    assert "loopback <test> & co" in texts  # escaped on the way in, intact on the way out
    assert texts.count("✕") == 5  # every blind uplink crossed out, the attacker's too
    # Each step listed once, and drawn once per place it names (none for "").
    badges = [t for t in texts if t.isdigit()]
    expected = [1, 2, 3, 4, 4, 4, 6, 7, 1, 2, 3, 4, 5, 6, 7]
    assert sorted(int(b) for b in badges) == sorted(expected)
    assert any("A -> E <blind> & paid" in t for t in texts)
    # What the watcher carried: the caption (by label, origins in line order), and a mesh
    # link in the gateway's colour for each node it carried for.
    assert "carried: close (C) · co-op settle (A, E)" in texts
    assert "blind, cheats (via G)" in texts
    carried_links = [
        line for line in root.iter(f"{SVG}line") if line.attrib["stroke"] == TONES["gateway"]
    ]
    assert len(carried_links) == 3


def test_render__long_step_text__wrapped_and_the_document_grows() -> None:
    short = render(_picture([Step(1, 1.0, "short", "chain")]))
    long = render(_picture([Step(1, 1.0, "word " * 80, "chain")]))
    height = [int(ET.fromstring(svg).attrib["height"]) for svg in (short, long)]
    assert height[1] > height[0]
    assert all(len(t) <= 125 for t in _texts(ET.fromstring(long)))
