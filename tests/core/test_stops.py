"""StopSequenceMatcher: stop sequences matched on streamed text (api-spec §5.1, §5.5)."""

from __future__ import annotations

import pytest

from parley.core.stops import StopMatch, StopSequenceMatcher


def run(sequences: tuple[str, ...], chunks: list[str]) -> tuple[str, StopMatch | None]:
    """Feed chunks as a stream would; returns the emitted text and the match, if any."""
    matcher = StopSequenceMatcher(sequences)
    emitted = ""
    for chunk in chunks:
        fed = matcher.feed(chunk)
        if isinstance(fed, StopMatch):
            return emitted + fed.text, fed
        emitted += fed
    return emitted + matcher.flush(), None


def test_no_sequences_passes_text_through() -> None:
    matcher = StopSequenceMatcher(())
    assert matcher.feed("hello ") == "hello "
    assert matcher.feed("STOP") == "STOP"
    assert matcher.flush() == ""


def test_text_without_any_prefix_is_emitted_at_once() -> None:
    matcher = StopSequenceMatcher(("STOP",))
    assert matcher.feed("hello ") == "hello "
    assert matcher.feed("world") == "world"
    assert matcher.flush() == ""


def test_possible_prefix_is_held_back() -> None:
    matcher = StopSequenceMatcher(("STOP",))
    assert matcher.feed("abc ST") == "abc "
    assert matcher.feed("O") == ""
    # "STOX" cannot start "STOP", so all of it is released.
    assert matcher.feed("X and") == "STOX and"
    assert matcher.flush() == ""


def test_match_across_feeds() -> None:
    matcher = StopSequenceMatcher(("STOP",))
    assert matcher.feed("abc S") == "abc "
    assert matcher.feed("T") == ""
    fed = matcher.feed("OP tail")
    assert fed == StopMatch(text="", sequence="STOP")


def test_match_across_feeds_with_text_before_it() -> None:
    text, match = run(("beta gamma",), ["alpha ", "beta ", "gamma ", "delta"])
    assert match == StopMatch(text="", sequence="beta gamma")
    assert text == "alpha "


def test_match_inside_one_feed() -> None:
    matcher = StopSequenceMatcher(("END",))
    assert matcher.feed("one END two") == StopMatch(text="one ", sequence="END")


def test_match_at_the_very_start() -> None:
    assert StopSequenceMatcher(("x",)).feed("xyz") == StopMatch(text="", sequence="x")


def test_earliest_match_wins_over_list_order() -> None:
    matcher = StopSequenceMatcher(("world", "hello"))
    assert matcher.feed("say hello world") == StopMatch(text="say ", sequence="hello")


def test_earliest_match_wins_across_feeds() -> None:
    # "two" completes in the same feed as "one" but starts later.
    text, match = run(("two", "one"), ["zero o", "ne two"])
    assert match is not None
    assert match.sequence == "one"
    assert text == "zero "


def test_longest_possible_prefix_is_held() -> None:
    matcher = StopSequenceMatcher(("aab",))
    assert matcher.feed("xaa") == "x"
    assert matcher.feed("ab") == StopMatch(text="a", sequence="aab")


def test_prefix_of_any_sequence_is_held() -> None:
    matcher = StopSequenceMatcher(("abc", "bcd"))
    assert matcher.feed("xbc") == "x"
    assert matcher.feed("d") == StopMatch(text="", sequence="bcd")


def test_flush_releases_held_text() -> None:
    matcher = StopSequenceMatcher(("world",))
    assert matcher.feed("hello wor") == "hello "
    assert matcher.flush() == "wor"
    assert matcher.flush() == ""


def test_flush_empties_the_buffer() -> None:
    matcher = StopSequenceMatcher(("STOP",))
    assert matcher.feed("ST") == ""
    assert matcher.flush() == "ST"
    # The held "ST" is gone, so "OP" alone is no match.
    assert matcher.feed("OP") == "OP"


@pytest.mark.parametrize(
    "chunks",
    [
        ["The answer is 42. ", "Done."],
        ["The answer", " is", " 4", "2. Do", "ne."],
        list("The answer is 42. Done."),
    ],
)
def test_chunking_does_not_change_the_result(chunks: list[str]) -> None:
    text, match = run((". Do", "swer is 5"), chunks)
    assert match is not None
    assert match.sequence == ". Do"
    assert text == "The answer is 42"


@pytest.mark.parametrize(
    "chunks", [["no stop here"], list("no stop here"), ["no st", "op he", "re"]]
)
def test_unmatched_text_comes_out_whole(chunks: list[str]) -> None:
    text, match = run(("stop!", "here!"), chunks)
    assert match is None
    assert text == "no stop here"


def test_multi_line_sequence() -> None:
    text, match = run(("\n\nHuman:",), ["Sure.\n", "\nHum", "an: next"])
    assert match == StopMatch(text="", sequence="\n\nHuman:")
    assert text == "Sure."
