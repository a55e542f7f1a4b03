"""Holiday calendars computed from their rules (no downloaded tables): US federal holidays as observed.

>>> import datetime as dt
>>> dt.date(2016, 5, 30) in us_federal_holidays(2016)  # Memorial Day: last Monday of May
True
>>> dt.date(2021, 12, 24) in us_federal_holidays(2021)  # Christmas on a Saturday -> observed Friday
True
"""

from __future__ import annotations

import datetime as dt
from functools import cache

import numpy as np


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> dt.date:
    """The n-th (1-based; -1 = last) given weekday (0 = Monday) of a month."""
    if n > 0:
        first = dt.date(year, month, 1)
        return first + dt.timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))
    nxt = dt.date(year + (month == 12), month % 12 + 1, 1)
    last = nxt - dt.timedelta(days=1)
    return last - dt.timedelta(days=(last.weekday() - weekday) % 7)


def _observed(d: dt.date) -> dt.date:
    """Federal rule: a Saturday holiday is observed on Friday, a Sunday one on Monday."""
    if d.weekday() == 5:
        return d - dt.timedelta(days=1)
    if d.weekday() == 6:
        return d + dt.timedelta(days=1)
    return d


@cache
def us_federal_holidays(year: int) -> frozenset[dt.date]:
    """The observed US federal holidays of a year (Juneteenth from 2021, when it was created)."""
    fixed = [(1, 1), (7, 4), (11, 11), (12, 25)] + ([(6, 19)] if year >= 2021 else [])
    days = {_observed(dt.date(year, m, d)) for m, d in fixed}
    days |= {
        _nth_weekday(year, 1, 0, 3),  # Martin Luther King Jr. Day
        _nth_weekday(year, 2, 0, 3),  # Washington's Birthday
        _nth_weekday(year, 5, 0, -1),  # Memorial Day
        _nth_weekday(year, 9, 0, 1),  # Labor Day
        _nth_weekday(year, 10, 0, 2),  # Columbus Day
        _nth_weekday(year, 11, 3, 4),  # Thanksgiving
    }
    return frozenset(days)


def holidays_between(first_year: int, last_year: int) -> list[dt.date]:
    """Sorted holidays of the years ``first_year..last_year`` (inclusive), plus New Year's Day of the
    following year, whose observed date can fall on 31 December."""
    out: set[dt.date] = set()
    for y in range(first_year, last_year + 2):
        out |= us_federal_holidays(y)
    return sorted(out)


HOLIDAY_YEARS = (1970, 2099)  # the span of the holiday flag (pipeline and exported graphs alike)

# The Gregorian calendar repeats every 400 years, which are exactly 146,097 days (a whole number of
# weeks): a day's month and day of the year are functions of (days since 1970-01-01) mod this.
DAYS_PER_400_YEARS = 146_097


@cache
def day_tables() -> dict[str, np.ndarray]:
    """Lookup tables indexed by days since 1970-01-01: ``month`` (1-12) and ``ordinal`` (1-366) by the
    day modulo :data:`DAYS_PER_400_YEARS` (valid for every date), and ``holiday`` (0/1) for the days of
    1970-01-01 .. 2100-12-31 (the span :func:`holidays_between` covers; other days are no holiday).

    >>> t = day_tables()
    >>> d = (dt.date(2016, 2, 29) - dt.date(1970, 1, 1)).days
    >>> int(t["month"][d]), int(t["ordinal"][d]), int(t["holiday"][d])
    (2, 60, 0)
    """
    dates = np.datetime64("1970-01-01", "D") + np.arange(DAYS_PER_400_YEARS)
    month = dates.astype("datetime64[M]").astype(np.int64) % 12 + 1
    ordinal = (dates - dates.astype("datetime64[Y]").astype("datetime64[D]")).astype(np.int64) + 1
    n_hol = (dt.date(HOLIDAY_YEARS[1] + 2, 1, 1) - dt.date(1970, 1, 1)).days
    holiday = np.zeros(n_hol, dtype=np.int32)
    offsets = [(d - dt.date(1970, 1, 1)).days for d in holidays_between(*HOLIDAY_YEARS)]
    holiday[[o for o in offsets if o < n_hol]] = 1
    return {"month": month.astype(np.int32), "ordinal": ordinal.astype(np.int32), "holiday": holiday}
