"""Star signs: from a birth date, from what users type, and birth-date parsing.

Sign boundaries follow the common newspaper convention for the tropical zodiac
(the exact day the sun changes sign moves by a day between years; horoscope
columns use fixed dates):

    aries       Mar 21 - Apr 19     libra        Sep 23 - Oct 22
    taurus      Apr 20 - May 20     scorpio      Oct 23 - Nov 21
    gemini      May 21 - Jun 20     sagittarius  Nov 22 - Dec 21
    cancer      Jun 21 - Jul 22     capricorn    Dec 22 - Jan 19
    leo         Jul 23 - Aug 22     aquarius     Jan 20 - Feb 18
    virgo       Aug 23 - Sep 22     pisces       Feb 19 - Mar 20

Numeric birth dates are read DAY FIRST ("03/04/1990" is 3 April 1990), except
when they start with a four-digit year ("1990-04-03" is ISO, year-month-day).
"""

from __future__ import annotations

import calendar
import difflib
import re
from dataclasses import dataclass
from datetime import date

from dateutil.parser import parserinfo

SIGNS: tuple[str, ...] = (
    "aries",
    "taurus",
    "gemini",
    "cancer",
    "leo",
    "virgo",
    "libra",
    "scorpio",
    "sagittarius",
    "capricorn",
    "aquarius",
    "pisces",
)

# First day (month, day) of each sign, in calendar order; capricorn also covers Jan 1-19.
_SIGN_STARTS: tuple[tuple[int, int, str], ...] = (
    (1, 20, "aquarius"),
    (2, 19, "pisces"),
    (3, 21, "aries"),
    (4, 20, "taurus"),
    (5, 21, "gemini"),
    (6, 21, "cancer"),
    (7, 23, "leo"),
    (8, 23, "virgo"),
    (9, 23, "libra"),
    (10, 23, "scorpio"),
    (11, 22, "sagittarius"),
    (12, 22, "capricorn"),
)

# Symbols, Latin names and frequent misspellings; anything else close enough to
# a sign's name is caught by the fuzzy match in `normalise_sign`.
_SIGN_SYNONYMS: dict[str, str] = {
    "ram": "aries",
    "bull": "taurus",
    "twins": "gemini",
    "gemeni": "gemini",
    "crab": "cancer",
    "lion": "leo",
    "virgin": "virgo",
    "maiden": "virgo",
    "scales": "libra",
    "balance": "libra",
    "scorpion": "scorpio",
    "scorpius": "scorpio",
    "archer": "sagittarius",
    "sagi": "sagittarius",
    "sag": "sagittarius",
    "sadge": "sagittarius",
    "saggitarius": "sagittarius",
    "sagitarius": "sagittarius",
    "goat": "capricorn",
    "sea goat": "capricorn",
    "capricorne": "capricorn",
    "capricornus": "capricorn",
    "capricon": "capricorn",
    "water bearer": "aquarius",
    "aquarious": "aquarius",
    "aquarus": "aquarius",
    "fish": "pisces",
    "fishes": "pisces",
    "pices": "pisces",
    "piscis": "pisces",
}

_MONTH_NAMES = parserinfo()
_ISO_DATE = re.compile(r"\b(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})\b")
_DAY_FIRST_DATE = re.compile(r"\b(\d{1,2})[-/.](\d{1,2})(?:[-/.](\d{4}|\d{2}))?\b")
_WORD_OR_NUMBER = re.compile(r"[a-z]+|\d+(?:st|nd|rd|th)?")
_ORDINAL_SUFFIX = re.compile(r"(st|nd|rd|th)$")
_LEAP_YEAR = 2000  # lets 29 February through when no year was given


def sign_for(month: int, day: int) -> str:
    """Star sign of a birthday, by the boundaries in the module docstring."""
    if not 1 <= month <= 12 or not 1 <= day <= calendar.monthrange(_LEAP_YEAR, month)[1]:
        raise ValueError(f"not a day of the year: month={month} day={day}")
    sign = "capricorn"
    for start_month, start_day, starting_sign in _SIGN_STARTS:
        if (month, day) >= (start_month, start_day):
            sign = starting_sign
    return sign


def normalise_sign(text: str | None) -> str | None:
    """Canonical lowercase sign for what a user or the NLU wrote, or None if it is no sign."""
    if not text:
        return None
    cleaned = " ".join(re.sub(r"[^a-z]+", " ", text.lower()).split())
    cleaned = cleaned.removeprefix("the ").removesuffix(" sign")
    if cleaned in SIGNS:
        return cleaned
    if cleaned in _SIGN_SYNONYMS:
        return _SIGN_SYNONYMS[cleaned]
    close = difflib.get_close_matches(cleaned, SIGNS, n=1, cutoff=0.8)
    return close[0] if close else None


