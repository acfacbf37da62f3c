"""The simulated world: places, public address blocks, holidays, departments and applications.

Everything here is fixed reference data; the randomness lives in org.py, activity.py and
scenarios.py. Address blocks are synthetic: each place owns a /16 so that an address always
agrees with the geo the event carries.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from ueba.v1.common_pb2 import GeoLocation

# Countries whose logons a "risky countries" profile flags; the risky_country scenario draws from
# them and normal activity never goes there.
RISKY_COUNTRIES: tuple[str, ...] = ("KP", "IR", "RU", "SY", "CU", "BY")

AIRLINER_KMH = 750.0  # block speed used for flights, including taxi and climb


@dataclass(frozen=True)
class Place:
    city: str
    country: str
    latitude: float
    longitude: float
    tz: str
    block: tuple[int, int]  # first two octets of the place's public /16

    def ip(self, host: int) -> str:
        """A public address in this place's block; `host` picks one of 64k addresses."""
        host %= 65024
        return f"{self.block[0]}.{self.block[1]}.{host // 254}.{host % 254 + 1}"


def _places(rows: list[tuple[str, str, float, float, str]], first_octets: tuple[int, ...]) -> dict[str, Place]:
    out = {}
    for i, (city, country, lat, lon, tz) in enumerate(rows):
        out[city] = Place(city, country, lat, lon, tz, (first_octets[i % len(first_octets)], 16 + (i * 37) % 223))
    return out


# Office cities: where users live and work. Weights give the head-count split.
OFFICES: dict[str, Place] = _places([
    ("New York", "US", 40.7128, -74.0060, "America/New_York"),
    ("San Francisco", "US", 37.7749, -122.4194, "America/Los_Angeles"),
    ("Chicago", "US", 41.8781, -87.6298, "America/Chicago"),
    ("Toronto", "CA", 43.6532, -79.3832, "America/Toronto"),
    ("London", "GB", 51.5074, -0.1278, "Europe/London"),
    ("Berlin", "DE", 52.5200, 13.4050, "Europe/Berlin"),
    ("Paris", "FR", 48.8566, 2.3522, "Europe/Paris"),
    ("Bangalore", "IN", 12.9716, 77.5946, "Asia/Kolkata"),
    ("Singapore", "SG", 1.3521, 103.8198, "Asia/Singapore"),
    ("Tokyo", "JP", 35.6762, 139.6503, "Asia/Tokyo"),
    ("Sydney", "AU", -33.8688, 151.2093, "Australia/Sydney"),
    ("Sao Paulo", "BR", -23.5505, -46.6333, "America/Sao_Paulo"),
], (23, 31, 46, 62, 81, 89, 103, 121, 139, 151, 163, 175))
OFFICE_WEIGHTS: dict[str, float] = {
    "New York": 18, "San Francisco": 14, "Chicago": 8, "Toronto": 5, "London": 14, "Berlin": 8,
    "Paris": 6, "Bangalore": 11, "Singapore": 5, "Tokyo": 4, "Sydney": 4, "Sao Paulo": 3,
}

# Other cities of the office countries: remote workers' VPN exits land there.
_DOMESTIC: dict[str, Place] = _places([
    ("Dallas", "US", 32.7767, -96.7970, "America/Chicago"),
    ("Los Angeles", "US", 34.0522, -118.2437, "America/Los_Angeles"),
    ("Seattle", "US", 47.6062, -122.3321, "America/Los_Angeles"),
    ("Montreal", "CA", 45.5019, -73.5674, "America/Toronto"),
    ("Manchester", "GB", 53.4808, -2.2426, "Europe/London"),
    ("Frankfurt", "DE", 50.1109, 8.6821, "Europe/Berlin"),
    ("Munich", "DE", 48.1351, 11.5820, "Europe/Berlin"),
    ("Lyon", "FR", 45.7640, 4.8357, "Europe/Paris"),
    ("Mumbai", "IN", 19.0760, 72.8777, "Asia/Kolkata"),
    ("Delhi", "IN", 28.7041, 77.1025, "Asia/Kolkata"),
    ("Osaka", "JP", 34.6937, 135.5023, "Asia/Tokyo"),
    ("Melbourne", "AU", -37.8136, 144.9631, "Australia/Melbourne"),
    ("Rio de Janeiro", "BR", -22.9068, -43.1729, "America/Sao_Paulo"),
], (24, 32, 47, 63, 82, 90, 104, 122, 140, 152, 164, 176))

