"""midistream.split_messages: what rtmidi joined after an open SysEx comes apart again."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from melodyflowd.live.midistream import (
    SYSEX_CLEAR,
    SYSEX_MAX_BYTES,
    split_messages,
    sysex_passes,
)

KEY_UP = [0x80, 60, 0]


def test_the_messages_after_an_unterminated_sysex_come_apart() -> None:
    joined = [0xF0, 0x7D, 0x01, 0x80, 60, 0, 0xB0, 24, 127, 0xB0, 123, 0, 0xF8, 0xFE,
              0x90, 62, 100, *SYSEX_CLEAR]
    assert split_messages(joined) == [[0xF0, 0x7D, 0x01], [0x80, 60, 0], [0xB0, 24, 127],
                                      [0xB0, 123, 0], [0xF8], [0xFE], [0x90, 62, 100]]


def test_a_whole_sysex_is_one_message_and_the_empty_one_is_left_out() -> None:
    assert split_messages([0xF0, 1, 2, 0xF7]) == [[0xF0, 1, 2, 0xF7]]
    assert split_messages(list(SYSEX_CLEAR)) == []
    # Real-time bytes inside a SysEx are messages of their own, after it.
    assert split_messages([0xF0, 1, 0xF8, 2, 0xF7]) == [[0xF0, 1, 2, 0xF7], [0xF8]]


def test_cut_messages_and_stray_data_stay_pieces_for_the_engine_to_drop() -> None:
    assert split_messages([0xF0, 0x90, 0x40, 0xF7]) == [[0xF0], [0x90, 0x40], [0xF7]]
    assert split_messages([0xF0, 5, 0x3C, 0x40]) == [[0xF0, 5, 0x3C, 0x40]]
    assert split_messages([0xF0, 5, 0xC0, 3, 4, 0xF2, 1, 2]) == [[0xF0, 5], [0xC0, 3], [4],
                                                                  [0xF2, 1, 2]]


def test_sysex_passes_only_when_allowed_whole_and_not_too_long() -> None:
    whole = [0xF0, 1, 0xF7]
    assert sysex_passes(whole, True) and not sysex_passes(whole, False)
    assert not sysex_passes([0xF0, 1], True)
    assert sysex_passes([0xF0] + [1] * (SYSEX_MAX_BYTES - 2) + [0xF7], True)
    assert not sysex_passes([0xF0] + [1] * (SYSEX_MAX_BYTES - 1) + [0xF7], True)


channel_message = st.builds(lambda kind, ch, a, b: [kind | ch, a, b],
                            st.sampled_from([0x80, 0x90, 0xA0, 0xB0, 0xE0]),
                            st.integers(0, 15), st.integers(0, 127), st.integers(0, 127))
garbage = st.one_of(
    st.lists(st.integers(0, 255), min_size=1, max_size=12),            # any bytes at all
    st.builds(lambda body: [0xF0, *body], st.lists(st.integers(0, 127), max_size=8)),
    st.sampled_from([[0xF7], [0xF8], [0xFE], [0x90, 60], [0xF0], [0x3C, 0x40, 0x7F]]),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.booleans(), channel_message, garbage), max_size=30))
def test_no_bytes_before_a_whole_channel_message_swallow_it(steps) -> None:
    """What rtmidi joins is a run of events; whatever came before, each whole channel
    message that was one event comes out as a message of its own, in order."""
    joined: list[int] = [0xF0, 0x7D, 0x01]           # an open SysEx first, always
    wanted: list[list[int]] = []
    for garbage_first, message, junk in steps:
        if garbage_first:
            joined += junk
        joined += message
        wanted.append(message)
    got = iter(split_messages(joined + list(SYSEX_CLEAR)))
    assert all(any(piece == message for piece in got) for message in wanted)
