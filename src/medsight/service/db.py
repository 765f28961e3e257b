"""The service's database: tables, engine and sessions.

SQLite is the embedded default (one file, WAL journal, ``BEGIN IMMEDIATE`` transactions so
that several threads and processes never deadlock on a lock upgrade). PostgreSQL is chosen
by URL; jobs are then claimed with ``SELECT ... FOR UPDATE SKIP LOCKED`` so several workers,
on several machines, share one queue. Times are epoch seconds (float) in every table, so
latencies are simple differences and both databases store them alike.

Patient identifiers are stored here (the dashboard and timelines need them) and nowhere else:
never in application logs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

__all__ = ["Base", "Instance", "Series", "Job", "Result", "ResultFinding", "ResultOutput", "Alert", "Suggestion",
           "ResponseAssessment", "DriftState", "DriftSnapshot", "AuditEvent", "KeyValue", "BatchItem", "Database",
           "now"]


def now() -> float:
    """Wall-clock time in epoch seconds (what every ``*_at`` column holds)."""
    return time.time()


class Base(DeclarativeBase):
    pass


class Instance(Base):
    """One received DICOM instance (idempotent by SOPInstanceUID)."""

    __tablename__ = "instances"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sop_uid: Mapped[str] = mapped_column(String(64), unique=True)
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    series_uid: Mapped[str] = mapped_column(String(64), index=True)
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    patient_id: Mapped[str | None] = mapped_column(String(64), index=True)
    modality: Mapped[str] = mapped_column(String(16))
    body_part: Mapped[str | None] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(80))  # "dicom:AET", "http:user", "stow:user", "catchup:orthanc"
    received_at: Mapped[float] = mapped_column(Float, default=now)


class Series(Base):
    """A series being received; complete once no instance came for ``complete_after_s``."""

    __tablename__ = "series"
    series_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    patient_id: Mapped[str | None] = mapped_column(String(64))
    patient_name: Mapped[str | None] = mapped_column(String(128))
    modality: Mapped[str] = mapped_column(String(16))
    body_part: Mapped[str | None] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(String(128))
    study_date: Mapped[str | None] = mapped_column(String(16))
    n_instances: Mapped[int] = mapped_column(Integer, default=0)
    first_at: Mapped[float] = mapped_column(Float, default=now)
    last_at: Mapped[float] = mapped_column(Float, default=now)
    status: Mapped[str] = mapped_column(String(16), default="receiving")  # receiving | complete
    outcome: Mapped[str | None] = mapped_column(String(160))  # "no model routed", "processed", ...
    completed_at: Mapped[float | None] = mapped_column(Float)


class Job(Base):
    """A unit of work in the durable queue (delivered at least once, processed idempotently).

    kinds: ``instance`` (2D models on one instance), ``series`` (a complete series: 3D
    models, or recording that none is routed), ``send`` (result objects to the PACS),
    ``webhook`` (one alert to the webhook), ``response`` (a patient's serial studies),
    ``batch`` (a chunk of a ``medsight batch --db`` run, :mod:`medsight.service.batch_runs`).
    """

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(200), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|running|done|failed
    priority: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    crashes: Mapped[int] = mapped_column(Integer, default=0)  # times its worker died holding it (a suspect if > 0)
    available_at: Mapped[float] = mapped_column(Float, default=now)
    lease_until: Mapped[float | None] = mapped_column(Float)
    worker: Mapped[str | None] = mapped_column(String(80))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    finished_at: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (Index("ix_jobs_claim", "status", "available_at"),)


class Result(Base):
    """One model's output on one instance or series (unique per input, model and version)."""

    __tablename__ = "results"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    status: Mapped[str] = mapped_column(String(16))  # ok | error
    model: Mapped[str] = mapped_column(String(80))
    model_version: Mapped[str] = mapped_column(String(32))
    weights_sha256: Mapped[str | None] = mapped_column(String(64))
    input_sha256: Mapped[str | None] = mapped_column(String(64))
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    series_uid: Mapped[str] = mapped_column(String(64), index=True)
    sop_uid: Mapped[str | None] = mapped_column(String(64), index=True)
    patient_id: Mapped[str | None] = mapped_column(String(64), index=True)
    label: Mapped[str | None] = mapped_column(String(80))
    score: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    positive: Mapped[bool | None] = mapped_column(Boolean)
    outputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    timings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    overlay_path: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[float | None] = mapped_column(Float)  # when its input arrived
    created_at: Mapped[float] = mapped_column(Float, default=now)
    source: Mapped[str | None] = mapped_column(String(80))  # its input's sender ("dicom:AET"): drift windows
    #: What the result found, in the order the result listed it (loaded with the result).
    findings: Mapped[list[ResultFinding]] = relationship(order_by="ResultFinding.id", lazy="selectin",
                                                          viewonly=True)

    __table_args__ = (Index("ix_results_drift", "model", "source", "id"),)


class ResultFinding(Base):
    """One finding of a result (:meth:`medsight.tasks.results.Result.findings`), stored with
    the result: what alert rules and the SR read. A result may hold several findings of one
    name, one per lesion (``lesion_id``), e.g. several nodules of one study.

    ``region`` is where the finding is in patient mm (LPS): ``{"center_mm": [x, y, z],
    "size_mm": [...] or null}``, or null when the task does not locate it.
    """

    __tablename__ = "findings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("results.id"), index=True)
    name: Mapped[str] = mapped_column(String(120), index=True)  # volume_ml_Anterior, nodule_diameter_mm, ...
    title: Mapped[str | None] = mapped_column(String(64))  # what a report shows
    value: Mapped[float | None] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(String(32), default="1")  # UCUM
    text: Mapped[str | None] = mapped_column(String(160))  # a categorical finding (the decision)
    lesion_id: Mapped[str | None] = mapped_column(String(64))
    region: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    @classmethod
    def of(cls, result_id: int, finding: Any) -> ResultFinding:
        """The row of a :class:`~medsight.tasks.results.Finding`."""
        return cls(result_id=result_id, name=finding.name[:120], title=None if finding.title is None
                   else finding.title[:64], value=finding.value, unit=finding.unit[:32],
                   text=None if finding.text is None else str(finding.text)[:160],
                   lesion_id=finding.lesion_id, region=None if finding.region is None else finding.region.to_dict())

    def to_finding(self) -> Any:
        """The :class:`~medsight.tasks.results.Finding` this row holds."""
        from medsight.tasks.results import Finding, Region

        region = None
        if self.region:
            size = self.region.get("size_mm")
            region = Region(tuple(self.region["center_mm"]), None if size is None else tuple(size))
        return Finding(self.name, self.value, self.unit, self.text, self.title, self.lesion_id, region)


class ResultOutput(Base):
    """A DICOM object MedSight built from a result, to one destination (SR, SC, SEG).

    ``status``: ``pending`` (not tried yet), ``retrying`` (tried, not confirmed; ``attempts``
    and ``last_error`` say why), ``sent`` (the destination confirmed it: C-STORE success or a
    STOW-RS answer listing no failure; ``sent_at`` is then set) or ``failed`` (given up after
    ``outputs.retry_for_s``; retried again when the destination answers).
    """

    __tablename__ = "result_outputs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("results.id"), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    sop_uid: Mapped[str] = mapped_column(String(64), index=True)
    series_uid: Mapped[str] = mapped_column(String(64))
    destination: Mapped[str] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(16))  # pending | retrying | sent | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(300))  # scrubbed: our words, no header values
    updated_at: Mapped[float | None] = mapped_column(Float)
    sent_at: Mapped[float | None] = mapped_column(Float)  # set only once the destination confirmed it

    __table_args__ = (UniqueConstraint("sop_uid", "destination", name="uq_output_dest"),)


