//! Scoring, snapshots and trends against small ledgers built row by row in a temporary file.

use chrono::{Days, NaiveDate};
use rusqlite::params;

use super::*;
use crate::ledger::Ledger;

/// The as-of day of every fixture. With the default windows: current window 2026-08-04 ..=
/// 2026-11-01 (90 days), gap 2026-07-05 ..= 2026-08-03, baseline 2025-07-05 ..= 2026-07-04.
fn as_of() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 1).unwrap()
}

fn days_ago(days: u64) -> NaiveDate {
    as_of().checked_sub_days(Days::new(days)).unwrap()
}

const BASELINE: (u64, u64) = (484, 120);
const GAP: (u64, u64) = (119, 90);
const CURRENT: (u64, u64) = (89, 0);

/// A scratch ledger and helpers that insert exactly the rows a test needs.
struct Fixture {
    _directory: tempfile::TempDir,
    ledger: Ledger,
    inquiries: u64,
    import_run: i64,
}

impl Fixture {
    fn new() -> Fixture {
        let (directory, ledger) = crate::ledger::scratch();
        let mut fixture = Fixture {
            _directory: directory,
            ledger,
            inquiries: 0,
            import_run: 0,
        };
        fixture.new_import_run();
        fixture
    }

    fn sql(&self) -> &rusqlite::Connection {
        self.ledger.connection()
    }

    /// A finished import run; later referrals carry its id.
    fn new_import_run(&mut self) {
        self.sql()
            .execute(
                "INSERT INTO import_run (file_name, file_path, sha256, size_bytes, started_at,
                     finished_at, outcome)
                 VALUES ('export.csv', '/in/export.csv', 'abc', 1, '2026-11-01T00:00:00Z',
                     '2026-11-01T00:00:01Z', 'imported')",
                [],
            )
            .unwrap();
        self.import_run = self.sql().last_insert_rowid();
    }

    fn partner(&self, name: &str) -> i64 {
        self.sql()
            .execute(
                "INSERT INTO partner (name, normalized_name, origin, created_at, updated_at)
                 VALUES (?1, lower(?1), 'ehr', '2025-01-01T00:00:00Z', '2025-01-01T00:00:00Z')",
                [name],
            )
            .unwrap();
        self.sql().last_insert_rowid()
    }

    fn referral(&mut self, partner: i64, direction: &str, day: NaiveDate, disposition: &str) {
        self.inquiries += 1;
        self.sql()
            .execute(
                "INSERT INTO referral (source_system, inquiry_id, direction, partner_id,
                     inquiry_date, disposition, first_import_run_id, last_import_run_id)
                 VALUES ('ehr', ?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                params![
                    format!("INQ-{}", self.inquiries),
                    direction,
                    partner,
                    day.to_string(),
                    disposition,
                    self.import_run
                ],
            )
            .unwrap();
    }

    /// `count` inbound referrals spread evenly from `from` to `to` days ago (both ends included).
    fn spread(&mut self, partner: i64, (from, to): (u64, u64), count: u64, disposition: &str) {
        for i in 0..count {
            let back = if count == 1 {
                from
            } else {
                from - (from - to) * i / (count - 1)
            };
            self.referral(partner, "in", days_ago(back), disposition);
        }
    }

    /// A partner with `per_month` inbound referrals a month through baseline and gap, then
    /// `current` in the current window (spread over it).
    fn steady_then(&mut self, name: &str, per_month: f64, current: u64) -> i64 {
        let partner = self.partner(name);
        let count = |(from, to): (u64, u64)| {
            ((from - to + 1) as f64 * per_month / stats::DAYS_PER_MONTH).round() as u64
        };
        self.spread(partner, BASELINE, count(BASELINE), "pending");
        self.spread(partner, GAP, count(GAP), "pending");
        self.spread(partner, CURRENT, current, "pending");
        partner
    }

    fn profile(&self, partner: i64, owner: Option<(&str, &str)>, active: Option<bool>) {
        self.sql()
            .execute(
                "INSERT INTO partner_profile (partner_id, home_system, home_crm_id, owner_id,
                     owner_name, owner_active)
                 VALUES (?1, 'salesforce', 'ACC' || ?1, ?2, ?3, ?4)",
                params![
                    partner,
                    owner.map(|(id, _)| id),
                    owner.map(|(_, name)| name),
                    active
                ],
            )
            .unwrap();
    }

    fn touch(&self, partner: i64, kind: &str, days: u64) {
        self.sql()
            .execute(
                "INSERT INTO activity (system, crm_id, partner_id, kind, at)
                 VALUES ('salesforce', 'T' || (SELECT count(*) FROM activity), ?1, ?2, ?3)",
                params![partner, kind, format!("{}T15:30:00Z", days_ago(days))],
            )
            .unwrap();
    }

    fn health_with(&self, config: &HealthConfig) -> Vec<PartnerHealth> {
        compute(self.sql(), config, as_of()).unwrap()
    }

    fn health(&self) -> Vec<PartnerHealth> {
        self.health_with(&HealthConfig::default())
    }
}

