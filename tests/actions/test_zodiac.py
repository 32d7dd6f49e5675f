"""Signs from dates, signs from what users type, and birth-date parsing."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from conftest import TODAY

from actions.zodiac import (
    SIGNS,
    Birthdate,
    FutureBirthdate,
    ImpossibleBirthdate,
    UnreadableBirthdate,
    normalise_sign,
    parse_birthdate,
    sign_for,
)

# Written independently of actions/zodiac.py: inclusive date ranges in the leap year 2024.
EXPECTED_RANGES_2024 = [
    ("capricorn", date(2024, 1, 1), date(2024, 1, 19)),
    ("aquarius", date(2024, 1, 20), date(2024, 2, 18)),
    ("pisces", date(2024, 2, 19), date(2024, 3, 20)),
    ("aries", date(2024, 3, 21), date(2024, 4, 19)),
    ("taurus", date(2024, 4, 20), date(2024, 5, 20)),
    ("gemini", date(2024, 5, 21), date(2024, 6, 20)),
    ("cancer", date(2024, 6, 21), date(2024, 7, 22)),
    ("leo", date(2024, 7, 23), date(2024, 8, 22)),
    ("virgo", date(2024, 8, 23), date(2024, 9, 22)),
    ("libra", date(2024, 9, 23), date(2024, 10, 22)),
    ("scorpio", date(2024, 10, 23), date(2024, 11, 21)),
    ("sagittarius", date(2024, 11, 22), date(2024, 12, 21)),
    ("capricorn", date(2024, 12, 22), date(2024, 12, 31)),
]


def expected_sign(day: date) -> str:
    (sign,) = [name for name, first, last in EXPECTED_RANGES_2024 if first <= day <= last]
    return sign


def test_every_day_of_a_leap_year_has_the_expected_sign() -> None:
    days = [date(2024, 1, 1) + timedelta(days=offset) for offset in range(366)]
    assert days[-1] == date(2024, 12, 31)
    wrong = {
        day: sign_for(day.month, day.day)
        for day in days
        if sign_for(day.month, day.day) != expected_sign(day)
    }
    assert wrong == {}
    assert {sign_for(day.month, day.day) for day in days} == set(SIGNS)


@pytest.mark.parametrize(
    ("month", "day", "sign"),
    [
        (1, 19, "capricorn"), (1, 20, "aquarius"),
        (2, 18, "aquarius"), (2, 19, "pisces"),
        (2, 29, "pisces"),
        (3, 20, "pisces"), (3, 21, "aries"),
        (4, 19, "aries"), (4, 20, "taurus"),
        (5, 20, "taurus"), (5, 21, "gemini"),
        (6, 20, "gemini"), (6, 21, "cancer"),
        (7, 22, "cancer"), (7, 23, "leo"),
        (8, 22, "leo"), (8, 23, "virgo"),
        (9, 22, "virgo"), (9, 23, "libra"),
        (10, 22, "libra"), (10, 23, "scorpio"),
        (11, 21, "scorpio"), (11, 22, "sagittarius"),
        (12, 21, "sagittarius"), (12, 22, "capricorn"),
        (12, 31, "capricorn"), (1, 1, "capricorn"),
    ],
)  # fmt: skip
def test_cusp_days(month: int, day: int, sign: str) -> None:
    assert sign_for(month, day) == sign


@pytest.mark.parametrize(("month", "day"), [(2, 30), (4, 31), (13, 1), (0, 5), (6, 0)])
def test_sign_of_a_day_that_does_not_exist_is_an_error(month: int, day: int) -> None:
    with pytest.raises(ValueError, match="not a day of the year"):
        sign_for(month, day)


@pytest.mark.parametrize(
    ("written", "sign"),
    [
        ("leo", "leo"),
        ("LEO", "leo"),
        ("  Pisces ", "pisces"),
        ("Capricorne", "capricorn"),
        ("saggitarius", "sagittarius"),
        ("Sagitarius", "sagittarius"),
        ("sagi", "sagittarius"),
        ("scorpion", "scorpio"),
        ("the crab", "cancer"),
        ("Lion", "leo"),
        ("ram", "aries"),
        ("water bearer", "aquarius"),
        ("virgo sign", "virgo"),
        ("Gemeni!", "gemini"),
    ],
)
def test_signs_are_normalised_to_canonical_names(written: str, sign: str) -> None:
    assert normalise_sign(written) == sign


@pytest.mark.parametrize("written", ["banana", "", None, "the", "ophiuchus", "42"])
def test_what_is_no_sign_normalises_to_none(written: str | None) -> None:
    assert normalise_sign(written) is None


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("3 March 1990", Birthdate(3, 3, 1990)),
        ("march 3rd", Birthdate(3, 3, None)),
        ("03/03/1990", Birthdate(3, 3, 1990)),
        ("1990-03-03", Birthdate(3, 3, 1990)),
        ("born on the 3rd of March", Birthdate(3, 3, None)),
        ("12.07.1985", Birthdate(7, 12, 1985)),
        ("july 4 1976", Birthdate(7, 4, 1976)),
        ("29 feb 2000", Birthdate(2, 29, 2000)),
        ("29 February", Birthdate(2, 29, None)),
        ("I was born on 21st Sept, 1984", Birthdate(9, 21, 1984)),
        ("04/03/1990", Birthdate(3, 4, 1990)),  # day first
        ("1990-04-03", Birthdate(4, 3, 1990)),  # ISO: year, month, day
        ("3/3/90", Birthdate(3, 3, 1990)),
        ("3/3/26", Birthdate(3, 3, 2026)),
        ("3/12/26", Birthdate(12, 3, 1926)),  # 2026-12-03 is after TODAY: the previous century
        ("21 November 2026", Birthdate(11, 21, 2026)),  # today itself is not the future
    ],
)
def test_written_birth_dates(written: str, expected: Birthdate) -> None:
    assert parse_birthdate(written, today=TODAY) == expected


def test_sign_of_a_parsed_birth_date() -> None:
    assert parse_birthdate("29 feb 2000", today=TODAY).sign == "pisces"
    assert parse_birthdate("the 23rd of july", today=TODAY).sign == "leo"


@pytest.mark.parametrize(
    ("written", "error", "reason"),
    [
        ("30 February", ImpossibleBirthdate, "February never has more than 29 days"),
        ("31 April", ImpossibleBirthdate, "April has only 30 days"),
        ("31/06/1999", ImpossibleBirthdate, "June has only 30 days"),
        ("29 February 2001", ImpossibleBirthdate, "2001 was not a leap year"),
        ("2001-02-29", ImpossibleBirthdate, "2001 was not a leap year"),
        ("03/13/1990", ImpossibleBirthdate, "no month 13"),
        ("0 March", ImpossibleBirthdate, "day 1"),
        ("22 November 2026", FutureBirthdate, "in the future"),
        ("1/1/2030", FutureBirthdate, "in the future"),
        ("last spring", UnreadableBirthdate, "month"),
        ("March", UnreadableBirthdate, "day of the month"),
        ("3 4 March", UnreadableBirthdate, "day of the month"),
        ("3 March 1990 1991", UnreadableBirthdate, "more than one year"),
        ("March 123", UnreadableBirthdate, "'123'"),
    ],
)
def test_impossible_and_unreadable_birth_dates(written: str, error: type, reason: str) -> None:
    with pytest.raises(error) as raised:
        parse_birthdate(written, today=TODAY)
    assert reason in raised.value.reason
    assert raised.value.text == written
