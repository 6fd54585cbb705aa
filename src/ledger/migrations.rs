//! Versioned schema migrations, applied in order; `PRAGMA user_version` records the last applied.
//!
//! Each feature adds its own migration when it lands. A migration is never edited once released:
//! add a new one instead.

/// (version, what it adds, SQL). Versions are consecutive from 1.
pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "partners, source records, referrals, import runs, quarantine, audit log",
        r#"
CREATE TABLE partner (
    id                  INTEGER PRIMARY KEY,
    name                TEXT NOT NULL,
    normalized_name     TEXT NOT NULL,
    npi                 TEXT UNIQUE,
    source_type         TEXT,
    -- 'ehr' when the partner is known only from EHR referral-source names, 'config' for an alias.
    origin              TEXT NOT NULL,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL
);
CREATE INDEX partner_normalized_name ON partner(normalized_name);

-- Every way a source system names a partner, and how it was matched.
CREATE TABLE partner_source_record (
    id                  INTEGER PRIMARY KEY,
    partner_id          INTEGER NOT NULL REFERENCES partner(id),
    system              TEXT NOT NULL,
    external_key        TEXT NOT NULL,
    raw_name            TEXT NOT NULL,
    normalized_name     TEXT NOT NULL,
    match_method        TEXT NOT NULL CHECK (match_method = 'npi' OR match_method = 'name' OR match_method = 'alias'
                                   OR match_method = 'new'),
    confidence          REAL NOT NULL,
    first_seen_at       TEXT NOT NULL,
    UNIQUE (system, external_key)
);
CREATE INDEX partner_source_record_partner ON partner_source_record(partner_id);

CREATE TABLE import_run (
    id                  INTEGER PRIMARY KEY,
    file_name           TEXT NOT NULL,
    file_path           TEXT NOT NULL,
    sha256              TEXT NOT NULL,
    size_bytes          INTEGER NOT NULL,
    format              TEXT,
    started_at          TEXT NOT NULL,
    finished_at         TEXT,
    rows                INTEGER NOT NULL DEFAULT 0,
    referrals_new       INTEGER NOT NULL DEFAULT 0,
    referrals_updated   INTEGER NOT NULL DEFAULT 0,
    referrals_unchanged INTEGER NOT NULL DEFAULT 0,
    quarantined         INTEGER NOT NULL DEFAULT 0,
    warnings            INTEGER NOT NULL DEFAULT 0,
    skipped             INTEGER NOT NULL DEFAULT 0,
    -- running | imported | partial (stopped early, rows before kept) | rejected | duplicate
    outcome             TEXT NOT NULL,
    message             TEXT
);
CREATE INDEX import_run_sha256 ON import_run(sha256, outcome);

-- When a referral was first and last changed: the started_at of those import runs.
CREATE TABLE referral (
    id                  INTEGER PRIMARY KEY,
    source_system       TEXT NOT NULL,
    inquiry_id          TEXT NOT NULL,
    direction           TEXT NOT NULL CHECK (direction = 'in' OR direction = 'out'),
    partner_id          INTEGER REFERENCES partner(id),
    parent_inquiry_id   TEXT,
    inquiry_date        TEXT NOT NULL,
    referred_by         TEXT,
    rep                 TEXT,
    payer               TEXT,
    plan_type           TEXT,
    level_of_care_scheme TEXT,
    level_of_care_code  TEXT,
    -- Checks are spelled with OR: an IN list costs an ephemeral table per inserted row.
    disposition         TEXT NOT NULL
        CHECK (disposition = 'admitted' OR disposition = 'not_admitted' OR disposition = 'pending'
               OR disposition = 'referred_out'),
    disposition_reason  TEXT,
    admit_date          TEXT,
    patient_token       TEXT,
    zip3                TEXT,
    -- Provenance (no foreign key: two lookups per row would slow imports for no integrity gain,
    -- since import runs are never deleted).
    first_import_run_id INTEGER NOT NULL,
    last_import_run_id  INTEGER NOT NULL,
    UNIQUE (source_system, inquiry_id, direction)
);
CREATE INDEX referral_partner_date ON referral(partner_id, inquiry_date);

