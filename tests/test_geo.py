"""Distances and the impossible-travel speed shared by the simulator and the fraud rules."""

from __future__ import annotations

import math

import pytest

from streamforge.geo import COUNTRIES, REGIONS, distance_km, implied_speed_kmh


@pytest.mark.parametrize(
    "a, b, km",
    [("GB", "DE", 637), ("US", "AU", 13_930), ("JP", "BR", 18_530), ("SG", "IN", 3_900)],
)
def test_great_circle_distances(a: str, b: str, km: float) -> None:
    assert distance_km(a, b) == pytest.approx(km, rel=0.02)
    assert distance_km(b, a) == distance_km(a, b)
    assert distance_km(a, a) == 0


def test_unknown_country() -> None:
    assert distance_km("GB", "XX") is None
    assert implied_speed_kmh("XX", "GB", 60) is None


def test_implied_speed() -> None:
    assert implied_speed_kmh("GB", "DE", 3600) == pytest.approx(distance_km("GB", "DE"))
    assert implied_speed_kmh("GB", "DE", 0) == math.inf
    assert implied_speed_kmh("GB", "GB", 0) == 0.0


def test_every_region_is_in_a_known_country() -> None:
    assert {region.country for region in REGIONS.values()} == set(COUNTRIES)
