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
    (
        3,
        "identity links, partner profiles, reps, CRM referrals and activities, health, alerts",
        r#"
-- Source records now link CRM records too, by more methods; the CHECK grows, so the table is
-- rebuilt (SQLite cannot alter a CHECK). Rows keep their ids.
CREATE TABLE partner_source_record_v3 (
    id                  INTEGER PRIMARY KEY,
    partner_id          INTEGER NOT NULL REFERENCES partner(id),
    system              TEXT NOT NULL,
    external_key        TEXT NOT NULL,
    raw_name            TEXT NOT NULL,
    normalized_name     TEXT NOT NULL,
    -- npi | crm_id | domain | phone | name_city | name | alias | merge (config) | split (config) | new
    match_method        TEXT NOT NULL CHECK (match_method = 'npi' OR match_method = 'crm_id'
                            OR match_method = 'domain' OR match_method = 'phone'
                            OR match_method = 'name_city' OR match_method = 'name'
                            OR match_method = 'alias' OR match_method = 'merge'
                            OR match_method = 'split' OR match_method = 'new'),
    confidence          REAL NOT NULL,
    first_seen_at       TEXT NOT NULL,
    UNIQUE (system, external_key)
);
INSERT INTO partner_source_record_v3 SELECT * FROM partner_source_record;
DROP TABLE partner_source_record;
ALTER TABLE partner_source_record_v3 RENAME TO partner_source_record;
CREATE INDEX partner_source_record_partner ON partner_source_record(partner_id);

-- A partner folded into another by identity resolution keeps its row (ids stay valid) and says
-- where it went.
ALTER TABLE partner ADD COLUMN merged_into INTEGER REFERENCES partner(id);

-- The spelling a referral named its partner by, so that a split moves exactly its referrals.
ALTER TABLE referral ADD COLUMN partner_source_record_id INTEGER;
CREATE INDEX referral_source_record ON referral(partner_source_record_id);
CREATE INDEX referral_inquiry ON referral(inquiry_id, direction);

-- Reps: CRM users/owners.
CREATE TABLE rep (
    id                  INTEGER PRIMARY KEY,
    system              TEXT NOT NULL,
    external_id         TEXT NOT NULL,
    name                TEXT NOT NULL,
    email               TEXT,
    active              INTEGER NOT NULL,
    UNIQUE (system, external_id)
);

-- What the CRMs say about each live partner, rebuilt by identity resolution every cycle. `home_*`
-- is the CRM record the partner's tasks go to.
CREATE TABLE partner_profile (
    partner_id          INTEGER PRIMARY KEY REFERENCES partner(id),
    home_system         TEXT,
    home_crm_id         TEXT,
    owner_id            TEXT,
    owner_name          TEXT,
    owner_active        INTEGER,
    city                TEXT,
    state               TEXT,
    zip3                TEXT,
    website_domain      TEXT,
    phone               TEXT,
    payers              TEXT NOT NULL DEFAULT '[]',     -- JSON array of payer names
    levels_of_care      TEXT NOT NULL DEFAULT '[]',     -- JSON array of level codes
    accepting_referrals INTEGER,
    preferred           INTEGER
);

-- Deals/opportunities, normalized and tied to a ledger partner. One that describes the same
-- inquiry as an EHR referral points at it (`referral_id`) and is not counted twice.
CREATE TABLE crm_referral (
    id                  INTEGER PRIMARY KEY,
    system              TEXT NOT NULL,
    crm_id              TEXT NOT NULL,
    partner_id          INTEGER REFERENCES partner(id),
    referral_id         INTEGER REFERENCES referral(id),
    inquiry_id          TEXT,
    direction           TEXT NOT NULL CHECK (direction = 'in' OR direction = 'out'),
    parent_inquiry_id   TEXT,
    stage               TEXT NOT NULL,
    disposition         TEXT,
    disposition_reason  TEXT,
    payer               TEXT,
    plan_type           TEXT,
    level_of_care       TEXT,
    inquiry_date        TEXT,
    admit_date          TEXT,
    owner_id            TEXT,
    deleted             INTEGER NOT NULL DEFAULT 0,
    UNIQUE (system, crm_id)
);
CREATE INDEX crm_referral_partner ON crm_referral(partner_id, inquiry_date);

-- Touches (calls, meetings, visits, emails, notes, completed tasks) tied to a ledger partner.
CREATE TABLE activity (
    id                  INTEGER PRIMARY KEY,
    system              TEXT NOT NULL,
    crm_id              TEXT NOT NULL,
    partner_id          INTEGER REFERENCES partner(id),
    kind                TEXT NOT NULL,
    owner_id            TEXT,
    at                  TEXT NOT NULL,
    UNIQUE (system, crm_id)
);
CREATE INDEX activity_partner ON activity(partner_id, at);

-- Matches identity resolution was not sure of: listed with a suggested merge, never applied.
CREATE TABLE identity_suggestion (
    id                  INTEGER PRIMARY KEY,
    partner_id          INTEGER NOT NULL REFERENCES partner(id),
    candidate_id        INTEGER NOT NULL REFERENCES partner(id),
    method              TEXT NOT NULL,
    confidence          REAL NOT NULL,
    reason              TEXT NOT NULL,
    first_seen_at       TEXT NOT NULL,
    last_seen_at        TEXT NOT NULL,
    UNIQUE (partner_id, candidate_id)
);

-- Every referral once: the EHR's, and the CRM's that no EHR referral describes.
CREATE VIEW unified_referral AS
    SELECT id AS referral_id, NULL AS crm_referral_id, partner_id, direction, inquiry_id,
           parent_inquiry_id, inquiry_date, disposition, disposition_reason, payer, plan_type,
           level_of_care_code AS level_of_care, zip3
    FROM referral
    UNION ALL
    SELECT NULL, id, partner_id, direction, inquiry_id, parent_inquiry_id, inquiry_date,
           COALESCE(disposition, 'pending'), disposition_reason, payer, plan_type, level_of_care,
           NULL
    FROM crm_referral
    WHERE referral_id IS NULL AND deleted = 0 AND inquiry_date IS NOT NULL;

-- Partner health per day: the score, its components (JSON, each with its reason) and the trend.
CREATE TABLE health_snapshot (
    partner_id          INTEGER NOT NULL REFERENCES partner(id),
    as_of               TEXT NOT NULL,
    score               REAL,
    state               TEXT NOT NULL,          -- healthy | watch | at_risk
    trend               TEXT NOT NULL,          -- up | down | flat
    components          TEXT NOT NULL,
    model_version       INTEGER NOT NULL,
    computed_at         TEXT NOT NULL,
    PRIMARY KEY (partner_id, as_of)
);

-- One row per health computation: what it read (a fingerprint of the inputs), so that a run with
-- nothing new does nothing.
CREATE TABLE health_run (
    id                  INTEGER PRIMARY KEY,
    as_of               TEXT NOT NULL,
    fingerprint         TEXT NOT NULL,
    partners            INTEGER NOT NULL,
    started_at          TEXT NOT NULL,
    finished_at         TEXT NOT NULL
);

-- Alerts: one per rule, partner and episode (the key is the outbox key). `state` open → closed;
-- `waiting` when the rep's daily budget was spent; `done` when the rep completed the task while
-- the condition still held (not reopened until it clears).
CREATE TABLE alert (
    key                 TEXT PRIMARY KEY,
    rule                TEXT NOT NULL,
    partner_id          INTEGER REFERENCES partner(id),
    system              TEXT NOT NULL,
    owner_id            TEXT,
    state               TEXT NOT NULL CHECK (state = 'open' OR state = 'waiting' OR state = 'done'
                            OR state = 'closed'),
    reason              TEXT NOT NULL,
    opened_at           TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    closed_at           TEXT
);
CREATE INDEX alert_state ON alert(state, rule, partner_id);
"#,
    ),
    (
        4,
        "CRM referrals that repeat another CRM's referral of the same inquiry; no spelling index",
        r#"
-- Every imported referral now names its spelling, so this index took a random insert per row
-- (about 20% of a million-row import). Referrals move by spelling only when identity resolution
-- splits or re-links a spelling, in one pass over the table: the index is not worth its cost.
DROP INDEX referral_source_record;

-- Both CRMs may hold a deal for one inquiry. When no EHR referral describes it, the lowest-id CRM
-- row stands for the inquiry and the others point at it, so that every referral is counted once.
ALTER TABLE crm_referral ADD COLUMN duplicate_of INTEGER REFERENCES crm_referral(id);

DROP VIEW unified_referral;
CREATE VIEW unified_referral AS
    SELECT id AS referral_id, NULL AS crm_referral_id, partner_id, direction, inquiry_id,
           parent_inquiry_id, inquiry_date, disposition, disposition_reason, payer, plan_type,
           level_of_care_code AS level_of_care, zip3
    FROM referral
    UNION ALL
    SELECT NULL, id, partner_id, direction, inquiry_id, parent_inquiry_id, inquiry_date,
           COALESCE(disposition, 'pending'), disposition_reason, payer, plan_type, level_of_care,
           NULL
    FROM crm_referral
    WHERE referral_id IS NULL AND duplicate_of IS NULL AND deleted = 0
      AND inquiry_date IS NOT NULL;
"#,
    ),
    (
        5,
        "no second index on referral inquiry ids",
        r#"
-- Identity resolution finds the EHR referral of an inquiry through the unique key
-- (source_system, inquiry_id, direction); a second index on (inquiry_id, direction) cost every
-- imported row another random insert (about 15% of a million-row import).
DROP INDEX referral_inquiry;
"#,
    ),
];