class Alert(Base):
    """A rule that fired on a result (unique per result, rule and lesion: a ``nodule`` rule
    raises one alert per nodule, ``lesion_id`` naming it), or a response assessment whose latest
    time point is in ``response.alert_on`` (``result_id`` null, ``assessment_id`` naming the
    time point's row)."""

    __tablename__ = "alerts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    result_id: Mapped[int | None] = mapped_column(ForeignKey("results.id"), index=True)
    assessment_id: Mapped[int | None] = mapped_column(ForeignKey("response_assessments.id"))
    rule: Mapped[str] = mapped_column(String(80))
    lesion_id: Mapped[str | None] = mapped_column(String(64))
    priority: Mapped[str] = mapped_column(String(16))
    rank: Mapped[int] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(Text)
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    patient_id: Mapped[str | None] = mapped_column(String(64))
    webhook_status: Mapped[str] = mapped_column(String(16), default="none")  # none|pending|retrying|sent|failed
    webhook_attempts: Mapped[int] = mapped_column(Integer, default=0)
    webhook_error: Mapped[str | None] = mapped_column(String(300))  # the last failure, scrubbed
    acknowledged_by: Mapped[str | None] = mapped_column(String(80))
    created_at: Mapped[float] = mapped_column(Float, default=now)


class Suggestion(Base):
    """A treatment suggestion of the monitoring policy, with its reasons (auditable)."""

    __tablename__ = "suggestions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("results.id"), unique=True)
    patient_id: Mapped[str | None] = mapped_column(String(64), index=True)
    suggestion: Mapped[str] = mapped_column(String(160))
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    policy: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    trend: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[float] = mapped_column(Float, default=now)