# Where travellers go besides the offices.
VISITED: dict[str, Place] = _places([
    ("Amsterdam", "NL", 52.3676, 4.9041, "Europe/Amsterdam"),
    ("Dubai", "AE", 25.2048, 55.2708, "Asia/Dubai"),
    ("Hong Kong", "HK", 22.3193, 114.1694, "Asia/Hong_Kong"),
], (25, 33, 49))

# Foreign, non-risky places attacks come from; normal activity never does.
ATTACK_PLACES: dict[str, Place] = _places([
    ("Lagos", "NG", 6.5244, 3.3792, "Africa/Lagos"),
    ("Jakarta", "ID", -6.2088, 106.8456, "Asia/Jakarta"),
    ("Hanoi", "VN", 21.0278, 105.8342, "Asia/Bangkok"),
    ("Bucharest", "RO", 44.4268, 26.1025, "Europe/Bucharest"),
    ("Johannesburg", "ZA", -26.2041, 28.0473, "Africa/Johannesburg"),
    ("Mexico City", "MX", 19.4326, -99.1332, "America/Mexico_City"),
    ("Buenos Aires", "AR", -34.6037, -58.3816, "America/Argentina/Buenos_Aires"),
    ("Manila", "PH", 14.5995, 120.9842, "Asia/Manila"),
    ("Istanbul", "TR", 41.0082, 28.9784, "Europe/Istanbul"),
    ("Seoul", "KR", 37.5665, 126.9780, "Asia/Seoul"),
    ("Cairo", "EG", 30.0444, 31.2357, "Africa/Cairo"),
    ("Nairobi", "KE", -1.2921, 36.8219, "Africa/Nairobi"),
    ("Lima", "PE", -12.0464, -77.0428, "America/Lima"),
    ("Karachi", "PK", 24.8607, 67.0011, "Asia/Karachi"),
], (41, 43, 45, 58, 77, 79, 94, 101, 109, 113, 117, 125, 178, 181))

RISKY_PLACES: dict[str, Place] = _places([
    ("Pyongyang", "KP", 39.0392, 125.7625, "Asia/Pyongyang"),
    ("Tehran", "IR", 35.6892, 51.3890, "Asia/Tehran"),
    ("Moscow", "RU", 55.7558, 37.6173, "Europe/Moscow"),
    ("Saint Petersburg", "RU", 59.9311, 30.3609, "Europe/Moscow"),
    ("Damascus", "SY", 33.5138, 36.2765, "Asia/Damascus"),
    ("Havana", "CU", 23.1136, -82.3666, "America/Havana"),
    ("Minsk", "BY", 53.9006, 27.5590, "Europe/Minsk"),
], (5, 37, 91, 95, 185, 188, 194))

assert all(p.country in RISKY_COUNTRIES for p in RISKY_PLACES.values())


def domestic_places(country: str) -> list[Place]:
    """Office and other cities of one country, offices first."""
    return [p for p in OFFICES.values() if p.country == country] + [
        p for p in _DOMESTIC.values() if p.country == country
    ]


def distance_km(a: Place, b: Place) -> float:
    return haversine_km(a.latitude, a.longitude, b.latitude, b.longitude)


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(min(1.0, math.sqrt(h)))


@functools.cache
def geo_of(place: Place) -> GeoLocation:
    """Shared message per place; Event(geo=...) copies it, so sharing is safe."""
    return GeoLocation(country_code=place.country, city=place.city, latitude=place.latitude,
                       longitude=place.longitude, has_coordinates=True)


@functools.cache
def local_midnight_us(tz: str, day: date) -> int:
    """UTC microseconds of local midnight. The offset at local noon is used for the whole day,
    so on a daylight-saving change day times are off by an hour at most, which no detector sees."""
    noon = datetime(day.year, day.month, day.day, 12, tzinfo=ZoneInfo(tz))
    offset = noon.utcoffset() or timedelta(0)
    epoch_days = (day - date(1970, 1, 1)).days
    return (epoch_days * 86400 - int(offset.total_seconds())) * 1_000_000


