"""Every malformed CSV raises SchemaError naming the file, line, column and value — never a crash."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hrnn import Interactions, SchemaError

HEADER = "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE,EVENT_VALUE\n"

CASES = [
    # (id, content, expected fragments of the message)
    ("empty file", b"", ["line 1", "empty file"]),
    ("header only", HEADER.encode(), ["line 2", "header only"]),
    ("missing column", b"USER_ID,ITEM_ID\nu,a\n", ["line 1", "TIMESTAMP", "missing required column"]),
    ("duplicate column", b"USER_ID,user_id,ITEM_ID,TIMESTAMP\nu,u,a,1\n", ["USER_ID", "found it 2 times"]),
    (
        "too many fields",
        (HEADER + "u,a,1,click,1\nu,a,1,click,1,9\n").encode(),
        ["line 3", "expected 5 fields"],
    ),
    ("too few fields", (HEADER + "u,a,1\n").encode(), ["line 2", "found 3"]),
    ("non-integer timestamp", (HEADER + "u,a,1.5,click,\n").encode(), ["line 2", "TIMESTAMP", '"1.5"']),
    ("text timestamp", (HEADER + "u,a,yesterday,click,\n").encode(), ["TIMESTAMP", "yesterday"]),
    ("negative timestamp", (HEADER + "u,a,-3,click,\n").encode(), ["TIMESTAMP", '"-3"', "non-negative"]),
    ("empty timestamp", (HEADER + "u,a,,click,\n").encode(), ["TIMESTAMP", "line 2"]),
    (
        "millisecond timestamps",
        (HEADER + "u,a,1700000000000,click,\n").encode(),
        ["line 2", "TIMESTAMP", '"1700000000000"', "as milliseconds it is 2023-11-14", 'timestamp_unit="ms"'],
    ),
    (
        "microsecond timestamps",
        (HEADER + "u,a,1,click,\nu,b,1700000000000000,click,\n").encode(),
        ["line 3", "TIMESTAMP", "as microseconds", 'timestamp_unit="us"', "--timestamp-unit us"],
    ),
    (
        "timestamp past 2199",
        (HEADER + "u,a,7258118400,click,\n").encode(),
        ["TIMESTAMP", "out of range", "seconds from 0 to 7258118399 (1970-01-01 to 2199-12-31 UTC)"],
    ),
    (
        "i64::MAX timestamp",
        (HEADER + "u,a,9223372036854775807,click,\n").encode(),
        ["TIMESTAMP", '"9223372036854775807"', "out of range", "from 0 to 7258118399"],
    ),
    (
        "timestamp past i64",
        (HEADER + "u,a,99999999999999999999,click,\n").encode(),
        ["TIMESTAMP", "non-negative integer", "from 0 to 7258118399"],
    ),
    ("empty user", (HEADER + ",a,1,click,\n").encode(), ["USER_ID", "non-empty"]),
    ("empty item", (HEADER + "u,,1,click,\n").encode(), ["ITEM_ID", "non-empty"]),
    ("empty event type", (HEADER + "u,a,1,,\n").encode(), ["EVENT_TYPE", "non-empty"]),
    ("long id", (HEADER + "u" * 257 + ",a,1,click,\n").encode(), ["USER_ID", "at most 256"]),
    ("non-numeric value", (HEADER + "u,a,1,click,lots\n").encode(), ["EVENT_VALUE", "lots"]),
    ("infinite value", (HEADER + "u,a,1,click,inf\n").encode(), ["EVENT_VALUE", "finite"]),
    ("invalid utf-8", HEADER.encode() + b"u\xc3\x28,a,1,click,\n", ["USER_ID", "UTF-8", "line 2"]),
    ("nul byte", HEADER.encode() + b"u\x00,a,1,click,\n", ["USER_ID", "NUL"]),
    ("quote left open at end", (HEADER + 'u,a,1,click,\n"v,b,2,click,\n').encode(), ["line 3"]),
    ("quote left open inside", (HEADER + 'u,"a,1,click,\nv,b,2,click,\nw,c,3,click,\n').encode(), ["line 2"]),
    (
        "CR-only line endings",
        b"USER_ID,ITEM_ID,TIMESTAMP\ru,a,1\ru,b,2\r",
        ["line 1", "CR-only line endings", "not supported", "\\n or \\r\\n"],
    ),
    (
        "CRLF, error after a quoted field",
        b'USER_ID,ITEM_ID,TIMESTAMP\r\n"u",a,1\r\nu,"b",2\r\n\r\nu,c,x\r\n',
        ["line 5", "TIMESTAMP", '"x"'],
    ),
]


@pytest.mark.parametrize(("content", "fragments"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_csv_raises_schema_error(write_csv, content, fragments):
    path = write_csv(content)
    with pytest.raises(SchemaError) as info:
        Interactions.from_csv(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_256_character_ids_and_quoted_fields_are_fine(write_csv):
    text = HEADER + "é" * 256 + ',"a,b",1,click,\n' + 'u,"x ""y""",2,click, 3.5 \n'
    data = Interactions.from_csv(write_csv(text))
    assert data.item_ids == ["a,b", 'x "y"'] and len(data.user_ids[0]) == 256
    assert data.columns()["event_value"][1] == 3.5