class ResponseAssessment(Base):
    """One time point of a patient's response assessment (:func:`medsight.response.track_studies`
    over the patient's stored studies).

    Each assessment (``run``: a hash of its inputs, criteria, policy and versions) writes one row
    per time point, in date order (``position`` 0 is the baseline); the rows of the patient's
    current assessment have ``superseded_at`` null, and a new study (of any date) supersedes them
    with a new run, so the history of what was said stays. An assessment that could not be made
    (two studies at the same time, a mask off its image) is one row with ``status`` error.
    """

    __tablename__ = "response_assessments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)  # run|study_uid
    run: Mapped[str] = mapped_column(String(64), index=True)
    patient_id: Mapped[str | None] = mapped_column(String(64), index=True)
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16))  # ok | error
    study_date: Mapped[str | None] = mapped_column(String(16))  # YYYY-MM-DD
    acquired: Mapped[str | None] = mapped_column(String(32))  # ISO date and time of the study
    position: Mapped[int] = mapped_column(Integer, default=0)  # 0: baseline
    n_timepoints: Mapped[int] = mapped_column(Integer, default=0)
    volume_ml: Mapped[float | None] = mapped_column(Float)
    longest_diameter_mm: Mapped[float | None] = mapped_column(Float)
    perpendicular_diameter_mm: Mapped[float | None] = mapped_column(Float)
    criteria_value: Mapped[float | None] = mapped_column(Float)  # in the criteria's unit
    n_lesions: Mapped[int | None] = mapped_column(Integer)
    category: Mapped[str | None] = mapped_column(String(32))  # None: baseline only, not evaluable, error
    suggestion: Mapped[str | None] = mapped_column(String(160))
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    criteria: Mapped[str] = mapped_column(String(64))
    policy: Mapped[str] = mapped_column(String(64))
    assessment: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # the deciding numbers (Assessment)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # the time point's lesions, mask series
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # studies, series and instance counts
    versions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # medsight, criteria, policy, model
    plot_path: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    superseded_at: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (Index("ix_response_current", "patient_id", "superseded_at"),)


class DriftState(Base):
    """The drift monitor's state for one model and sender (:mod:`medsight.service.drift`):
    ``status`` ``ok`` or ``drift`` (an episode, which raised one alert, is under way since
    ``since``), and the last check's numbers."""

    __tablename__ = "drift_state"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(80))
    source: Mapped[str] = mapped_column(String(80))
    model_version: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="ok")  # ok | drift
    since: Mapped[float | None] = mapped_column(Float)
    episodes: Mapped[int] = mapped_column(Integer, default=0)
    checks: Mapped[int] = mapped_column(Integer, default=0)
    last: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # the last check (DriftCheck.to_dict)
    updated_at: Mapped[float] = mapped_column(Float, default=now)

    __table_args__ = (UniqueConstraint("model", "source", name="uq_drift_model_source"),)


class DriftSnapshot(Base):
    """One drift check kept for the trend: every ``drift.snapshot_every`` checks and at each
    change of state. ``stats`` holds per statistic its p-value, PSI or rate, and whether it moved."""

    __tablename__ = "drift_snapshots"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(80))
    source: Mapped[str] = mapped_column(String(80))
    result_id: Mapped[int | None] = mapped_column(Integer)  # the result whose storing ran the check
    drift: Mapped[bool] = mapped_column(Boolean)
    n: Mapped[int] = mapped_column(Integer)
    stats: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    at: Mapped[float] = mapped_column(Float, default=now)

    __table_args__ = (Index("ix_drift_snapshots", "model", "source", "at"),)


class AuditEvent(Base):
    """Who or what did what to which object. No patient identifiers in ``details``."""

    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[float] = mapped_column(Float, default=now, index=True)
    actor: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(32), index=True)
    object_type: Mapped[str] = mapped_column(String(16))
    object_id: Mapped[str] = mapped_column(String(200), index=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class KeyValue(Base):
    """Small persistent state (the catch-up cursor)."""

    __tablename__ = "kv"
    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class BatchItem(Base):
    """One input's result in a ``medsight batch --db`` run (exactly one per run and position)."""

    __tablename__ = "batch_items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run: Mapped[str] = mapped_column(String(64))
    item: Mapped[int] = mapped_column(Integer)  # the input's position in the run's list
    input: Mapped[str] = mapped_column(Text)
    ok: Mapped[bool] = mapped_column(Boolean)
    row: Mapped[dict[str, Any]] = mapped_column(JSON)  # the result line, as the file mode writes it
    worker: Mapped[str | None] = mapped_column(String(80))
    created_at: Mapped[float] = mapped_column(Float, default=now)

    __table_args__ = (UniqueConstraint("run", "item", name="uq_batch_items_run_item"),)


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # writers take the lock up front (no deadlock on a read-to-write upgrade); readers do not
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("medsight_read") else "BEGIN IMMEDIATE")