# Public holidays: fixed dates, plus the few movable ones computed below. Not exhaustive; enough
# to make holidays visibly quieter than workdays.
_FIXED_HOLIDAYS: dict[str, tuple[tuple[int, int], ...]] = {
    "US": ((1, 1), (6, 19), (7, 4), (11, 11), (12, 25)),
    "CA": ((1, 1), (7, 1), (11, 11), (12, 25), (12, 26)),
    "GB": ((1, 1), (12, 25), (12, 26)),
    "DE": ((1, 1), (5, 1), (10, 3), (12, 25), (12, 26)),
    "FR": ((1, 1), (5, 1), (5, 8), (7, 14), (8, 15), (11, 1), (11, 11), (12, 25)),
    "IN": ((1, 26), (8, 15), (10, 2), (12, 25)),
    "SG": ((1, 1), (5, 1), (8, 9), (12, 25)),
    "JP": ((1, 1), (2, 11), (4, 29), (5, 3), (5, 4), (5, 5), (11, 3), (11, 23)),
    "AU": ((1, 1), (1, 26), (4, 25), (12, 25), (12, 26)),
    "BR": ((1, 1), (4, 21), (5, 1), (9, 7), (10, 12), (11, 2), (11, 15), (12, 25)),
}


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    """n-th (1-based; -1 = last) given weekday (Monday=0) of a month."""
    if n > 0:
        first = date(year, month, 1)
        return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))
    last = (date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1))
    return last - timedelta(days=(last.weekday() - weekday) % 7)


@functools.cache
def _movable_holidays(country: str, year: int) -> frozenset[date]:
    if country == "US":
        return frozenset({_nth_weekday(year, 1, 0, 3), _nth_weekday(year, 5, 0, -1), _nth_weekday(year, 9, 0, 1),
                          _nth_weekday(year, 11, 3, 4), _nth_weekday(year, 11, 3, 4) + timedelta(days=1)})
    if country == "CA":
        return frozenset({_nth_weekday(year, 9, 0, 1), _nth_weekday(year, 10, 0, 2)})
    if country == "GB":
        return frozenset({_nth_weekday(year, 5, 0, 1), _nth_weekday(year, 5, 0, -1), _nth_weekday(year, 8, 0, -1)})
    if country == "JP":
        return frozenset({_nth_weekday(year, 10, 0, 2), _nth_weekday(year, 9, 0, 3)})
    if country == "AU":
        return frozenset({_nth_weekday(year, 10, 0, 1)})
    return frozenset()


def is_holiday(country: str, day: date) -> bool:
    return (day.month, day.day) in _FIXED_HOLIDAYS.get(country, ()) or day in _movable_holidays(country, day.year)


@dataclass(frozen=True)
class Department:
    name: str
    weight: float
    apps: tuple[str, ...]          # SaaS applications the department uses daily
    file_apps: tuple[str, ...]     # where its files live
    servers: tuple[str, ...]       # server name prefixes it works on
    privileged: bool = False       # uses admin rights (privilege_use events)
    manages_accounts: bool = False  # changes other accounts (account_change events)
    file_intensity: float = 1.0


COMMON_APPS: tuple[str, ...] = ("outlook", "teams", "sharepoint", "onedrive")

DEPARTMENTS: tuple[Department, ...] = (
    Department("engineering", 30, ("github", "jira", "confluence", "slack", "aws-console"), ("sharepoint", "onedrive"),
               ("git", "build", "ci", "db-dev", "k8s-node", "artifact"), file_intensity=0.8),
    Department("sales", 15, ("salesforce", "hubspot", "docusign", "zoom"), ("sharepoint", "onedrive", "box"),
               ("crm-sync", "fs-sales"), file_intensity=1.1),
    Department("support", 14, ("zendesk", "jira", "slack"), ("sharepoint", "onedrive"), ("fs-support", "kb"),
               file_intensity=0.7),
    Department("marketing", 8, ("hubspot", "figma", "google-drive", "slack", "canva"), ("google-drive", "sharepoint"),
               ("fs-mkt", "cms"), file_intensity=1.4),
    Department("finance", 8, ("netsuite", "workday", "tableau"), ("sharepoint", "onedrive"), ("erp", "fs-fin", "db-fin"),
               file_intensity=1.3),
    Department("it", 8, ("servicenow", "okta-admin", "aws-console", "azure-portal", "slack"), ("sharepoint", "onedrive"),
               ("dc", "fs", "backup", "mgmt", "hv", "print"), privileged=True, manages_accounts=True, file_intensity=0.6),
    Department("hr", 5, ("workday", "docusign", "greenhouse"), ("sharepoint", "onedrive"), ("fs-hr",),
               manages_accounts=True, file_intensity=1.0),
    Department("legal", 4, ("docusign", "ironclad"), ("sharepoint", "box"), ("fs-legal",), file_intensity=1.2),
    Department("operations", 8, ("tableau", "servicenow", "slack"), ("sharepoint", "onedrive"), ("fs-ops", "erp"),
               file_intensity=0.9),
)