-- Rows and files that could not be stored (severity 'rejected') or were stored with a value
-- dropped (severity 'warning'). Never holds a patient value: location, field and reason only.
CREATE TABLE quarantine (
    id                  INTEGER PRIMARY KEY,
    import_run_id       INTEGER NOT NULL REFERENCES import_run(id),
    file_name           TEXT NOT NULL,
    location            TEXT NOT NULL,
    field               TEXT,
    reason              TEXT NOT NULL,
    severity            TEXT NOT NULL CHECK (severity = 'rejected' OR severity = 'warning'),
    created_at          TEXT NOT NULL
);
CREATE INDEX quarantine_run ON quarantine(import_run_id);

CREATE TABLE audit_log (
    id                  INTEGER PRIMARY KEY,
    at                  TEXT NOT NULL,
    action              TEXT NOT NULL,
    subject             TEXT NOT NULL,
    detail              TEXT NOT NULL
);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
"#,
    ),
    (
        2,
        "CRM records, sync cursors and runs, the task outbox",
        r#"
-- Every record pulled from a CRM, normalized (JSON of the connector's record body). Deleted and
-- merged records are kept and marked, never removed: the history of a partner stays readable.
CREATE TABLE crm_record (
    id                  INTEGER PRIMARY KEY,
    system              TEXT NOT NULL CHECK (system = 'salesforce' OR system = 'hubspot'),
    stream              TEXT NOT NULL,
    external_id         TEXT NOT NULL,
    modified_at         TEXT NOT NULL,
    deleted             INTEGER NOT NULL DEFAULT 0,
    merged_into         TEXT,
    body                TEXT NOT NULL,
    first_sync_run_id   INTEGER NOT NULL,
    last_sync_run_id    INTEGER NOT NULL,
    UNIQUE (system, stream, external_id)
);

-- The compound watermark of each stream: the last (modified-at, id) stored.
CREATE TABLE sync_cursor (
    system              TEXT NOT NULL,
    stream              TEXT NOT NULL,
    modified_at         TEXT NOT NULL,
    external_id         TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    PRIMARY KEY (system, stream)
);

-- One row per connector, stream and run.
CREATE TABLE sync_run (
    id                  INTEGER PRIMARY KEY,
    system              TEXT NOT NULL,
    stream              TEXT NOT NULL,
    kind                TEXT NOT NULL,          -- pull | reconcile | push
    started_at          TEXT NOT NULL,
    finished_at         TEXT,
    outcome             TEXT NOT NULL,          -- running | ok | deferred | failed
    records_read        INTEGER NOT NULL DEFAULT 0,
    records_new         INTEGER NOT NULL DEFAULT 0,
    records_changed     INTEGER NOT NULL DEFAULT 0,
    records_unchanged   INTEGER NOT NULL DEFAULT 0,
    records_deleted     INTEGER NOT NULL DEFAULT 0,
    records_rejected    INTEGER NOT NULL DEFAULT 0,
    api_calls           INTEGER NOT NULL DEFAULT 0,
    watermark_before    TEXT,
    watermark_after     TEXT,
    message             TEXT
);

-- Task intents waiting for, or done with, their CRM. The key is deterministic, so a retry after
-- any failure upserts the same CRM task and never makes a second one.
CREATE TABLE outbox (
    id                  INTEGER PRIMARY KEY,
    system              TEXT NOT NULL,
    key                 TEXT NOT NULL,
    intent              TEXT NOT NULL,          -- JSON of the task intent
    status              TEXT NOT NULL CHECK (status = 'pending' OR status = 'stored' OR status = 'permanent'),
    attempts            INTEGER NOT NULL DEFAULT 0,
    crm_task_id         TEXT,
    last_error_code     TEXT,
    last_error          TEXT,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    UNIQUE (system, key)
);
CREATE INDEX outbox_pending ON outbox(system, status);
"#,
    ),
];
