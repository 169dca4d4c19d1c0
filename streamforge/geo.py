"""Where shoppers are: regions, countries and the impossible-travel test.

Shared by the simulator (to place users and inject LOCATION_ANOMALY cases) and the fraud
pipeline (to detect them), so both agree on distances.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["COUNTRIES", "REGIONS", "Region", "distance_km", "implied_speed_kmh"]


@dataclass(frozen=True)
class Region:
    code: str
    city: str
    latitude: float
    longitude: float
    country: str


REGIONS: dict[str, Region] = {
    r.code: r
    for r in (
        Region("us-east", "New York", 40.71, -74.01, "US"),
        Region("us-west", "San Francisco", 37.77, -122.42, "US"),
        Region("ca-central", "Toronto", 43.65, -79.38, "CA"),
        Region("sa-east", "Sao Paulo", -23.55, -46.63, "BR"),
        Region("eu-west", "London", 51.51, -0.13, "GB"),
        Region("eu-central", "Frankfurt", 50.11, 8.68, "DE"),
        Region("eu-north", "Stockholm", 59.33, 18.07, "SE"),
        Region("ap-south", "Mumbai", 19.08, 72.88, "IN"),
        Region("ap-southeast", "Singapore", 1.35, 103.82, "SG"),
        Region("ap-northeast", "Tokyo", 35.68, 139.69, "JP"),
        Region("au-southeast", "Sydney", -33.87, 151.21, "AU"),
    )
}

#: Reference point of each country (ISO 3166-1 alpha-2) for distances between IP locations.
COUNTRIES: dict[str, tuple[float, float]] = {
    "US": (39.83, -98.58),  # geographic centre of the contiguous US
    "CA": (43.65, -79.38),
    "BR": (-23.55, -46.63),
    "GB": (51.51, -0.13),
    "DE": (50.11, 8.68),
    "SE": (59.33, 18.07),
    "IN": (19.08, 72.88),
    "SG": (1.35, 103.82),
    "JP": (35.68, 139.69),
    "AU": (-33.87, 151.21),
}

_EARTH_RADIUS_KM = 6371.0


def distance_km(country_a: str, country_b: str) -> float | None:
    """Great-circle distance between two countries' reference points; None if one is unknown."""
    a, b = COUNTRIES.get(country_a), COUNTRIES.get(country_b)
    if a is None or b is None:
        return None
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * _EARTH_RADIUS_KM * math.asin(math.sqrt(h))


def implied_speed_kmh(country_a: str, country_b: str, seconds: float) -> float | None:
    """Speed needed to be in both places ``seconds`` apart (inf for no time); None if unknown."""
    distance = distance_km(country_a, country_b)
    if distance is None:
        return None
    if distance == 0:
        return 0.0
    return math.inf if seconds <= 0 else distance / (seconds / 3600.0)