fn of(health: &[PartnerHealth], partner: i64) -> &PartnerHealth {
    health
        .iter()
        .find(|p| p.partner_id == partner)
        .unwrap_or_else(|| panic!("partner {partner} not in {health:#?}"))
}

fn component(partner: &PartnerHealth, kind: ComponentKind) -> &Component {
    partner.component(kind).unwrap()
}

#[test]
fn decline_and_silence_are_flagged_only_when_the_baseline_supports_them() {
    struct Expect {
        applies: bool,
        declining: bool,
        silent: bool,
        reason: &'static str,
    }
    let check = |name: &str, per_month: f64, current: u64, expect: Expect| {
        let mut fixture = Fixture::new();
        let partner = fixture.steady_then(name, per_month, current);
        let health = fixture.health();
        let partner = of(&health, partner);
        let decline = component(partner, ComponentKind::Decline);
        assert_eq!(
            decline.score.is_some(),
            expect.applies,
            "{name}: {decline:?}"
        );
        assert_eq!(
            partner.facts.declining, expect.declining,
            "{name}: {partner:#?}"
        );
        assert_eq!(partner.facts.silent, expect.silent, "{name}: {partner:#?}");
        assert!(
            decline.reason.contains(expect.reason),
            "{name}: {:?} lacks {:?}",
            decline.reason,
            expect.reason
        );
        if expect.declining || expect.silent {
            assert_eq!(partner.state, HealthState::AtRisk, "{name}");
        }
    };
    // Halving from 4 a month: 48 in the baseline year, 5 in the last 90 days where 11.8 were
    // expected: P(X ≤ 5) = 0.023.
    check(
        "halved from 4 a month",
        4.0,
        5,
        Expect {
            applies: true,
            declining: true,
            silent: false,
            reason: "5 referrals in 90 days where 11.8 were expected (p = 0.02)",
        },
    );
    // Exactly 2 a month over 90 days is 5.9; with 6 the test gives p = 0.050, just above alpha:
    // a halving at 4 a month sits at the edge of what 90 days can show.
    check(
        "six where 11.8 were expected",
        4.0,
        6,
        Expect {
            applies: true,
            declining: false,
            silent: false,
            reason: "6 referrals in 90 days vs 11.8 expected: lower, but within chance (p = 0.05)",
        },
    );
    check(
        "halved from 8 a month",
        8.0,
        12,
        Expect {
            applies: true,
            declining: true,
            silent: false,
            reason: "12 referrals in 90 days where 23.7 were expected (p = 0.0064)",
        },
    );
    check(
        "steady at 4 a month",
        4.0,
        12,
        Expect {
            applies: true,
            declining: false,
            silent: false,
            reason: "referrals in line with baseline",
        },
    );
    // Half a referral a month and nothing in the window: normal for a small partner.
    check(
        "half a referral a month",
        0.5,
        0,
        Expect {
            applies: false,
            declining: false,
            silent: false,
            reason: "fewer than 1 referral a month: trend not scored",
        },
    );
}

