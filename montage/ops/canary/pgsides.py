"""The canary's PostgreSQL option (``database: postgres``): both sides on a throwaway primary with a
streaming hot standby (:class:`montage.db.pgtemp.PgCluster`), each side with its own database.

Per side, :func:`side_databases` creates a fresh database on the primary (present on the standby
through replication) and offers its URLs to that side's ``baseline_env`` / ``candidate_env`` as
placeholders (:data:`PLACEHOLDERS`), expanded for that side only.  The side's own database settings
(``MONTAGE_DB__URL`` / ``DATABASE_URL``) point at its primary database; ``montage serve`` migrates it
to head at start-up, exactly as it migrates a side's SQLite file, so the schema comes from the same
path.  The cluster is stopped and its directory removed when the canary ends, also on an error or an
interrupt (the ``with`` block of :func:`montage.ops.canary.collect.collect`).

No PostgreSQL binaries, or a cluster that does not start: :class:`DatabaseUnavailable`, which the
kind and the command line record as an INCONCLUSIVE document (:func:`unavailable_document`) naming
why; never a PASS, and never a fallback to SQLite.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from montage.errors import MontageError, UsageError

POSTGRES = "postgres"
PRIMARY, STANDBY = "{pg_primary}", "{pg_standby}"
PLACEHOLDERS = {
    PRIMARY: "this side's own database on the throwaway primary (postgresql+asyncpg://...)",
    STANDBY: "the same database on the streaming hot standby (read-only): a read replica URL",
}
CLUSTER_HOW = "throwaway PostgreSQL primary + streaming hot standby (montage.db.pgtemp.PgCluster, pg_basebackup -R)"
_PLACEHOLDER = re.compile(r"\{pg_[a-z_]*\}")
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


def mask_url(value: str) -> str:
    """``value`` with the password of every URL in it masked (``scheme://user:***@host``)."""
    return _URL_PASSWORD.sub(r"\1***@", value)


class DatabaseUnavailable(MontageError):
    """The PostgreSQL primary + standby could not be had (no binaries, or it did not start)."""


@dataclass(frozen=True)
class SideDatabase:
    name: str  # the database's name on the primary (and the standby)
    primary: str  # its URL on the primary
    standby: str  # its URL on the standby

    def placeholders(self) -> dict[str, str]:
        return {PRIMARY: self.primary, STANDBY: self.standby}


def placeholders_in(env: Mapping[str, str]) -> list[str]:
    """The ``{pg_...}`` placeholders ``env``'s values name (sorted, unique)."""
    return sorted({m for v in env.values() for m in _PLACEHOLDER.findall(v)})


def check_placeholders(env: Mapping[str, str], where: str, database: str) -> None:
    """A usage error for an unknown placeholder, or for any placeholder without ``database: postgres``."""
    for name in placeholders_in(env):
        if name not in PLACEHOLDERS:
            raise UsageError(
                f"{where}: unknown placeholder {name}; expected one of {', '.join(PLACEHOLDERS)} "
                f"(with database: {POSTGRES})."
            )
        if database != POSTGRES:
            raise UsageError(
                f"{where}: {name} names the canary's PostgreSQL database, but database is {database!r}; "
                f"expected database: {POSTGRES} (--database {POSTGRES}) to start the primary + hot standby."
            )


def expand(env: Mapping[str, str], db: SideDatabase | None) -> dict[str, str]:
    """``env`` with this side's placeholders replaced by its URLs (``db`` None: unchanged)."""
    if db is None:
        return dict(env)
    out = {}
    for key, value in env.items():
        for name, url in db.placeholders().items():
            value = value.replace(name, url)
        out[key] = value
    return out


def routes_to_standby(env: Mapping[str, str]) -> bool:
    """Whether a side's overrides hand it the standby (it is expected to route reads there)."""
    return STANDBY in placeholders_in(env)


def start(bindir: str | None) -> Any:
    """A started :class:`~montage.db.pgtemp.PgCluster` with a standby; :class:`DatabaseUnavailable`
    naming why it could not be had (its partial directory is removed)."""
    from montage.db.pgtemp import PgCluster, find_bindir

    try:
        found = find_bindir(bindir)
    except MontageError as exc:
        raise DatabaseUnavailable(str(exc)) from None
    cluster = PgCluster(found)
    try:
        return cluster.__enter__()  # stops and removes the cluster itself when start() fails
    except MontageError as exc:
        raise DatabaseUnavailable(f"the PostgreSQL primary + hot standby did not start: {exc}") from None


def side_databases(cluster: Any, names: list[str]) -> dict[str, SideDatabase]:
    """One fresh database per side on ``cluster`` (present on the standby before this returns)."""
    out = {}
    for side in names:
        db = cluster.new_database()
        out[side] = SideDatabase(db, cluster.url(db), cluster.url(db, standby=True))
    return out


def record(cluster: Any, dbs: Mapping[str, SideDatabase]) -> dict[str, Any]:
    """The document's ``database`` record: what the sides ran against."""
    version = cluster.psql(cluster.primary_port, "SHOW server_version")
    return {
        "backend": "postgresql",
        "how": CLUSTER_HOW,
        "server_version": version,
        "bindir": str(cluster.bindir),
        "placeholders": dict(PLACEHOLDERS),
        "sides": {
            s: {"database": d.name, **{k.strip("{}"): mask_url(v) for k, v in d.placeholders().items()}}
            for s, d in dbs.items()
        },
    }


def unavailable_document(why: str, *, note: str) -> dict[str, Any]:
    """The ``canary_metrics.json`` of a canary that could not start its PostgreSQL: judged INCONCLUSIVE."""
    return {
        "schema": 3,
        "source": "local",
        "synthetic": True,
        "note": note,
        "database": {"backend": "postgresql", "how": CLUSTER_HOW, "error": why},
        "sides": {},
    }
