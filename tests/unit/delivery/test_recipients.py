"""The pure loop search behind the alias check (delivery/recipients.find_loop)."""

from __future__ import annotations

from hardmail.delivery.recipients import find_loop


def _graph(*edges: tuple[str, str]) -> dict[str, list[tuple[str, str]]]:
    graph: dict[str, list[tuple[str, str]]] = {}
    for source, reached in edges:
        graph.setdefault(source, []).append((reached, reached))
        graph.setdefault(reached, [])
    return graph


def test_no_edges_no_loop() -> None:
    assert find_loop({}, "a") == ()
    assert find_loop({"a": []}, "a") == ()


def test_a_diamond_is_not_a_loop() -> None:
    assert find_loop(_graph(("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")), "a") == ()


def test_two_and_three_step_loops_are_found_from_their_start() -> None:
    assert find_loop(_graph(("a", "b"), ("b", "a")), "a") == (("a", "b", "b"), ("b", "a", "a"))
    loop = find_loop(_graph(("a", "x"), ("a", "b"), ("b", "c"), ("c", "a")), "a")
    assert [step[0] for step in loop] == ["a", "b", "c"] and loop[-1][2] == "a"


def test_a_step_to_itself_is_a_loop() -> None:
    assert find_loop({"team": [("team+x", "team")]}, "team") == (("team", "team+x", "team"),)


def test_a_loop_reachable_but_not_through_the_start_is_found() -> None:
    assert find_loop(_graph(("new", "b"), ("b", "c"), ("c", "b")), "new") == (("b", "c", "c"), ("c", "b", "b"))


def test_a_long_chain_is_walked_without_recursion() -> None:
    chain = _graph(*((f"n{i}", f"n{i + 1}") for i in range(20_000)))
    assert find_loop(chain, "n0") == ()
    chain["n20000"] = [("n0", "n0")]
    assert len(find_loop(chain, "n0")) == 20_001