def display_name(sign: str) -> str:
    """How a canonical sign is written to users ("sagittarius" -> "Sagittarius")."""
    return sign.capitalize()


@dataclass(frozen=True)
class Birthdate:
    """A birthday; the year is optional because the sign does not need it."""

    month: int
    day: int
    year: int | None = None

    @property
    def sign(self) -> str:
        return sign_for(self.month, self.day)


class BirthdateError(ValueError):
    """A birth date that cannot be used; `reason` is written for the user."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(f"{text!r}: {reason}")
        self.text = text
        self.reason = reason


class UnreadableBirthdate(BirthdateError):
    """The text does not contain a day and a month we can read."""


class ImpossibleBirthdate(BirthdateError):
    """The day does not exist in the calendar (30 February, 31 April, month 13)."""


class FutureBirthdate(BirthdateError):
    """The date has not happened yet."""


def parse_birthdate(text: str, today: date | None = None) -> Birthdate:
    """Read a written birth date ("3 March 1990", "march 3rd", "03/03/1990", "1990-03-03").

    Raises a `BirthdateError` subclass whose `reason` can be shown to the user.
    """
    today = today or date.today()
    cleaned = text.strip().lower()
    if iso := _ISO_DATE.search(cleaned):
        year, month, day = (int(part) for part in iso.groups())
    elif day_first := _DAY_FIRST_DATE.search(cleaned):
        day, month = int(day_first[1]), int(day_first[2])
        year = _full_year(day_first[3], month, day, today)
    else:
        month, day, year = _parse_written(text, cleaned)
    return _checked(text, Birthdate(month=month, day=day, year=year), today)


def _full_year(digits: str | None, month: int, day: int, today: date) -> int | None:
    """Four digits as written; two digits in the latest century that does not put the date in the future."""
    if digits is None or len(digits) == 4:
        return int(digits) if digits else None
    year = today.year // 100 * 100 + int(digits)
    return year if (year, month, day) <= (today.year, today.month, today.day) else year - 100


def _parse_written(text: str, cleaned: str) -> tuple[int, int, int | None]:
    """Month by name plus day (with or without ordinal suffix) and optional four-digit year."""
    months, days, years = [], [], []
    for token in _WORD_OR_NUMBER.findall(cleaned):
        number = _ORDINAL_SUFFIX.sub("", token) if token[0].isdigit() else None
        if number is None:
            month = _MONTH_NAMES.month(token)
            if month is not None:
                months.append(month)
        elif len(number) == 4 and number == token:
            years.append(int(number))
        elif len(number) <= 2:
            days.append(int(number))
        else:
            raise UnreadableBirthdate(text, f"I can't read {token!r} as a day or a year")
    if len(months) != 1:
        raise UnreadableBirthdate(text, "I need the month of your birthday, for example '3 March 1990'")
    if len(days) != 1:
        raise UnreadableBirthdate(
            text, "I need exactly one day of the month and a four-digit year, for example '3 March 1990'"
        )
    if len(years) > 1:
        raise UnreadableBirthdate(text, "I found more than one year in that date")
    return months[0], days[0], years[0] if years else None


def _checked(text: str, birthdate: Birthdate, today: date) -> Birthdate:
    month, day, year = birthdate.month, birthdate.day, birthdate.year
    if not 1 <= month <= 12:
        raise ImpossibleBirthdate(
            text, f"there is no month {month}; I read numeric dates day first, like 31/12/1990"
        )
    if year is not None and year < 1:
        raise ImpossibleBirthdate(text, "there was no year 0")
    if day < 1:
        raise ImpossibleBirthdate(text, "months start on day 1")
    month_name = calendar.month_name[month]
    days_in_month = calendar.monthrange(_LEAP_YEAR if year is None else year, month)[1]
    if day > days_in_month:
        if year is not None and month == 2 and day == 29:
            reason = f"{year} was not a leap year, so February had only 28 days"
        elif month == 2:
            reason = "February never has more than 29 days"
        else:
            reason = f"{month_name} has only {days_in_month} days"
        raise ImpossibleBirthdate(text, reason)
    if year is not None and date(year, month, day) > today:
        raise FutureBirthdate(text, "that date is in the future")
    return birthdate