class Database:
    """Engine plus a session factory for one database URL.

    Args:
        url: SQLAlchemy URL (``sqlite:///path`` or ``postgresql+psycopg://...``).
        echo: log SQL (never use in production: statements carry values).
    """

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        # hide_parameters: an error's text never carries a statement's values (a PatientID...)
        kwargs: dict[str, Any] = {"echo": echo, "future": True, "hide_parameters": True}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 60}
        else:
            kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
        self.engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            _sqlite_pragmas(self.engine)
        self._factory = sessionmaker(self.engine, expire_on_commit=False)
        self._read_factory = sessionmaker(self.engine.execution_options(medsight_read=True), expire_on_commit=False)

    def create_all(self) -> None:
        """Create missing tables (safe to call from several processes at once)."""
        from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

        for _ in range(5):
            try:
                Base.metadata.create_all(self.engine)
                _add_missing_columns(self.engine)
                return
            except (IntegrityError, ProgrammingError, OperationalError):  # a concurrent creator won
                time.sleep(0.2)
        Base.metadata.create_all(self.engine)
        _add_missing_columns(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed on success, rolled back on any exception."""
        s = self._factory()
        try:
            yield s
            s.commit()
        except BaseException:
            s.rollback()
            raise
        finally:
            s.close()

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only transaction (on SQLite it does not take the write lock)."""
        s = self._read_factory()
        try:
            yield s
        finally:
            s.close()  # ends the transaction; loaded objects stay readable (detached)

    def dispose(self) -> None:
        self.engine.dispose()


def _add_missing_columns(engine: Engine) -> None:
    """Add the columns a database made by an older MedSight lacks (the schema only grows).

    Each missing column is added with its scalar default as the SQL default (or as nullable
    when it has none), so existing rows stay valid on SQLite and PostgreSQL. Dropping or
    changing columns is never done here.
    """
    from sqlalchemy import inspect, literal

    insp = inspect(engine)
    todo = []
    for table in Base.metadata.sorted_tables:
        have = {c["name"] for c in insp.get_columns(table.name)}
        for col in table.columns:
            if col.name in have:
                continue
            ddl = f"ALTER TABLE {table.name} ADD COLUMN {col.name} {col.type.compile(engine.dialect)}"
            if col.default is not None and col.default.is_scalar:
                ddl += " DEFAULT " + str(literal(col.default.arg, col.type).compile(
                    dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
            todo.append(ddl)
    if todo:
        with engine.begin() as conn:
            for ddl in todo:
                conn.exec_driver_sql(ddl)
    for table in Base.metadata.sorted_tables:  # columns that became nullable (result_outputs.sent_at)
        db_cols = {c["name"]: c for c in insp.get_columns(table.name)}
        relax = [c.name for c in table.columns if c.nullable and not c.primary_key and c.name in db_cols
                 and not db_cols[c.name]["nullable"]]
        if relax and engine.dialect.name == "postgresql":
            with engine.begin() as conn:
                for name in relax:
                    conn.exec_driver_sql(f"ALTER TABLE {table.name} ALTER COLUMN {name} DROP NOT NULL")
        elif relax:
            _rebuild_sqlite_table(engine, table, [i["name"] for i in insp.get_indexes(table.name)])


def _rebuild_sqlite_table(engine: Engine, table: Any, indexes: list[str]) -> None:
    """SQLite cannot change a column's constraints: copy the table into one made from the model
    (the procedure of https://www.sqlite.org/lang_altertable.html, section 7)."""
    from sqlalchemy.schema import CreateIndex, CreateTable

    old = f"_old_{table.name}"
    cols = ", ".join(c.name for c in table.columns)
    raw = engine.raw_connection()  # the pragma must run outside a transaction, so plain DB-API here
    try:
        cur = raw.cursor()
        cur.execute("PRAGMA foreign_keys=OFF")
        cur.execute("BEGIN IMMEDIATE")
        for name in indexes:
            cur.execute(f"DROP INDEX IF EXISTS {name}")
        cur.execute(f"ALTER TABLE {table.name} RENAME TO {old}")
        cur.execute(str(CreateTable(table).compile(engine)))
        for index in table.indexes:
            cur.execute(str(CreateIndex(index).compile(engine)))
        cur.execute(f"INSERT INTO {table.name} ({cols}) SELECT {cols} FROM {old}")
        cur.execute(f"DROP TABLE {old}")
        cur.execute("COMMIT")
        cur.execute("PRAGMA foreign_keys=ON")
    except BaseException:
        raw.rollback()
        raise
    finally:
        raw.close()
