"""Deterministic, realistic seed data for the demo's two local CRMs.

- ``shop.db``: an online shop's SQLite database (``customers``, ``orders``), normalized the way shop systems
  are: one row per customer, many orders, amounts in the order's currency, refunds as negative orders.
- ``callcentre/``: a call-centre CRM's CSV export folder (``contacts-*.csv``, ``calls-*.csv``).

The same people appear in both with the differences real data has: e-mail case and whitespace, phone numbers
typed in national or international format, first names abbreviated, and a shared ERP customer number on some
records only. Everything derives from one seeded random generator, so the demo's output is identical on every
run and machine.
"""

from __future__ import annotations

import csv
import random
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

__all__ = ["DEMO_NOW", "DemoPerson", "people", "write_callcentre", "write_shop"]

#: The demo's "today": fixed so that recency-based segments are reproducible.
DEMO_NOW = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)

_FIRST = [
    "Anna", "Ben", "Clara", "David", "Elena", "Felix", "Greta", "Hannes", "Ida", "Jonas", "Katharina", "Lukas",
    "Marie", "Niklas", "Olivia", "Paul", "Queenie", "Rafael", "Sophie", "Tobias", "Ursula", "Viktor", "Wiebke",
    "Xaver", "Yasmin", "Zoe", "Matthias", "Christina", "Alexander", "Johanna",
]
_LAST = [
    "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz", "Hoffmann",
    "Koch", "Richter", "Klein", "Wolf", "Schröder", "Neumann", "Schwarz", "Braun", "Zimmermann", "Hartmann",
]
_SHORT = {"Katharina": "Kathi", "Alexander": "Alex", "Matthias": "Matze", "Christina": "Tina", "Johanna": "Jo"}
_CITIES = [("Berlin", "10115", "030"), ("Hamburg", "20095", "040"), ("München", "80331", "089"),
           ("Köln", "50667", "0221"), ("Leipzig", "04109", "0341")]
_DOMAINS = ["example.com", "example.org", "example.net"]


@dataclass(frozen=True)
class DemoPerson:
    """One person of the demo population (ground truth for tests)."""

    index: int
    first: str
    last: str
    email: str
    phone_national: str  # e.g. "030 1234567"
    city: str
    postcode: str
    erp_no: str
    in_shop: bool
    in_callcentre: bool


_UMLAUTS = {ord("ä"): "ae", ord("ö"): "oe", ord("ü"): "ue", ord("ß"): "ss"}


def _ascii(text: str) -> str:
    return text.lower().translate(_UMLAUTS)


