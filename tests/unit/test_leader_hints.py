"""Leader hints: the last known leader of each destination, where a newer term or incarnation always wins."""

from __future__ import annotations

from mom.service.leaders import LeaderHints


def test_a_hint_of_a_higher_term_replaces_one_of_a_lower_term_and_never_the_reverse() -> None:
    hints = LeaderHints()
    assert hints.note("q.orders@100", "n1", 3)
    assert hints.note("q.orders@100", "n2", 4)
    assert not hints.note("q.orders@100", "n1", 3), "late news of an older term"
    hint = hints.get("q.orders@100")
    assert hint is not None and (hint.leader, hint.term) == ("n2", 4)


def test_a_destination_declared_again_replaces_the_older_incarnation() -> None:
    hints = LeaderHints()
    hints.note("q.orders@100", "n1", 9)
    assert hints.note("q.orders@200", "n3", 1)
    assert hints.get("q.orders@100") is None, "a hint about the deleted incarnation is gone"
    assert not hints.note("q.orders@100", "n1", 10), "late news of the deleted incarnation"
    hint = hints.get("q.orders@200")
    assert hint is not None and hint.leader == "n3"
    assert len(hints) == 1


def test_a_deleted_destination_is_forgotten_and_others_are_not() -> None:
    hints = LeaderHints()
    hints.note("q.orders@100", "n1", 1)
    hints.note("t.orders@100", "n2", 1)
    hints.forget("q.orders")
    assert hints.get("q.orders@100") is None
    assert hints.get("t.orders@100") is not None
