"""The web page's pure parts: the DAG drawing and the session cookie."""

from __future__ import annotations

import hashlib
import hmac
import re
import xml.etree.ElementTree as ET

from redis import Redis

from ifcflow.api import dag, session

DIAMOND = {"top": ("ifcpatch", "succeeded", []), "left": ("ifctester", "running", ["top"]),
           "right": ("ifcpatch", "failed", ["top"]), "bottom": ("ifcpatch", "skipped", ["left", "right"])}
SVG = "{http://www.w3.org/2000/svg}"


def test_layers_follow_the_longest_path_and_keep_plan_order() -> None:
    assert dag.layers({k: v[2] for k, v in DIAMOND.items()}) == [["top"], ["left", "right"], ["bottom"]]
    # a step needing a root and a deep step sits after the deep one
    assert dag.layers({"a": [], "b": ["a"], "c": ["b"], "d": ["a", "c"]}) == [["a"], ["b"], ["c"], ["d"]]
    # children are ordered under their parents (barycentre), not by name
    assert dag.layers({"p2": [], "p1": [], "x": ["p1"], "y": ["p2"]}) == [["p2", "p1"], ["y", "x"]]


def test_svg_has_a_box_per_step_coloured_by_state_and_an_arrow_per_edge() -> None:
    tree = ET.fromstring(dag.svg(DIAMOND))
    nodes = {g.get("data-step"): g.get("class") for g in tree.iter(f"{SVG}g")}
    assert nodes == {"top": "node state-succeeded", "left": "node state-running", "right": "node state-failed",
                     "bottom": "node state-skipped"}
    edges = {(p.get("data-from"), p.get("data-to")) for p in tree.iter(f"{SVG}path") if p.get("class") == "edge"}
    assert edges == {("top", "left"), ("top", "right"), ("left", "bottom"), ("right", "bottom")}
    boxes = {b.step: b for b in dag.layout(DIAMOND)[0]}
    assert boxes["top"].x < boxes["left"].x == boxes["right"].x < boxes["bottom"].x
    assert boxes["left"].y != boxes["right"].y
    assert boxes["left"].y == boxes["top"].y  # level with its parent
    assert boxes["bottom"].y == (boxes["left"].y + boxes["right"].y) // 2  # between its parents


def test_a_chain_draws_straight_beside_an_independent_step() -> None:
    boxes = {b.step: b for b in dag.layout({"a": ("x", "pending", []), "solo": ("x", "pending", []),
                                             "b": ("x", "pending", ["a"]), "c": ("x", "pending", ["b"])})[0]}
    assert boxes["a"].y == boxes["b"].y == boxes["c"].y < boxes["solo"].y


def test_an_after_edge_is_dashed_and_places_the_step_right_of_the_one_it_follows() -> None:
    steps = {"glb": ("ifcconvert", "running", []), "clash": ("ifcclash", "pending", []),
             "csv": ("ifccsv", "running", [])}
    tree = ET.fromstring(dag.svg(steps, {"clash": ["glb"]}))
    after = [(p.get("data-from"), p.get("data-to")) for p in tree.iter(f"{SVG}path") if p.get("class") == "edge after"]
    assert after == [("glb", "clash")]
    assert "starts after glb" in "".join(tree.itertext())
    boxes = {b.step: b for b in dag.layout(steps, {"clash": ["glb"]})[0]}
    assert boxes["glb"].x == boxes["csv"].x < boxes["clash"].x and boxes["clash"].y == boxes["glb"].y


def test_svg_escapes_step_names_and_shortens_long_ones() -> None:
    text = dag.svg({"a<b>&c": ("ifcpatch", "pending", []), "x" * 40: ("ifcconvert", "queued", ["a<b>&c"])})
    ET.fromstring(text)  # well-formed despite the markup characters
    assert "a&lt;b&gt;&amp;c" in text and "x" * 20 + "…" in text
    assert re.search(r'width="(\d+)"', text)


def test_session_cookie_is_valid_for_its_key_only_and_expires() -> None:
    secret = b"s" * 32
    cookie = session.issue("key-one", secret, now=1000.0, lifetime=60)
    assert session.valid(cookie, ("other", "key-one"), secret, now=1030.0)
    assert not session.valid(cookie, ("other",), secret, now=1030.0)
    assert not session.valid(cookie, ("key-one",), secret, now=1061.0)
    assert not session.valid(cookie, (), secret, now=1030.0)
    stamp, signature = cookie.split(".")
    assert not session.valid(f"{int(stamp) + 10_000}.{signature}", ("key-one",), secret, now=1030.0)  # life forged
    for junk in ("", "abc", "123", ".", "x.y", None):
        assert not session.valid(junk, ("key-one",), secret, now=1030.0)


def test_a_session_cookie_is_keyed_with_the_server_secret_not_the_api_key(conn: Redis) -> None:
    """A stolen cookie must not let anyone test guesses of the API key offline: recomputing its signature with the
    right key but without the server's secret fails. Every API process on the same Redis shares the secret."""
    secret = session.shared_secret(conn)
    assert len(secret) == 32 and session.shared_secret(conn) == secret  # made once (SET NX), then shared
    cookie = session.issue("key-one", secret, now=1000.0)
    stamp, signature = cookie.split(".")
    for guess in ("key-one", "other"):  # the old scheme: HMAC keyed with the API key itself
        old = hmac.new(guess.encode(), f"ifcflow-ui-session:{stamp}".encode(), hashlib.sha256).hexdigest()
        assert old != signature
    assert not session.valid(cookie, ("key-one",), b"x" * 32, now=1030.0)  # another deployment's secret
    conn.delete(session.SECRET_KEY)
    assert session.shared_secret(conn) != secret  # deleting the secret ends every session


def test_each_input_accepts_the_endings_of_the_options_using_it() -> None:
    import yaml

    from ifcflow.api.uiforms import accepted

    from .conftest import ROOT

    doc = yaml.safe_load((ROOT / "pipelines" / "coordination.yaml").read_text())
    found = accepted(doc, {name: str(v) for name, v in doc["inputs"].items()})
    assert found == {"arch": (".ifc",), "mep": (".ifc",), "rules": (".ids", ".xml")}  # clash_sets[].a[].file too
    unused = accepted({"steps": {}}, {"table": "rows.csv", "free": ""})
    assert unused == {"table": (".csv",), "free": ()}
