"""One settings tree for the whole product, built once at the edge.

Entry points (the CLI, or an Airflow task from its Connections) build :class:`Settings` and
pass it down; library code never reads ``os.environ``. From the environment every field is
``DIPRO_<SECTION>__<FIELD>`` (for example ``DIPRO_FHIR__BASE_URL``,
``DIPRO_FHIR__PASSWORD``, ``DIPRO_STORE__URL``). Credentials are ``SecretStr`` so they never
show in a ``repr`` or a log line.

Each source has two real implementations: a server (``base_url``) or local files
(``ndjson_dir`` / ``folder``), which is what the embedded demo uses. With nothing configured,
:func:`embedded_settings` points everything at a working folder on this machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from dipro_fhir.core.errors import ConfigError

AuthKind = Literal["none", "basic", "bearer", "smart"]


class FhirSettings(BaseModel):
    """Where FHIR resources come from: a FHIR R4 server, or a folder of NDJSON files."""

    base_url: str | None = None
    ndjson_dir: Path | None = None
    auth: AuthKind = "none"
    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    smart_client_id: str | None = None
    smart_token_url: str | None = None
    smart_private_key_path: Path | None = None
    smart_key_id: str | None = None
    smart_scope: str = "system/*.read system/RiskAssessment.write"
    timeout_s: float = 30.0
    max_retries: int = 5
    verify_tls: bool = True
    page_size: int = Field(default=200, ge=1, le=1000)
    # A server behind a reverse proxy may put its internal base into ``next`` links: name
    # it here and such links are rewritten onto ``base_url`` (default: same origin only).
    next_link_base: str | None = None
    # Fewer REST requests (docs/extraction.md):
    # a chunk's Encounters, windowed Observations and ImagingStudies in batched searches
    # (per-patient searches on servers that refuse them). ``auto`` (measured 4.4x faster end
    # to end at 1,000 patients on HAPI): batched when the server's CapabilityStatement lists
    # what they need; ``on`` / ``off`` (``true`` / ``false`` are read as these).
    batched_search: Literal["auto", "on", "off"] = "auto"
    batch_size: int = Field(default=50, ge=1, le=200)

    @field_validator("batched_search", mode="before")
    @classmethod
    def _on_off(cls, value: object) -> object:
        words = {"true": "on", "1": "on", "yes": "on", "false": "off", "0": "off", "no": "off"}
        if isinstance(value, bool):
            return "on" if value else "off"
        return words.get(str(value).strip().lower(), value)

    # Bulk Data $export (extraction_mode bulk): the Group to export (None: the plan writes
    # one of the cohort), or a system-level export (a sandbox server of one cohort only).
    bulk_group_id: str | None = None
    bulk_level: Literal["group", "system"] = "group"
    bulk_type_filter: bool = True
    bulk_poll_max_s: float = Field(default=60.0, gt=0)
    bulk_timeout_s: float = Field(default=6 * 3600.0, gt=0)
    # A status endpoint unreachable this long fails the export (a server that is down).
    bulk_unreachable_s: float = Field(default=1800.0, gt=0)

    @model_validator(mode="after")
    def _one_source(self) -> FhirSettings:
        if self.base_url and self.ndjson_dir:
            raise ValueError("set either fhir.base_url or fhir.ndjson_dir, not both")
        return self


class DicomWebSettings(BaseModel):
    """Where images come from: a DICOMweb server (QIDO/WADO-RS), or a folder of DICOM files."""

    base_url: str | None = None
    folder: Path | None = None
    auth: AuthKind = "none"
    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    timeout_s: float = 60.0
    max_retries: int = 5
    verify_tls: bool = True

    @model_validator(mode="after")
    def _one_source(self) -> DicomWebSettings:
        if self.base_url and self.folder:
            raise ValueError("set either dicomweb.base_url or dicomweb.folder, not both")
        return self


class StoreSettings(BaseModel):
    """The results database (SQLAlchemy URL). PostgreSQL in production, SQLite for the demo."""

    url: SecretStr = SecretStr("sqlite:///var/dipro-results.sqlite")
    #: Seconds a store operation is repeated while the database is unreachable (a restart,
    #: a failover) before the step fails as retriable; 0: no retries.
    retry_s: float = Field(default=60.0, ge=0)


class ModelSettings(BaseModel):
    """The checkpoint to score with, how to run it, and the site's minimums for its
    validation record (the gate, :mod:`dipro_fhir.scoring.gate`).

    A checkpoint scores only when its model card holds figures measured on held-out
    patients, at least ``min_validation_patients`` of them, that beat the training prevalence
    (mortality and progression AUROC intervals above 0.5, a Brier score under the
    prevalence's, a length-of-stay accuracy above the commonest bin's) and meet these
    minimums. Env: ``DIPRO_MODEL__MIN_MORTALITY_AUROC`` and so on.

    ``torch_threads``: torch's intra-op threads in scoring, region placement and training;
    unset, the worker's share of the CPUs (:mod:`dipro_fhir.core.threads`).
    """

    checkpoint: Path = Path("var/checkpoints/demo")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = Field(default=16, ge=1)
    torch_threads: int | None = Field(default=None, ge=1)
    min_validation_patients: int = Field(default=100, ge=1)
    min_mortality_auroc: float = Field(default=0.7, ge=0.0, le=1.0)
    max_mortality_ece: float = Field(default=0.1, ge=0.0, le=1.0)
    min_los_accuracy: float = Field(default=0.0, ge=0.0, le=1.0)
    min_progression_auroc: float = Field(default=0.6, ge=0.0, le=1.0)


class CacheSettings(BaseModel):
    """The shared CXR feature cache (:mod:`dipro_fhir.store.feature_cache`).

    ``backend``: ``table`` keeps entries in the results database's ``feature_cache`` table;
    ``fsspec`` keeps the blobs under ``url`` (a folder or ``s3://bucket/prefix``) and only the
    index in the table. ``max_bytes`` bounds the stored blobs (least recently used go first):
    the default 8 GiB holds about 200,000 CXRs of the paper's ResNet-50 (40 KiB each) or
    6 million of the small default network.
    """

    enabled: bool = True
    backend: Literal["table", "fsspec"] = "table"
    url: str | None = None
    max_bytes: int = Field(default=8 << 30, ge=0)

    @model_validator(mode="after")
    def _url_for_fsspec(self) -> CacheSettings:
        if self.backend == "fsspec" and not self.url:
            raise ValueError("cache.backend=fsspec needs cache.url")
        return self


class WriteBackSettings(BaseModel):
    """Where RiskAssessments go and how they are expressed.

    ``probability_scale``: the FHIR R4 element comment on ``RiskAssessment.prediction.
    probability[x]`` says decimal probabilities are percentages (invariant ras-2: <= 100),
    while HL7's own examples use fractions. We default to the specification.

    ``shadow``: score and write the results database only, never a RiskAssessment (whatever
    ``target`` says), so a site can run a model silently and evaluate it on its own outcomes
    before go-live; the run is recorded with mode ``shadow``.
    """

    target: Literal["fhir", "ndjson", "none"] = "fhir"
    shadow: bool = False
    ndjson_dir: Path = Path("var/results")
    transaction_size: int = Field(default=100, ge=1, le=1000)
    probability_scale: Literal["percent", "fraction"] = "percent"
    moderate_risk_at: float = Field(default=0.2, ge=0.0, le=1.0)
    high_risk_at: float = Field(default=0.5, ge=0.0, le=1.0)
    max_basis: int = Field(default=50, ge=0)
    source_references: Literal["auto", "literal", "identifier"] = "auto"


class AuditSettings(BaseModel):
    """BALP-style AuditEvents of each run's FHIR requests (:mod:`dipro_fhir.run.audit`).

    Off by default: hospital FHIR servers usually audit every request themselves, and a
    client-side copy doubles load and records. On in the sandbox (HAPI does not audit).
    """

    enabled: bool = False


class RunSettings(BaseModel):
    """How a scoring run plans, extracts and tolerates failures.

    ``staging_dir`` is a local folder or an fsspec URL (``s3://bucket/prefix``) shared by the
    workers; chunk files are written there atomically and removed after a successful run.

    ``availability`` decides when a resource counts as known (no look-ahead): ``strict``
    takes the later of ``issued`` and ``meta.lastUpdated``; ``issued`` prefers ``issued``,
    for data loaded into a server after the fact, whose ``lastUpdated`` is the load time.
    """

    window_hours: int = Field(default=48, ge=1)
    chunk_size: int = Field(default=50, ge=1)
    max_failed_share: float = Field(default=0.2, ge=0.0, le=1.0)
    site_timezone: str = "UTC"
    availability: Literal["strict", "issued"] = "strict"
    staging_dir: str = "var/staging"
    # The salt of patient tags in logs: secret and per site. Unset, each process draws a
    # random one (tags then correlate lines of one task only); the demo writes one to its
    # working folder.
    log_salt: SecretStr | None = None
    # A chunk fails whole (dependencies down) when this many patients in a row, and every
    # patient so far, failed with the source unavailable; else failures stay per patient.
    outage_after: int = Field(default=5, ge=1)
    # A run still "running" with no heartbeat for this long is stale (killed in flight).
    stale_after_s: float = Field(default=6 * 3600.0, gt=0)
    extraction_mode: Literal["rest", "bulk"] = "rest"


# --- Site data: code maps and cohort rules -------------------------------------------------
# (kept together in one block; see docs/site-data.md)


class MappingSettings(BaseModel):
    """Which code maps (FHIR ConceptMaps) a run reads codes through.

    The shipped maps come first (``builtin_maps``, in that order), then every ``*.json``
    file of ``concept_map_dir`` (a ConceptMap, or a Bundle of them; sorted by file name),
    then the maps ``concept_map_urls`` names, fetched from the FHIR server by canonical URL
    (``ConceptMap?url=``). A later map wins for the same source code, so a site overrides
    the shipped maps. From the environment the lists are JSON:
    ``DIPRO_MAPPING__CONCEPT_MAP_URLS='["https://hospital.example.org/ConceptMap/lab"]'``.
    """

    builtin_maps: tuple[Literal["loinc", "mimic-iv", "discharge-disposition"], ...] = (
        "loinc",
        "mimic-iv",
        "discharge-disposition",
    )
    concept_map_dir: Path | None = None
    concept_map_urls: tuple[str, ...] = ()


class CohortSettings(BaseModel):
    """Which patients an ``active`` run scores (:mod:`dipro_fhir.fhir.cohort`).

    ``rule``: ``class`` (encounters under way whose ``Encounter.class`` is one of
    ``classes``, HL7 v3 ActCode; local classes through a ConceptMap to v3 ActCode),
    ``location`` (encounters under way in a Location whose ``type`` or ``physicalType``
    matches one of ``icu_location_types``, tokens ``[system|]code``, or, for a Location
    without a ``type``, whose name or alias matches one of ``icu_location_names``, regular
    expressions, any case), ``group`` (the members of the FHIR
    Group ``group_id``) or ``list`` (the entries of the FHIR List ``list_id``: Patients or
    Encounters). The default is the rule of earlier releases.
    """

    rule: Literal["class", "location", "group", "list"] = "class"
    classes: tuple[str, ...] = ("IMP", "ACUTE", "ICU")
    icu_location_types: tuple[str, ...] = ("ICU",)
    icu_location_names: tuple[str, ...] = (r"intensive care", r"critical care", r"\bICU\b")
    group_id: str | None = None
    list_id: str | None = None

    @model_validator(mode="after")
    def _named(self) -> CohortSettings:
        if self.rule == "group" and not self.group_id:
            raise ValueError("cohort.rule=group needs cohort.group_id")
        if self.rule == "list" and not self.list_id:
            raise ValueError("cohort.rule=list needs cohort.list_id")
        return self


class ImagingSettings(BaseModel):
    """How regions are placed on the radiographs (issue 11).

    ``locator``: ``atlas`` (default: the shipped atlas of annotated real films),
    ``geometric`` (dependency-free; exact on the synthetic films, which the demo, the sandbox
    and the tests therefore pin with :data:`SYNTHETIC_LOCATOR`), ``trained`` (the shipped
    small network), ``module:factory``, an atlas ``.npz``, or a TorchScript (``.pt``/``.ts``)
    / ONNX (``.onnx``) file with the contract of :mod:`dipro_fhir.imaging.locators`. Env:
    ``DIPRO_IMAGING__LOCATOR``.
    """

    locator: str = "atlas"


#: The locator of the synthetic world: its films are drawn with the lung fields the geometric
#: locator measures, in that locator's region convention (the atlas follows annotations of
#: real films and reaches IoU 0.54 there).
SYNTHETIC_LOCATOR = "geometric"


# --- end of the site-data block --------------------------------------------------------------


class LimitSettings(BaseModel):
    """Input limits (:mod:`dipro_fhir.core.limits`); a breach is a data problem, never a crash."""

    max_json_depth: int = Field(default=100, ge=8)
    max_resource_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    max_response_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    max_image_pixels: int = Field(default=40_000_000, ge=256)
    max_image_bytes: int = Field(default=200 * 1024 * 1024, ge=1024)


# --- end of the limits block --------------------------------------------------------------


class CdsSettings(BaseModel):
    """The CDS Hooks ``patient-view`` service (``dipro-fhir cds-hooks serve``, docs/cds-hooks.md).

    ``patient_view_url``: the cards' link to the read-only patient view of the DiPro page in
    the Airflow UI, a template of ``{ui_base}`` and ``{patient_id}``. ``smart_launch_url``:
    the launch URL of a SMART app the EHR may launch from a card (unset: no SMART link).
    ``max_age_hours``: a score with an older as-of time is not shown. ``trusted_clients``:
    issuer -> JWK Set URL of each EHR whose signed JWT the service accepts (CDS Hooks 2.0
    "Trusting CDS Clients"); empty, calls are not authenticated, which ``serve`` allows on a
    loopback address only unless ``allow_unauthenticated``. ``public_base``: the base URL
    the EHR calls, when a proxy stands in front (the JWT's ``aud``; default: as the request
    arrived). ``cors_origins``: browser origins allowed to call (browser-based EHRs).
    """

    ui_base: str = "http://127.0.0.1:8080"
    patient_view_url: str = "{ui_base}/dipro/patients/{patient_id}"
    smart_launch_url: str | None = None
    max_age_hours: float = Field(default=36.0, gt=0)
    trusted_clients: dict[str, str] = Field(default_factory=dict)
    allow_unauthenticated: bool = False
    public_base: str | None = None
    cors_origins: tuple[str, ...] = ()

    @field_validator("patient_view_url")
    @classmethod
    def _known_placeholders(cls, template: str) -> str:
        try:
            template.format(ui_base="u", patient_id="p")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError("may name only {ui_base} and {patient_id}") from exc
        return template


class MonitorSettings(BaseModel):
    """How the monitor judges a model each night (:mod:`dipro_fhir.monitoring`, issue 25).

    Windows: every night, the last ``1``, ``7`` and ``30`` days of nightly scores
    (``windows_days``). A performance figure is judged only in a window with at least
    ``min_outcomes`` stays of known outcome (``min_events`` deaths and as many survivors),
    a subgroup gap only when the group and everyone else each have ``min_group_outcomes`` and
    ``min_events``. An alert needs the bootstrap interval past the threshold, not only the
    point: a small window's noise never raises one.

    * calibration: expected calibration error above ``max_ece``;
    * discrimination: mortality AUROC below ``min_auroc``;
    * subgroup gap: a group's AUROC ``max_subgroup_gap`` or more below everyone else's;
    * length of stay: macro-F1 over the ``LOS_BINS`` below ``min_los_macro_f1``, and
      progression: AUROC over the coded findings below ``min_progression_auroc`` (both 0,
      off, by default: a site sets them from its own validation figures), in a window with
      ``min_outcomes`` stays with that outcome;
    * drift: a variable's coverage moved by ``coverage_change`` or more, its distribution
      or the score distribution by a population stability index of ``max_psi`` or more, the
      share of unmapped Observations or of unusable films up by ``unmapped_change`` /
      ``unusable_change``, or a new unmapped code on ``new_code_observations`` or more
      Observations; each only when a two-sample test agrees at ``drift_alpha`` (shared by all
      tests of a night).

    Reference of the inputs: ``card`` (the model card's, written at training or by
    ``dipro-fhir monitor reference``), ``nights`` (the first ``reference_nights`` nightly runs
    of the model version), or ``auto`` (the card's when it was read as nights read patients,
    else the first nights). Env: ``DIPRO_MONITOR__MAX_ECE`` and so on.

    Pending stays: a stay still open ``pending_horizon_days`` after it began is also counted
    as pending beyond the horizon (its outcome is still not guessed).
    """

    windows_days: tuple[int, ...] = (1, 7, 30)
    resamples: int = Field(default=200, ge=10)
    min_outcomes: int = Field(default=30, ge=2)
    min_group_outcomes: int = Field(default=20, ge=2)
    min_events: int = Field(default=3, ge=1)
    max_ece: float = Field(default=0.1, ge=0.0, le=1.0)
    min_auroc: float = Field(default=0.6, ge=0.0, le=1.0)
    max_subgroup_gap: float = Field(default=0.1, ge=0.0, le=1.0)
    min_los_macro_f1: float = Field(default=0.0, ge=0.0, le=1.0)
    min_progression_auroc: float = Field(default=0.0, ge=0.0, le=1.0)
    pending_horizon_days: float = Field(default=30.0, gt=0.0)
    max_psi: float = Field(default=0.25, ge=0.0)
    coverage_change: float = Field(default=0.2, ge=0.0, le=1.0)
    unmapped_change: float = Field(default=0.1, ge=0.0, le=1.0)
    unusable_change: float = Field(default=0.15, ge=0.0, le=1.0)
    new_code_observations: int = Field(default=50, ge=1)
    drift_alpha: float = Field(default=0.01, gt=0.0, lt=1.0)
    reference: Literal["auto", "card", "nights"] = "auto"
    reference_nights: int = Field(default=7, ge=1)


class Settings(BaseSettings):
    """The whole configuration. Build it once per process, at the entry point."""

    model_config = SettingsConfigDict(
        env_prefix="DIPRO_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    fhir: FhirSettings = FhirSettings()
    dicomweb: DicomWebSettings = DicomWebSettings()
    store: StoreSettings = StoreSettings()
    model: ModelSettings = ModelSettings()
    writeback: WriteBackSettings = WriteBackSettings()
    run: RunSettings = RunSettings()
    cache: CacheSettings = CacheSettings()
    audit: AuditSettings = AuditSettings()
    mapping: MappingSettings = MappingSettings()  # site-data block
    cohort: CohortSettings = CohortSettings()  # site-data block
    limits: LimitSettings = LimitSettings()
    imaging: ImagingSettings = ImagingSettings()
    cds: CdsSettings = CdsSettings()

    monitor: MonitorSettings = MonitorSettings()

    def require_sources(self) -> None:
        """Raise :class:`ConfigError` unless a FHIR and an image source are configured."""
        if not (self.fhir.base_url or self.fhir.ndjson_dir):
            raise ConfigError(
                "no FHIR source: set DIPRO_FHIR__BASE_URL (a FHIR R4 server) or "
                "DIPRO_FHIR__NDJSON_DIR (a folder of NDJSON files)"
            )
        if not (self.dicomweb.base_url or self.dicomweb.folder):
            raise ConfigError(
                "no image source: set DIPRO_DICOMWEB__BASE_URL (a DICOMweb server) or "
                "DIPRO_DICOMWEB__FOLDER (a folder of DICOM files)"
            )


def embedded_settings(workdir: Path) -> Settings:
    """Settings for the embedded default: everything as files and SQLite under ``workdir``."""
    return Settings(
        fhir=FhirSettings(ndjson_dir=workdir / "cohort"),
        dicomweb=DicomWebSettings(folder=workdir / "cohort" / "dicom"),
        store=StoreSettings(url=SecretStr(f"sqlite:///{(workdir / 'results.sqlite').resolve()}")),
        model=ModelSettings(checkpoint=workdir / "checkpoint"),
        writeback=WriteBackSettings(target="ndjson", ndjson_dir=workdir / "results"),
        run=RunSettings(staging_dir=str(workdir / "staging"), log_salt=demo_log_salt(workdir)),
        imaging=ImagingSettings(locator=SYNTHETIC_LOCATOR),
    )


def demo_log_salt(workdir: Path) -> SecretStr:
    """The demo's log salt: drawn once, kept in ``workdir/log-salt`` (readable by its owner)."""
    import secrets

    path = workdir / "log-salt"
    if not path.is_file():
        workdir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(16))
        path.chmod(0o600)
    return SecretStr(path.read_text().strip())


def settings_error(exc: ValidationError) -> ConfigError:
    """One line per bad setting, named as its environment variable, without the value given
    (it may be a secret): what :class:`Settings` raised, as a user reads it."""
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        where = "__".join(str(part) for part in error["loc"] if not isinstance(part, int))
        lines.append(f"setting DIPRO_{where.upper()}: {error['msg']}")
    return ConfigError("; ".join(lines) or "invalid settings")
