"""Split what a MIDI input hands over in one piece back into the messages it holds.

Sans-I/O, used by ports.py on the rare path (a message that starts with 0xF0).

Why: rtmidi's inputs join messages after a SysEx that has no end byte. Its JACK input
keeps appending every later event to the open SysEx until an event ends in 0xF7, and
delivers nothing meanwhile (so key-ups, panic and All Notes Off vanish); its ALSA input
appends the next message to it. MIDI 1.0 says any status byte other than a real-time one
ends a SysEx, so the bytes after it are the messages that were swallowed: parsed here,
they can still be played. ports.py clears an open SysEx on JACK by sending an empty SysEx
(`SYSEX_CLEAR`) into its own input every few milliseconds; it arrives here as the end of
the joined bytes, or on its own, and is no message of the player's.
"""

from __future__ import annotations

from collections.abc import Sequence

SYSEX = 0xF0
SYSEX_END = 0xF7
SYSEX_CLEAR = (SYSEX, SYSEX_END)    # the empty SysEx that closes an open one
# Bytes of a SysEx passed on (start and end bytes included). Longer ones are dropped: rtmidi's
# JACK output silently loses a message that does not fit its 16 KB ring buffer.
SYSEX_MAX_BYTES = 8192

# Bytes of a message by status: channel messages by the high nibble, system ones by status;
# a status missing here (0xF4, 0xF5, 0xF9, 0xFD) is one byte (undefined, the engine drops it).
_CHANNEL_LENGTH = {0x80: 3, 0x90: 3, 0xA0: 3, 0xB0: 3, 0xC0: 2, 0xD0: 2, 0xE0: 3}
_SYSTEM_LENGTH = {0xF1: 2, 0xF2: 3, 0xF3: 2}
_REALTIME = 0xF8


def split_messages(data: Sequence[int]) -> list[list[int]]:
    """The messages in `data`, in order. A SysEx runs to its 0xF7 or up to the next status
    byte that is not real-time (then it has no 0xF7 at its end: unterminated); real-time
    bytes inside it are messages of their own. A message cut short by the next status byte
    is returned as it is (the engine drops it); data bytes without a status are one piece.
    Empty SysEx (`SYSEX_CLEAR`) are left out."""
    out: list[list[int]] = []
    n = len(data)
    i = 0
    while i < n:
        status = data[i]
        if status == SYSEX:
            j = i + 1
            realtime: list[list[int]] = []
            body = [SYSEX]
            while j < n:
                byte = data[j]
                if byte < 0x80:
                    body.append(byte)
                elif byte >= _REALTIME:
                    realtime.append([byte])
                elif byte == SYSEX_END:
                    body.append(byte)
                    j += 1
                    break
                else:
                    break                   # a status byte: the SysEx ended without 0xF7
                j += 1
            if len(body) != 2 or body[1] != SYSEX_END:
                out.append(body)
            out.extend(realtime)
            i = j
            continue
        if status >= _REALTIME:
            out.append([status])
            i += 1
            continue
        if status < 0x80:                   # data without a status
            j = i + 1
            while j < n and data[j] < 0x80:
                j += 1
            out.append(list(data[i:j]))
            i = j
            continue
        length = _CHANNEL_LENGTH.get(status & 0xF0) if status < SYSEX else \
            _SYSTEM_LENGTH.get(status, 1)
        j = i + 1
        while j < n and j < i + length and data[j] < 0x80:
            j += 1
        out.append(list(data[i:j]))
        i = j
    return out


def sysex_passes(message: Sequence[int], allowed: bool) -> bool:
    """Whether a SysEx goes on to the engine (and out): SysEx passing is turned on, it ends
    in 0xF7 and fits SYSEX_MAX_BYTES."""
    return allowed and 2 <= len(message) <= SYSEX_MAX_BYTES and message[-1] == SYSEX_END