def people(n: int = 240, seed: int = 7) -> list[DemoPerson]:
    """The demo population: about half in both CRMs, the rest in one of them."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        city, postcode, area = rng.choice(_CITIES)
        email = f"{_ascii(first)}.{_ascii(last)}{i}@{rng.choice(_DOMAINS)}"
        phone = f"{area} {rng.randint(2000000, 9999999)}"
        roll = rng.random()
        in_shop, in_cc = (True, True) if roll < 0.5 else ((True, False) if roll < 0.8 else (False, True))
        out.append(DemoPerson(i, first, last, email, phone, city, postcode, f"K-{10000 + i}", in_shop, in_cc))
    return out


def write_shop(path: Path, population: list[DemoPerson], seed: int = 11) -> int:
    """Create the shop's SQLite database; return the number of orders written."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE customers (
            id INTEGER PRIMARY KEY, customer_no TEXT, first_name TEXT, last_name TEXT, email TEXT, phone TEXT,
            street TEXT, city TEXT, postcode TEXT, country TEXT, newsletter INTEGER, loyalty_card TEXT,
            cx_segment TEXT, cx_tier TEXT, updated_at TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0);
        CREATE TABLE orders (
            id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id), placed_at TEXT NOT NULL,
            total NUMERIC NOT NULL, currency TEXT NOT NULL, channel TEXT NOT NULL, status TEXT NOT NULL,
            updated_at TEXT NOT NULL);
        CREATE INDEX ix_customers_updated ON customers(updated_at, id);
        CREATE INDEX ix_orders_updated ON orders(updated_at, id);
        """
    )
    orders = 0
    for person in population:
        if not person.in_shop:
            continue
        cid = 1000 + person.index
        created = DEMO_NOW - timedelta(days=rng.randint(30, 900))
        db.execute(
            "INSERT INTO customers VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,0)",
            (
                cid,
                person.erp_no if rng.random() < 0.7 else None,
                person.first,
                person.last,
                person.email,
                "+49 " + person.phone_national[1:] if rng.random() < 0.5 else person.phone_national,
                f"{rng.choice(['Hauptstr.', 'Gartenweg', 'Lindenallee', 'Bahnhofstr.'])} {rng.randint(1, 120)}",
                person.city,
                person.postcode,
                "DE",
                int(rng.random() < 0.6),
                rng.choice(["", "silver", "gold"]),
                None,
                None,
                created.strftime("%Y-%m-%d %H:%M:%S"),
            ),
        )
        # Purchase behaviour differs a lot between people: that is what the segments are for.
        activity = rng.choice([0, 1, 1, 2, 3, 5, 8, 13])
        last_active = DEMO_NOW - timedelta(days=rng.choice([3, 10, 25, 60, 120, 250, 400, 700]))
        for _ in range(activity):
            placed = last_active - timedelta(days=rng.randint(0, 365))
            placed = max(placed, created)
            currency = "EUR" if rng.random() < 0.9 else rng.choice(["CHF", "GBP"])
            total = round(rng.lognormvariate(3.8, 0.7), 2)
            status = "completed"
            if rng.random() < 0.05:
                total, status = -total, "refunded"
            orders += 1
            db.execute(
                "INSERT INTO orders (customer_id, placed_at, total, currency, channel, status, updated_at)"
                " VALUES (?,?,?,?,?,?,?)",
                (cid, placed.strftime("%Y-%m-%d %H:%M:%S"), total, currency,
                 rng.choice(["web", "web", "store"]), status, placed.strftime("%Y-%m-%d %H:%M:%S")),
            )
    db.commit()
    db.close()
    return orders


def write_callcentre(folder: Path, population: list[DemoPerson], seed: int = 13) -> int:
    """Write the call-centre CRM's CSV export; return the number of calls written."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = DEMO_NOW - timedelta(days=1)
    contacts_path = folder / "contacts-2026-10-31.csv"
    calls_path = folder / "calls-2026-10-31.csv"
    calls = 0
    with contacts_path.open("w", newline="", encoding="utf-8") as cf, calls_path.open(
        "w", newline="", encoding="utf-8"
    ) as kf:
        contacts = csv.writer(cf)
        contacts.writerow(["contact_id", "name", "email", "phone", "erp_no", "do_not_call", "modified"])
        log = csv.writer(kf)
        log.writerow(["call_id", "contact_id", "started", "direction", "duration_s", "topic", "notes", "modified"])
        for person in population:
            if not person.in_callcentre:
                continue
            contact_id = f"CC-{5000 + person.index}"
            first = _SHORT.get(person.first, person.first) if rng.random() < 0.5 else person.first
            email = person.email.upper() if rng.random() < 0.3 else f" {person.email} "
            if rng.random() < 0.15:  # some people gave the call centre another address
                email = f"{_ascii(person.first)}{person.index}@mail.example"
            phone = "0049 " + person.phone_national[1:] if rng.random() < 0.4 else person.phone_national
            contacts.writerow([
                contact_id, f"{first} {person.last}", email, phone,
                person.erp_no if rng.random() < 0.5 else "", int(rng.random() < 0.1),
                stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
            ])
            for _ in range(rng.choice([0, 1, 1, 2, 4])):
                started = DEMO_NOW - timedelta(days=rng.randint(1, 500), minutes=rng.randint(0, 600))
                topic = rng.choice(["delivery", "invoice", "return", "product question", "complaint"])
                calls += 1
                log.writerow([
                    f"CALL-{calls:05d}", contact_id, started.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    rng.choice(["inbound", "inbound", "outbound"]), rng.randint(30, 1500), topic,
                    f"Customer called about {topic}.", stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
                ])
    return calls
