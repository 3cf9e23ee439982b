"""Generate the benchmark's source CRM: a normalized SQLite database of N customers.

``customers(id, first_name, last_name, erp_no, country, updated_at)`` plus a contact-mechanism table
``contact(party_id, kind, value, is_primary)`` holding one email and one phone per customer (phones in
mixed national / international formats, emails in mixed case) -- the shape of a typical on-prem CRM.
5 % of the customers share an email with another customer (so identity resolution links records).

Usage: ``python generate.py OUT.db N``
"""

from __future__ import annotations

import random
import sqlite3
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

FIRST = ["Anna", "Ben", "Clara", "David", "Eva", "Felix", "Greta", "Hans", "Ida", "Jonas", "Karla", "Lukas"]
LAST = ["Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz", "Hoffmann"]


def generate(path: Path, n: int, seed: int = 7) -> None:
    rnd = random.Random(seed)
    path.unlink(missing_ok=True)
    db = sqlite3.connect(path)
    db.executescript(
        """
        PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;
        CREATE TABLE customers (id INTEGER PRIMARY KEY, first_name TEXT, last_name TEXT, erp_no TEXT,
                                country TEXT, updated_at TIMESTAMP NOT NULL);
        CREATE TABLE contact (id INTEGER PRIMARY KEY, party_id INTEGER NOT NULL, kind TEXT NOT NULL,
                              value TEXT NOT NULL, is_primary INTEGER NOT NULL DEFAULT 1);
        """
    )
    base = datetime(2024, 1, 1, tzinfo=UTC)
    batch: list[tuple] = []
    contacts: list[tuple] = []
    cid = 0
    for i in range(1, n + 1):
        stamp = (base + timedelta(seconds=i // 3)).strftime("%Y-%m-%d %H:%M:%S.%f")  # 3 rows share a stamp
        first, last = rnd.choice(FIRST), rnd.choice(LAST)
        batch.append((i, first, last, f"K{i:08d}", "DE", stamp))
        shared = i > 20 and rnd.random() < 0.05
        email_no = i - rnd.randint(1, 20) if shared else i
        email = f"{first}.{last}.{email_no}@Example.com" if not shared else f"x.{email_no}@example.com"
        if not shared and rnd.random() < 0.5:
            email = email.lower()
        number = 30_000_000 + i
        phone = f"0{number // 10_000_000}{number % 10_000_000:07d}" if i % 2 else f"+49 {number}"
        cid += 2
        contacts.append((cid - 1, i, "email", email, 1))
        contacts.append((cid, i, "phone", phone, 1))
        if len(batch) >= 50_000:
            db.executemany("INSERT INTO customers VALUES (?,?,?,?,?,?)", batch)
            db.executemany("INSERT INTO contact VALUES (?,?,?,?,?)", contacts)
            batch.clear()
            contacts.clear()
    db.executemany("INSERT INTO customers VALUES (?,?,?,?,?,?)", batch)
    db.executemany("INSERT INTO contact VALUES (?,?,?,?,?)", contacts)
    db.executescript(
        "CREATE INDEX ix_customers_updated ON customers (updated_at, id);"
        "CREATE INDEX ix_contact_party ON contact (party_id, kind);"
    )
    db.commit()
    db.close()


if __name__ == "__main__":
    generate(Path(sys.argv[1]), int(sys.argv[2]))