#[test]
fn a_small_partner_with_an_empty_window_is_not_flagged() {
    // Half a referral a month: 6 in the baseline year, none in the last 90 days (1.5 expected,
    // which happens by chance 22% of the time).
    let mut fixture = Fixture::new();
    let small = fixture.steady_then("Valley High School", 0.5, 0);
    fixture.spread(small, (300, 100), 4, "admitted");
    let health = fixture.health();
    let small = of(&health, small);
    assert!(!small.facts.declining && !small.facts.silent, "{small:#?}");
    assert_ne!(small.state, HealthState::AtRisk, "{small:#?}");
    for (kind, reason) in [
        (
            ComponentKind::Volume,
            "fewer than 1 referral a month: volume not scored",
        ),
        (
            ComponentKind::Decline,
            "fewer than 1 referral a month: trend not scored",
        ),
    ] {
        let component = component(small, kind);
        assert_eq!((component.score, component.reason.as_str()), (None, reason));
    }
    assert!(small.facts.baseline_per_month.unwrap() < 1.0);
    assert_eq!(small.facts.referrals_current_window, 0);
}

#[test]
fn a_partner_silent_for_sixty_days_at_three_a_month_is_flagged_silent() {
    let mut fixture = Fixture::new();
    let partner = fixture.steady_then("Harbor Detox", 3.0, 0);
    // Three referrals early in the window, the last one 60 days ago.
    fixture.spread(partner, (89, 60), 3, "pending");
    let health = fixture.health();
    let partner = of(&health, partner);
    assert!(partner.facts.silent, "{partner:#?}");
    assert_eq!(partner.facts.days_since_last_referral, Some(60));
    assert_eq!(partner.state, HealthState::AtRisk);
    let decline = component(partner, ComponentKind::Decline);
    assert_eq!(
        decline.reason,
        "no referral for 60 days; at 3/month that happens by chance with p = 0.0027"
    );
    assert!(decline.score.unwrap() < 1.0, "{decline:?}");
}

#[test]
fn volume_compares_the_window_with_the_partners_own_baseline() {
    let mut fixture = Fixture::new();
    let low = fixture.steady_then("Lakeside Family Practice", 4.2, 2);
    let high = fixture.steady_then("Mercy Hospital", 4.2, 20);
    let new = fixture.partner("Cedar Counseling");
    fixture.spread(new, (150, 0), 6, "pending");
    let health = fixture.health();

    let volume = component(of(&health, low), ComponentKind::Volume);
    assert_eq!(
        volume.reason,
        "2 referrals in the last 90 days vs 4.2/month baseline (12.3 expected)"
    );
    assert!(
        (volume.score.unwrap() - 100.0 * 2.0 / 12.3).abs() < 0.5,
        "{volume:?}"
    );
    assert_eq!(
        component(of(&health, high), ComponentKind::Volume).score,
        Some(100.0),
        "above baseline scores 100, not more"
    );
    // First referral 150 days ago: 31 days of baseline history, under the 60 needed.
    let new = of(&health, new);
    for kind in [ComponentKind::Volume, ComponentKind::Decline] {
        let component = component(new, kind);
        assert_eq!(component.score, None);
        assert!(
            component.reason.starts_with("too new to judge"),
            "{component:?}"
        );
    }
    assert_eq!(new.facts.baseline_per_month, None);
}

#[test]
fn one_admission_of_one_is_shrunk_toward_the_facility_rate() {
    let mut fixture = Fixture::new();
    let big = fixture.partner("Mercy Hospital");
    fixture.spread(big, (300, 10), 50, "admitted");
    fixture.spread(big, (300, 10), 50, "not_admitted");
    let single = fixture.partner("Dr. Lee");
    fixture.spread(single, (20, 20), 1, "admitted");
    let poor = fixture.partner("Summit Clinic");
    fixture.spread(poor, (200, 10), 1, "admitted");
    fixture.spread(poor, (200, 10), 19, "not_admitted");
    let health = fixture.health();

    let conversion = component(of(&health, single), ComponentKind::Conversion);
    // Facility: 52 of 121 = 43%; (1 + 5 · 0.43) / 6 = 52%.
    assert_eq!(
        conversion.reason,
        "1 of 1 admitted (shrunk 52% vs facility 43%)"
    );
    assert!(!conversion.reason.contains("100%"), "{conversion:?}");
    // The score is the shrunk rate against the facility's, capped: at or above the facility
    // rate is 100.
    assert_eq!(conversion.score, Some(100.0));
    let poor = component(of(&health, poor), ComponentKind::Conversion);
    assert!(
        poor.reason.starts_with("1 of 20 admitted (shrunk"),
        "{poor:?}"
    );
    let score = poor.score.unwrap();
    assert!(score > 20.0 && score < 40.0, "{poor:?}");
}