def test_blank_trailing_lines_and_crlf_are_accepted(write_csv):
    data = Interactions.from_csv(write_csv("USER_ID,ITEM_ID,TIMESTAMP\r\nu,a,1\r\nu,b,2\r\n\r\n"))
    assert len(data) == 2 and data.item_ids == ["a", "b"]


@pytest.mark.parametrize(
    ("unit", "scale"), [("s", 1), ("ms", 1_000), ("us", 1_000_000), ("ns", 1_000_000_000)]
)
def test_timestamp_unit_converts_to_whole_seconds(write_csv, unit, scale):
    stamps = [1_700_000_000 * scale, 1_700_000_060 * scale + scale - 1, 7_258_118_399 * scale]
    text = "USER_ID,ITEM_ID,TIMESTAMP\n" + "".join(f"u,a,{t}\n" for t in stamps)
    data = Interactions.from_csv(write_csv(text), timestamp_unit=unit)
    assert data.columns()["timestamp"].tolist() == [1_700_000_000, 1_700_000_060, 7_258_118_399]


def test_timestamp_unit_must_be_known(write_csv):
    path = write_csv("USER_ID,ITEM_ID,TIMESTAMP\nu,a,1\n")
    expected = 'timestamp_unit: expected one of "s", "ms", "us", "ns", found "sec"'
    with pytest.raises(ValueError, match=expected):
        Interactions.from_csv(path, timestamp_unit="sec")  # type: ignore[arg-type]


def test_large_file_is_streamed(write_csv, tmp_path):
    # 200k rows: enough to cross many read buffers; values checked at both ends.
    rows = "".join(f"u{i % 997},i{i % 503},{i}\n" for i in range(200_000))
    data = Interactions.from_csv(write_csv("USER_ID,ITEM_ID,TIMESTAMP\n" + rows))
    assert len(data) == 200_000 and data.num_users == 997 and data.num_items == 503
    assert data.columns()["timestamp"][-1] == 199_999


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads VmHWM from /proc")
def test_one_huge_line_is_rejected_with_bounded_memory(tmp_path):
    # A 64 MB line (one quoted ITEM_ID): the reader stops at the 1 MiB record limit instead of
    # buffering and copying the whole line (which took ~10x the line). The child reports its own
    # peak RSS as VmHWM, which starts afresh at exec; getrusage's ru_maxrss does not (Linux keeps
    # the parent's peak across a vfork + exec, so it would carry pytest's own).
    line_bytes = 64 << 20
    path = tmp_path / "huge.csv"
    with path.open("wb") as f:
        f.write(b'USER_ID,ITEM_ID,TIMESTAMP\nu,a,1\nu,"')
        f.write(b"x" * line_bytes)
        f.write(b'",2\nu,b,3\n')
    script = textwrap.dedent(
        """
        import sys
        from hrnn import Interactions, SchemaError
        try:
            Interactions.from_csv(sys.argv[1])
        except SchemaError as error:
            print(error)
        with open("/proc/self/status") as status:
            print(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=600, check=True
    )
    message, peak_kib = result.stdout.strip().splitlines()
    assert int(peak_kib) * 1024 < 3 * line_bytes, f"peak RSS {int(peak_kib) // 1024} MiB"
    assert message.startswith(str(path)), message
    assert "line 3, column ITEM_ID" in message and "at most 1048576 bytes" in message, message
    assert '(found "\\"xxxx' in message, message


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=300), header=st.sampled_from([HEADER, "USER_ID,ITEM_ID,TIMESTAMP\n", ""]))
def test_arbitrary_bytes_never_crash(write_csv, body, header):
    path = write_csv(header.encode() + body)
    try:
        data = Interactions.from_csv(path)
    except SchemaError as error:
        assert str(error).startswith(str(path))
    else:
        assert len(data) >= 1 and data.num_users >= 1
