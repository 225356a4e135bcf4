"""Loading interactions: CSV, arrays, pandas; maps, selection, minimum data, the drop report."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import hrnn
from hrnn import InsufficientDataError, Interactions, SchemaError
from logs import synthetic_log


def test_from_csv_reads_schema_case_insensitively_and_lists_extra_columns(write_csv):
    path = write_csv(
        "user_id,Item_Id,TIMESTAMP,event_type,EVENT_VALUE,COLOR\n"
        "u1,a,10,click,,red\nu2,b,5,buy,2.5,blue\nu1,b,7,click,1,green\nu1,a,7,click,1,green\n"
    )
    data = Interactions.from_csv(path)
    assert len(data) == 4
    assert (data.num_users, data.num_items) == (2, 2)
    assert data.user_ids == ["u1", "u2"] and data.item_ids == ["a", "b"]
    assert data.event_types == ["click", "buy"]
    assert data.ignored_columns == ["COLOR"]
    assert data.user_index() == {"u1": 0, "u2": 1}
    cols = data.columns()
    np.testing.assert_array_equal(cols["user"], [0, 1, 0, 0])
    np.testing.assert_array_equal(cols["timestamp"], [10, 5, 7, 7])
    assert np.isnan(cols["event_value"][0]) and cols["event_value"][1] == 2.5
    # Duplicates are kept: they are real repeat interactions.
    assert data.report().rows == 4 and data.report().drops == ()


def test_from_arrays_matches_from_csv(write_csv):
    log = synthetic_log(num_users=5, events_per_user=4)
    lines = ["USER_ID,ITEM_ID,TIMESTAMP"] + [
        f"{u},{i},{t}" for u, i, t in zip(log["user_id"], log["item_id"], log["timestamp"], strict=True)
    ]
    from_csv = Interactions.from_csv(write_csv("\n".join(lines) + "\n"))
    from_arrays = Interactions.from_arrays(log["user_id"], log["item_id"], log["timestamp"])
    assert from_csv.user_ids == from_arrays.user_ids and from_csv.item_ids == from_arrays.item_ids
    for name in ("user", "item", "timestamp"):
        np.testing.assert_array_equal(from_csv.columns()[name], from_arrays.columns()[name])


def test_from_arrays_accepts_integer_ids_and_optional_columns():
    data = Interactions.from_arrays([1, 2, 1], [10, 10, 11], [3, 2, 1], ["a", "b", "a"], [1.0, None, 2.0])
    assert data.user_ids == ["1", "2"] and data.item_ids == ["10", "11"]
    assert data.has_event_type and data.has_event_value
    assert np.isnan(data.columns()["event_value"][1])


def test_from_arrays_rejects_bad_values_naming_the_row():
    with pytest.raises(SchemaError, match=r"<arrays>: line 2, column USER_ID: expected a non-empty id"):
        Interactions.from_arrays(["u", ""], ["a", "b"], [1, 2])
    with pytest.raises(SchemaError, match=r"line 1, column TIMESTAMP: expected non-negative"):
        Interactions.from_arrays(["u"], ["a"], [-5])
    with pytest.raises(ValueError, match=r"item_id: expected 2 values"):
        Interactions.from_arrays(["u", "v"], ["a"], [1, 2])
    with pytest.raises(TypeError, match=r"timestamp: expected integer"):
        Interactions.from_arrays(["u"], ["a"], [1.5])
    with pytest.raises(TypeError, match=r"user_id: expected strings or integers"):
        Interactions.from_arrays([1.0], ["a"], [1])


def test_from_pandas_round_trip():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(
        {"user_id": ["u", "v", "u"], "ITEM_ID": ["a", "b", "c"], "Timestamp": [3, 1, 2], "x": [0, 0, 0]}
    )
    data = Interactions.from_pandas(frame)
    assert len(data) == 3 and data.num_users == 2
    back = data.to_pandas()
    assert list(back.columns) == ["USER_ID", "ITEM_ID", "TIMESTAMP"]
    assert back["ITEM_ID"].tolist() == ["a", "b", "c"]
    with pytest.raises(SchemaError, match="missing required column TIMESTAMP"):
        Interactions.from_pandas(frame.drop(columns=["Timestamp"]))


def test_select_by_event_type_and_threshold_reports_drops():
    data = Interactions.from_arrays(
        ["u", "u", "v", "v", "w"],
        ["a", "b", "a", "c", "d"],
        [1, 2, 3, 4, 5],
        ["click", "buy", "click", "click", "buy"],
        [1.0, 5.0, np.nan, 3.0, 0.5],
    )
    clicks = data.select(event_type="click")
    assert len(clicks) == 3 and clicks.num_users == 2 and clicks.item_ids == ["a", "c"]
    both = data.select(event_type="click", event_value_threshold=2.0)
    assert len(both) == 1
    report = both.report()
    assert [d.rule for d in report.drops] == ["event_type", "event_value_threshold"]
    assert [d.rows_dropped for d in report.drops] == [2, 2]  # the NaN row is dropped by the threshold
    assert report.rows_read == 5
    assert "event_value_threshold" in str(report) and report.to_dict()["drops"][0]["rows_dropped"] == 2
    assert len(data.select()) == 5
    with pytest.raises(ValueError, match="event_value_threshold"):
        Interactions.from_arrays(["u"], ["a"], [1]).select(event_value_threshold=1.0)
    with pytest.raises(ValueError, match="event_type"):
        Interactions.from_arrays(["u"], ["a"], [1]).select(event_type="click")


def test_check_minimum_says_what_was_found():
    log = synthetic_log(num_users=40, events_per_user=30)
    Interactions.from_arrays(log["user_id"], log["item_id"], log["timestamp"]).check_minimum()
    small = Interactions.from_arrays(log["user_id"][:900], log["item_id"][:900], log["timestamp"][:900])
    with pytest.raises(InsufficientDataError, match=r"found 900 interactions and 30 such users"):
        small.check_minimum()
    # 1000 rows but all from 24 users with >= 2 events.
    users = [f"u{i % 24}" for i in range(1000)]
    few = Interactions.from_arrays(users, ["a"] * 1000, list(range(1000)))
    with pytest.raises(InsufficientDataError, match="24 such users"):
        few.check_minimum()


def test_subset_keeps_masked_rows_and_reindexes():
    data = Interactions.from_arrays(["u", "v", "w"], ["a", "b", "c"], [1, 2, 3])
    sub = data.subset(np.array([True, False, True]), rule="test-split")
    assert sub.user_ids == ["u", "w"] and sub.report().drops[0].rule == "test-split"
    with pytest.raises(ValueError, match="expected 3 values"):
        data.subset(np.array([True]))


def test_exceptions_are_exported_and_typed():
    assert issubclass(SchemaError, hrnn.HrnnError) and issubclass(SchemaError, ValueError)
    from hrnn import exceptions

    assert exceptions.SchemaError is SchemaError
    assert set(exceptions.__all__) <= set(hrnn.__all__)


def test_missing_file_and_permission(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        Interactions.from_csv(tmp_path / "nope.csv")
    if sys.platform != "win32" and os.geteuid() != 0:  # root reads everything
        path = tmp_path / "locked.csv"
        path.write_text("USER_ID,ITEM_ID,TIMESTAMP\nu,a,1\n")
        path.chmod(0)
        with pytest.raises(PermissionError):
            Interactions.from_csv(path)


def test_import_hrnn_does_not_import_torch():
    import subprocess

    code = "import sys, hrnn; hrnn.Interactions; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_id_lists_are_read_once_and_handed_out_as_copies():
    data = Interactions.from_arrays(["u1", "u2", "u1"], ["a", "b", "c"], [1, 2, 3])
    users = data.user_ids
    users.append("changed")
    assert data.user_ids == ["u1", "u2"]
    assert data.item_ids == ["a", "b", "c"] and data.item_ids is not data.item_ids
    assert data.event_types == [""]