#[test]
fn recency_ownership_and_reciprocity_read_the_crm_facts() {
    struct Case {
        name: &'static str,
        owner: Option<(&'static str, &'static str)>,
        active: Option<bool>,
        touch_days: Option<u64>,
        profile: bool,
        recency: (Option<f64>, &'static str),
        ownership: (Option<f64>, &'static str),
    }
    let cases = [
        Case {
            name: "visited last week",
            owner: Some(("005A", "Ana Ruiz")),
            active: Some(true),
            touch_days: Some(7),
            profile: true,
            recency: (Some(100.0), "last touch 7 days ago (visit on 2026-10-25)"),
            ownership: (Some(100.0), "owned by Ana Ruiz"),
        },
        Case {
            name: "called 75 days ago, owner left",
            owner: Some(("005B", "Ben Okafor")),
            active: Some(false),
            touch_days: Some(75),
            profile: true,
            recency: (Some(50.0), "last touch 75 days ago"),
            ownership: (Some(0.0), "owner Ben Okafor is inactive"),
        },
        Case {
            name: "in the CRM, never touched, no owner",
            owner: None,
            active: None,
            touch_days: None,
            profile: true,
            recency: (Some(0.0), "no recorded touch"),
            ownership: (Some(0.0), "no rep assigned"),
        },
        Case {
            name: "known only from the EHR",
            owner: None,
            active: None,
            touch_days: None,
            profile: false,
            recency: (None, "no CRM record or activity"),
            ownership: (None, "no CRM record"),
        },
    ];
    let mut fixture = Fixture::new();
    let mut ids = Vec::new();
    for case in &cases {
        let partner = fixture.partner(case.name);
        fixture.spread(partner, (200, 5), 4, "pending");
        if case.profile {
            fixture.profile(partner, case.owner, case.active);
        }
        if let Some(days) = case.touch_days {
            fixture.touch(partner, if days < 30 { "visit" } else { "call" }, days);
        }
        ids.push(partner);
    }
    let health = fixture.health();
    let check = |case: &Case, partner: i64| {
        let partner = of(&health, partner);
        for (kind, (score, reason)) in [
            (ComponentKind::Recency, case.recency),
            (ComponentKind::Ownership, case.ownership),
        ] {
            let component = component(partner, kind);
            assert_eq!(component.score, score, "{}: {component:?}", case.name);
            assert!(
                component.reason.starts_with(reason),
                "{}: {:?} should start with {reason:?}",
                case.name,
                component.reason
            );
        }
    };
    for (case, partner) in cases.iter().zip(ids) {
        check(case, partner);
    }
}

#[test]
fn reciprocity_is_shown_but_with_weight_zero_never_moves_the_score() {
    let mut fixture = Fixture::new();
    let one_sided = fixture.steady_then("One Sided Hospital", 2.0, 6);
    let balanced = fixture.steady_then("Balanced Hospital", 2.0, 6);
    for days in [10, 40, 80, 120, 160, 200, 240, 280] {
        fixture.referral(balanced, "out", days_ago(days), "pending");
    }
    fixture.referral(one_sided, "out", days_ago(30), "pending");
    let health = fixture.health();
    let (one_sided, balanced) = (of(&health, one_sided), of(&health, balanced));
    let reciprocity = component(one_sided, ComponentKind::Reciprocity);
    assert_eq!(
        reciprocity.reason,
        format!(
            "we referred 1, they referred {} (last 12 months)",
            one_sided.facts.received_last_365_days
        )
    );
    assert_eq!(reciprocity.weight, 0.0);
    assert!(
        component(balanced, ComponentKind::Reciprocity).score
            > component(one_sided, ComponentKind::Reciprocity).score
    );
    assert_eq!(
        one_sided.score, balanced.score,
        "reciprocity changed the score"
    );

    // The same ledger with a reciprocity weight: now it counts (which is why it defaults to 0).
    let mut config = HealthConfig::default();
    config.weights.reciprocity = 0.5;
    let weighted = fixture.health_with(&config);
    assert!(of(&weighted, one_sided.partner_id).score < of(&weighted, balanced.partner_id).score);
}

#[test]
fn components_that_do_not_apply_are_left_out_and_the_rest_reweighted() {
    let mut fixture = Fixture::new();
    // Steady, no CRM record: volume, decline, conversion apply; recency and ownership do not.
    let partner = fixture.steady_then("Riverside Hospital", 4.0, 12);
    fixture.spread(partner, (100, 10), 4, "admitted");
    let health = fixture.health();
    let partner = of(&health, partner);
    let applying: Vec<&Component> = partner
        .components
        .iter()
        .filter(|c| c.score.is_some() && c.weight > 0.0)
        .collect();
    assert_eq!(applying.len(), 3, "{:#?}", partner.components);
    let expected = applying
        .iter()
        .map(|c| c.weight * c.score.unwrap())
        .sum::<f64>()
        / applying.iter().map(|c| c.weight).sum::<f64>();
    assert!((partner.score.unwrap() - expected).abs() < 1e-9);
    assert!(
        partner.score.unwrap() > 60.0,
        "missing components are not zeros: {partner:#?}"
    );
    assert_eq!(partner.state, HealthState::Healthy);

    // A CRM record with no touch and no owner brings two zeros in.
    fixture.profile(partner.partner_id, None, None);
    let with_profile = fixture.health();
    let with_profile = of(&with_profile, partner.partner_id);
    let weights = HealthWeights::default();
    let shifted = (expected * (weights.volume + weights.decline + weights.conversion))
        / (weights.volume
            + weights.decline
            + weights.conversion
            + weights.recency
            + weights.ownership);
    assert!((with_profile.score.unwrap() - shifted).abs() < 1e-9);
}

#[test]
fn scope_merges_and_the_as_of_day_decide_what_counts() {
    let mut fixture = Fixture::new();
    let survivor = fixture.partner("Mercy Hospital");
    let duplicate = fixture.partner("Mercy Hosp ED");
    fixture.spread(survivor, (300, 10), 3, "pending");
    fixture.spread(duplicate, (300, 10), 2, "pending");
    fixture
        .sql()
        .execute(
            "UPDATE partner SET merged_into = ?1 WHERE id = ?2",
            [survivor, duplicate],
        )
        .unwrap();
    let old = fixture.partner("Closed Clinic");
    fixture.referral(old, "in", days_ago(600), "admitted");
    let crm_only = fixture.partner("New CRM Account");
    fixture.profile(crm_only, Some(("005A", "Ana Ruiz")), Some(true));
    let future = fixture.partner("Tomorrow Clinic");
    fixture.referral(future, "in", as_of().succ_opt().unwrap(), "pending");

    let health = fixture.health();
    let ids: Vec<i64> = health.iter().map(|p| p.partner_id).collect();
    assert!(!ids.contains(&duplicate), "a merged partner is not scored");
    assert!(
        !ids.contains(&old),
        "no referral in 18 months, no CRM record"
    );
    assert!(!ids.contains(&future), "referrals after as_of do not count");
    assert_eq!(of(&health, survivor).facts.referrals_last_365_days, 5);
    let crm_only = of(&health, crm_only);
    assert_eq!(crm_only.facts.referrals_last_365_days, 0);
    assert_eq!(
        component(crm_only, ComponentKind::Ownership).score,
        Some(100.0)
    );
}

#[test]
fn results_come_worst_first() {
    let mut fixture = Fixture::new();
    let healthy = fixture.steady_then("Steady", 4.0, 12);
    let silent = fixture.steady_then("Silent", 4.0, 0);
    let unowned = fixture.steady_then("Unowned", 4.0, 12);
    fixture.profile(unowned, None, None);
    let no_score = fixture.partner("Brand New");
    fixture.referral(no_score, "in", days_ago(3), "pending");
    let health = fixture.health();
    let order: Vec<i64> = health.iter().map(|p| p.partner_id).collect();
    assert_eq!(
        order,
        vec![silent, unowned, healthy, no_score],
        "{health:#?}"
    );
    assert_eq!(of(&health, no_score).score, None);
    assert_eq!(
        report::headline(of(&health, no_score)),
        "volume: too new to judge: first referral 2026-10-29"
    );
    assert!(report::headline(of(&health, silent)).starts_with("decline: no referral for"));
}

#[test]
fn trends_compare_with_the_snapshot_a_month_earlier() {
    let mut fixture = Fixture::new();
    let falling = fixture.steady_then("Falling", 4.0, 0);
    let steady = fixture.steady_then("Steady", 4.0, 12);
    let earlier = days_ago(30);
    // A month ago the falling partner still referred as usual.
    for days in [31, 40, 50, 60, 70, 80, 88] {
        fixture.referral(falling, "in", days_ago(days), "pending");
    }
    let config = HealthConfig::default();
    let first = refresh(fixture.sql(), &config, earlier, "2026-10-02T06:00:00Z").unwrap();
    assert!(first.recomputed);
    assert!(
        first.health.iter().all(|p| p.trend == Trend::Flat),
        "nothing to compare with"
    );
    let now = refresh(fixture.sql(), &config, as_of(), "2026-11-01T06:00:00Z").unwrap();
    assert_eq!(
        of(&now.health, falling).trend,
        Trend::Down,
        "{:#?}",
        now.health
    );
    assert_eq!(of(&now.health, steady).trend, Trend::Flat);
    let before = of(&first.health, falling).score.unwrap();
    assert!(of(&now.health, falling).score.unwrap() <= before - 5.0);
}

#[test]
fn a_second_refresh_without_new_data_returns_the_stored_snapshots() {
    let mut fixture = Fixture::new();
    let partner = fixture.steady_then("Mercy Hospital", 4.0, 10);
    fixture.profile(partner, Some(("005A", "Ana Ruiz")), Some(true));
    fixture.touch(partner, "visit", 12);
    let other = fixture.steady_then("Harbor Detox", 2.0, 0);
    let config = HealthConfig::default();
    let refresh_now = |fixture: &Fixture| {
        refresh(fixture.sql(), &config, as_of(), "2026-11-01T06:00:00Z").unwrap()
    };

    let first = refresh_now(&fixture);
    assert!(first.recomputed);
    let second = refresh_now(&fixture);
    assert!(!second.recomputed, "nothing changed");
    assert_eq!(second.health.len(), first.health.len());
    for (stored, computed) in second.health.iter().zip(&first.health) {
        assert_eq!(stored.partner_id, computed.partner_id, "same order");
        assert_eq!(stored.state, computed.state);
        assert_eq!(stored.components, computed.components);
        assert_eq!(stored.facts, computed.facts);
        assert!((stored.score.unwrap() - computed.score.unwrap()).abs() < 1e-9);
    }
    let runs: i64 = fixture
        .sql()
        .query_row("SELECT count(*) FROM health_run", [], |r| r.get(0))
        .unwrap();
    assert_eq!(runs, 1, "an unchanged run records nothing");

    // Each kind of new input is noticed.
    fixture.new_import_run();
    fixture.referral(other, "in", days_ago(1), "pending");
    let after_referral = refresh_now(&fixture);
    assert!(after_referral.recomputed, "a new referral");
    assert_eq!(
        of(&after_referral.health, other)
            .facts
            .referrals_current_window,
        1
    );
    assert!(!refresh_now(&fixture).recomputed);

    fixture
        .sql()
        .execute(
            "UPDATE partner_profile SET owner_active = 0 WHERE partner_id = ?1",
            [partner],
        )
        .unwrap();
    let after_owner = refresh_now(&fixture);
    assert!(after_owner.recomputed, "an owner deactivated");
    assert_eq!(
        component(of(&after_owner.health, partner), ComponentKind::Ownership).reason,
        "owner Ana Ruiz is inactive"
    );

    fixture
        .sql()
        .execute("UPDATE activity SET at = '2026-10-31T09:00:00Z'", [])
        .unwrap();
    let after_touch = refresh_now(&fixture);
    assert!(after_touch.recomputed, "a touch rewritten in place");
    assert_eq!(
        of(&after_touch.health, partner).facts.days_since_touch,
        Some(1)
    );

    fixture
        .sql()
        .execute(
            "UPDATE referral SET partner_id = ?1 WHERE partner_id = ?2",
            [partner, other],
        )
        .unwrap();
    assert!(
        refresh_now(&fixture).recomputed,
        "referrals moved to another partner"
    );

    let mut changed = config.clone();
    changed.alpha = 0.01;
    assert!(
        refresh(fixture.sql(), &changed, as_of(), "2026-11-01T06:00:00Z")
            .unwrap()
            .recomputed,
        "a config value changed"
    );
}

#[test]
fn a_running_import_makes_every_refresh_compute() {
    let mut fixture = Fixture::new();
    fixture.steady_then("Mercy Hospital", 4.0, 10);
    fixture
        .sql()
        .execute(
            "UPDATE import_run SET outcome = 'running', finished_at = NULL",
            [],
        )
        .unwrap();
    let config = HealthConfig::default();
    for _ in 0..2 {
        assert!(
            refresh(fixture.sql(), &config, as_of(), "2026-11-01T06:00:00Z")
                .unwrap()
                .recomputed
        );
    }
}

#[test]
fn a_partner_leaving_scope_loses_that_days_snapshot() {
    let mut fixture = Fixture::new();
    let stays = fixture.steady_then("Stays", 4.0, 10);
    let goes = fixture.steady_then("Goes", 4.0, 10);
    let config = HealthConfig::default();
    let first = refresh(fixture.sql(), &config, as_of(), "2026-11-01T06:00:00Z").unwrap();
    assert_eq!(first.health.len(), 2);
    fixture
        .sql()
        .execute(
            "UPDATE partner SET merged_into = ?1 WHERE id = ?2",
            [stays, goes],
        )
        .unwrap();
    let merged = refresh(fixture.sql(), &config, as_of(), "2026-11-01T07:00:00Z").unwrap();
    assert!(merged.recomputed);
    assert_eq!(merged.health.len(), 1);
    let again = refresh(fixture.sql(), &config, as_of(), "2026-11-01T08:00:00Z").unwrap();
    assert!(!again.recomputed);
    assert_eq!(
        again
            .health
            .iter()
            .map(|p| p.partner_id)
            .collect::<Vec<_>>(),
        vec![stays],
        "the merged partner's snapshot of the day is gone"
    );
}

#[test]
fn crm_deals_count_once_and_only_when_no_ehr_referral_describes_them() {
    let mut fixture = Fixture::new();
    let partner = fixture.partner("Mercy Hospital");
    fixture.referral(partner, "in", days_ago(10), "admitted");
    let ehr_referral = fixture.sql().last_insert_rowid();
    let deal = |crm_id: &str, referral: Option<i64>, deleted: bool, disposition: Option<&str>| {
        fixture
            .sql()
            .execute(
                "INSERT INTO crm_referral (system, crm_id, partner_id, referral_id, direction,
                     stage, disposition, inquiry_date, deleted)
                 VALUES ('hubspot', ?1, ?2, ?3, 'in', 'stage', ?4, ?5, ?6)",
                params![
                    crm_id,
                    partner,
                    referral,
                    disposition,
                    days_ago(20).to_string(),
                    deleted
                ],
            )
            .unwrap();
    };
    deal("D1", Some(ehr_referral), false, Some("admitted")); // the EHR row's own deal
    deal("D2", None, false, Some("not_admitted")); // only the CRM knows it
    deal("D3", None, true, Some("admitted")); // deleted in the CRM
    deal("D4", None, false, None); // no disposition yet: pending
    let health = fixture.health();
    let facts = &of(&health, partner).facts;
    assert_eq!(facts.referrals_last_365_days, 3, "{facts:#?}");
    assert_eq!(
        (facts.admitted_last_365_days, facts.decided_last_365_days),
        (1, 2)
    );
    let view: i64 = fixture
        .sql()
        .query_row(
            "SELECT count(*) FROM unified_referral WHERE partner_id = ?1",
            [partner],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(view, 3, "the same referrals as the unified_referral view");
}
