"""The parsing machinery shared by every loader: datetime formats chosen from a file's first rows, with a
full re-read when a later row needs another format; parse failures counted with file and row."""

from __future__ import annotations

from pathlib import Path

from tabxfer.data.sources import KaggleNYCTaxi

HEADER = (
    "id,vendor_id,pickup_datetime,passenger_count,pickup_longitude,pickup_latitude,"
    "dropoff_longitude,dropoff_latitude,store_and_fwd_flag,trip_duration"
)


def write(path: Path, stamps: list[str]) -> Path:
    rows = [HEADER] + [f"id{i},1,{ts},1,-73.98,40.75,-73.97,40.76,N,{600 + i}" for i, ts in enumerate(stamps)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_a_format_first_seen_after_the_sample_is_still_parsed(tmp_path):
    # 1,200 rows of one format (more than the 1,000-row sample), then 300 of another
    stamps = ["2016-03-01 10:00:00"] * 1200 + ["2016-03-01T10:00:00"] * 300
    f = write(tmp_path / "mixed.csv", stamps)
    df, rep = KaggleNYCTaxi(paths=f).load()
    assert (rep.n_in, rep.n_out, rep.dropped) == (1500, 1500, {})
    assert df["pickup_time"].null_count() == 0
    assert KaggleNYCTaxi(paths=f).drop_report().dropped == {}


def test_garbage_after_the_sample_is_counted_with_its_row(tmp_path):
    stamps = ["2016-03-01 10:00:00"] * 1200 + ["yesterday"] + ["2016-03-01 10:00:00"] * 10
    f = write(tmp_path / "bad.csv", stamps)
    _, rep = KaggleNYCTaxi(paths=f).load()
    assert rep.dropped == {"unparseable:pickup_time": 1}
    assert rep.examples["unparseable:pickup_time"] == [(str(f), 1200, "yesterday")]