# Used now and then by anyone: the benign "rare application" noise.
OCCASIONAL_APPS: tuple[str, ...] = ("zoom", "miro", "canva", "docusign", "dropbox", "webex", "notion", "lucidchart")

# Nobody in the organisation uses these; the upload_new_app scenario sends data to one of them.
EXFIL_APPS: tuple[str, ...] = ("mega", "wetransfer", "sendspace", "gofile", "filemail", "anonfiles")

# Producer and action names per application family, as the producers log them.
APP_PRODUCER: dict[str, str] = {
    "outlook": "m365", "teams": "m365", "sharepoint": "m365", "onedrive": "m365",
    "google-drive": "gworkspace", "box": "box", "dropbox": "dropbox", "github": "github",
}
FILE_ACTIONS: dict[str, tuple[str, str, str, str]] = {  # download, upload, delete, share
    "m365": ("FileDownloaded", "FileUploaded", "FileDeleted", "SharingSet"),
    "gworkspace": ("download", "upload", "delete", "change_user_access"),
    "box": ("DOWNLOAD", "UPLOAD", "DELETE", "SHARE"),
    "dropbox": ("file_download", "file_upload", "file_delete", "shared_link_create"),
    "proxy": ("http_get", "http_post", "http_delete", "http_put"),
}

BROWSER_AGENTS: tuple[str, ...] = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/128.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/128.0.0.0 Safari/537.36 Edg/128.0.0.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:130.0) Gecko/20100101 Firefox/130.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/128.0.0.0 Safari/537.36",
)
ATTACK_AGENTS: tuple[str, ...] = (
    "python-requests/2.32.3", "curl/8.9.1", "Go-http-client/1.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/115.0",
)

FIRST_NAMES: tuple[str, ...] = tuple("""
ada alan alice amir ana andrea anna arjun ben bianca carla carlos chen chloe chris claire dan daniel
david diana diego elena emma eric eva farah felix fatima george grace hana hannah hiro ian ines isaac
ivan jack james jana javier jean jin john jonas julia kai karen kate kenji laura lea leo liam lina
lucas luis maya marco maria mark marta mei mia michael mohamed nadia nina noah olga omar oscar paul
pedro petra priya rafael rahul raj rosa ruth sam sara sean sofia sophie stefan sun tara tom ulla
victor wei yara yuki zara zoe
""".split())
LAST_NAMES: tuple[str, ...] = tuple("""
adams ahmed alvarez bauer becker brown carter chen clark costa cruz das davies diaz dubois evans
fernandes fischer garcia gomez gupta hall hansen hoffmann ito jackson jensen johnson jones kato kim
klein kumar lambert lee lewis lopez martin meyer miller moore morales muller murphy nakamura nguyen
novak ortiz park patel perez peters petrov ramos reddy reyes richter rossi santos sato schmidt
schneider silva singh smith suzuki tanaka taylor thomas torres turner wagner walker wang weber white
williams wilson wong wright yamamoto young zhang
""".split())

FILE_WORDS: tuple[str, ...] = tuple("""
budget forecast roadmap design spec report review plan notes contract invoice proposal deck summary
minutes onboarding policy pricing quarterly campaign launch audit backlog release architecture survey
analysis customer vendor headcount payroll benefits offer brief research pipeline status metrics
""".split())
FILE_EXTENSIONS: tuple[tuple[str, float], ...] = (
    ("docx", 0.25), ("xlsx", 0.2), ("pptx", 0.12), ("pdf", 0.25), ("csv", 0.06), ("zip", 0.04),
    ("png", 0.05), ("mp4", 0.03),
)
