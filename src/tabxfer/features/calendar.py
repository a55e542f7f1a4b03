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
