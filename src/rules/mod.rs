//! Rules: partner health, open placements, identity doubts and refer-out options → conditions,
//! each of which asks one rep for one task.
//!
//! A condition names its rule, its subject (a partner, a referral out, a lead, a pair of partner
//! records), the CRM record the task belongs to, and the task's words: one number, one reason, one
//! action. Words carry partner-level facts only: partner names, counts, rates and ledger ids —
//! never a patient value, and never a date or detail of one patient's referral. Reciprocity is
//! not an input here: no rule asks anyone to send a patient anywhere to even a balance.
//!
//! What happens to conditions over time (opening, updating, closing, budgets, snoozes) is the
//! outbox's business ([`crate::outbox`]); this module only says what holds today.

pub mod config;

use std::collections::HashMap;

use chrono::NaiveDate;
use refbridge_model::crm::{CrmSystem, TaskKind, TaskPriority};
use rusqlite::{Connection, params};

use crate::health::PartnerHealth;
use crate::routing::LeadSuggestion;
pub use config::{OutboxConfig, RulesConfig};

/// Where a task goes: the CRM, the record it is about, and its owner (`None`: the connector's
/// queue owner).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub system: CrmSystem,
    pub about_id: String,
    pub owner_id: Option<String>,
}

/// One thing that holds today and deserves a task.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub rule: &'static str,
    /// What the condition is about, unique within the rule: `p42`, `ref12`, `crmref7`,
    /// `pair12-57`, `lead-salesforce-006…`.
    pub subject: String,
    pub partner_id: Option<i64>,
    /// Where the task goes, or why it cannot be created.
    pub target: Result<Target, String>,
    /// Higher first when a rep's daily budget is short.
    pub importance: f64,
    /// One line: partner, one number, one action.
    pub title: String,
    pub description: String,
    /// One short sentence for `status` and `plan`.
    pub reason: String,
    /// Whether the task key names the day the condition began (`rule:subject:YYYY-MM-DD`), so
    /// that a partner-level condition that clears and returns is a new task. Conditions about one
    /// referral or lead are not: their key must not date a patient's referral.
    pub dated: bool,
    pub due_in_days: u32,
    pub priority: TaskPriority,
    pub kind: TaskKind,
}

/// What the CRMs say about a partner, as the rules need it.
#[derive(Debug, Clone, Default)]
struct Home {
    system: Option<String>,
    crm_id: Option<String>,
    owner_id: Option<String>,
    owner_active: bool,
}

fn load_homes(connection: &Connection) -> rusqlite::Result<HashMap<i64, Home>> {
    let mut statement = connection.prepare(
        "SELECT partner_id, home_system, home_crm_id, owner_id, COALESCE(owner_active, 1)
         FROM partner_profile",
    )?;
    let rows = statement.query_map([], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            Home {
                system: row.get(1)?,
                crm_id: row.get(2)?,
                owner_id: row.get(3)?,
                owner_active: row.get::<_, i64>(4)? != 0,
            },
        ))
    })?;
    rows.collect()
}

fn load_names(connection: &Connection) -> rusqlite::Result<HashMap<i64, String>> {
    let mut statement = connection.prepare("SELECT id, name FROM partner")?;
    let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    rows.collect()
}

/// The CRM record a partner's task goes to, or why there is none.
fn partner_target(
    homes: &HashMap<i64, Home>,
    partner_id: i64,
    name: &str,
    configured: &[CrmSystem],
    owner_override: Option<Option<String>>,
) -> Result<Target, String> {
    let home = homes.get(&partner_id).cloned().unwrap_or_default();
    let (Some(system_name), Some(about_id)) = (home.system, home.crm_id) else {
        return Err(format!(
            "{name} (#{partner_id}) is in no CRM: add it there or link it with [[identity.merge]]"
        ));
    };
    let Some(system) = CrmSystem::parse(&system_name) else {
        return Err(format!(
            "{name} (#{partner_id}) lives in {system_name}, which refbridge cannot write to"
        ));
    };
    if !configured.contains(&system) {
        return Err(format!(
            "{name} (#{partner_id}) lives in {system_name}, which is not configured"
        ));
    }
    let owner_id = match owner_override {
        Some(owner) => owner,
        None => home.owner_id.filter(|_| home.owner_active),
    };
    Ok(Target {
        system,
        about_id,
        owner_id,
    })
}

fn per_month(value: f64) -> String {
    format!("{value:.1}")
}

fn plural(count: u64, one: &str, many: &str) -> String {
    if count == 1 {
        format!("1 {one}")
    } else {
        format!("{count} {many}")
    }
}

/// Everything the rules read besides health and refer-out options.
pub struct RuleInputs<'a> {
    pub as_of: NaiveDate,
    pub health: &'a [PartnerHealth],
    pub leads: &'a [LeadSuggestion],
    /// CRMs refbridge can push to in this configuration.
    pub configured: &'a [CrmSystem],
}

/// Evaluates every enabled rule. Deterministic: the same ledger and inputs give the same
/// conditions in the same order.
pub fn evaluate(
    connection: &Connection,
    config: &RulesConfig,
    inputs: &RuleInputs<'_>,
) -> rusqlite::Result<Vec<Condition>> {
    let homes = load_homes(connection)?;
    let names = load_names(connection)?;
    let mut conditions = Vec::new();
    partner_rules(config, inputs, &homes, &mut conditions);
    if config.placement_follow_up.enabled {
        placement_rule(connection, config, inputs, &homes, &names, &mut conditions)?;
    }
    if config.identity_review.enabled {
        identity_rule(connection, config, inputs, &homes, &names, &mut conditions)?;
    }
    if config.refer_out.enabled {
        refer_out_rule(config, inputs, &mut conditions);
    }
    conditions.sort_by(|a, b| (a.rule, &a.subject).cmp(&(b.rule, &b.subject)));
    Ok(conditions)
}

fn partner_rules(
    config: &RulesConfig,
    inputs: &RuleInputs<'_>,
    homes: &HashMap<i64, Home>,
    conditions: &mut Vec<Condition>,
) {
    // Top partners by referrals in the last year: the first `top_share` of those with any.
    let mut volumes: Vec<u64> = inputs
        .health
        .iter()
        .map(|h| h.facts.referrals_last_365_days)
        .filter(|&n| n > 0)
        .collect();
    volumes.sort_unstable_by(|a, b| b.cmp(a));
    let top_count = ((volumes.len() as f64) * config.no_touch.top_share).ceil() as usize;
    let top_threshold = volumes
        .get(top_count.saturating_sub(1))
        .copied()
        .unwrap_or(u64::MAX)
        .max(1);

    for health in inputs.health {
        let facts = &health.facts;
        let id = health.partner_id;
        let name = health.name.as_str();
        let baseline = facts.baseline_per_month.unwrap_or(0.0);
        let subject = format!("p{id}");
        let target = |owner: Option<Option<String>>| {
            partner_target(homes, id, name, inputs.configured, owner)
        };

        if facts.silent && config.silent.enabled {
            let months = facts.days_since_last_referral.unwrap_or(0).max(0) / 30;
            let span = if months >= 1 {
                format!("{} or more", plural(months as u64, "month", "months"))
            } else {
                "weeks".to_string()
            };
            conditions.push(Condition {
                rule: "silent",
                subject: subject.clone(),
                partner_id: Some(id),
                target: target(None),
                importance: 50.0 + baseline,
                title: format!(
                    "{name}: no referral for {span} (usually {}/month) — call your contact",
                    per_month(baseline)
                ),
                description: format!(
                    "{name} usually refers {} patients a month and has sent none for {span}; a gap this long happens by chance less than {}% of the time. Call your contact there to find out what changed. refbridge closes this task when referrals resume.",
                    per_month(baseline),
                    percent_ceiling(facts.silence_p)
                ),
                reason: format!("no referral for {span} at {}/month", per_month(baseline)),
                due_in_days: config.silent.due_in_days,
                priority: config.silent.priority,
                kind: config.silent.task_type,
                dated: true,
            });
        } else if facts.declining && config.declining.enabled {
            let expected = facts.expected_current_window.unwrap_or(0.0);
            let observed = facts.referrals_current_window;
            conditions.push(Condition {
                rule: "declining",
                subject: subject.clone(),
                partner_id: Some(id),
                target: target(None),
                importance: 40.0 + baseline,
                title: format!(
                    "{name}: {} in the last 90 days vs {:.1} expected ({}/month) — schedule a visit",
                    plural(observed, "referral", "referrals"),
                    expected,
                    per_month(baseline)
                ),
                description: format!(
                    "Referrals from {name} dropped: {} in the current window where its own baseline predicts {:.1}. Schedule a visit to learn what changed. refbridge closes this task when referrals recover.",
                    plural(observed, "referral", "referrals"),
                    expected
                ),
                reason: format!(
                    "{} in the window vs {:.1} expected",
                    plural(observed, "referral", "referrals"),
                    expected
                ),
                due_in_days: config.declining.due_in_days,
                priority: config.declining.priority,
                kind: config.declining.task_type,
                dated: true,
            });
        }

        let top = facts.referrals_last_365_days >= top_threshold;
        let untouched = match facts.days_since_touch {
            Some(days) => days >= i64::from(config.no_touch.days),
            None => facts.owned.is_some(), // in a CRM, never touched
        };
        if config.no_touch.enabled && top && untouched {
            let span = match facts.days_since_touch {
                Some(days) => format!("no touch for {} or more days", (days / 15) * 15),
                None => "no recorded touch".to_string(),
            };
            conditions.push(Condition {
                rule: "no_touch",
                subject: subject.clone(),
                partner_id: Some(id),
                target: target(None),
                importance: 20.0 + baseline,
                title: format!(
                    "{name}: {span} — top partner with {} this year; schedule a visit",
                    plural(facts.referrals_last_365_days, "referral", "referrals")
                ),
                description: format!(
                    "{name} is among your top referral partners ({} in the last 12 months) and has had {span}. A visit or call keeps the relationship warm. refbridge closes this task when a touch is recorded.",
                    plural(facts.referrals_last_365_days, "referral", "referrals")
                ),
                reason: format!("top partner, {span}"),
                due_in_days: config.no_touch.due_in_days,
                priority: config.no_touch.priority,
                kind: config.no_touch.task_type,
                dated: true,
            });
        }

        if config.unowned.enabled
            && facts.owned == Some(false)
            && facts.referrals_last_365_days >= config.unowned.min_referrals
        {
            conditions.push(Condition {
                rule: "unowned",
                subject: subject.clone(),
                partner_id: Some(id),
                target: target(Some(None)),
                importance: 10.0 + facts.referrals_last_365_days as f64 / 12.0,
                title: format!(
                    "{name}: no rep assigned ({} in 12 months) — assign an owner",
                    plural(facts.referrals_last_365_days, "referral", "referrals")
                ),
                description: format!(
                    "{name} sent {} in the last 12 months but no active rep owns the relationship. Assign an owner in the CRM; refbridge closes this task when one is set.",
                    plural(facts.referrals_last_365_days, "referral", "referrals")
                ),
                reason: "active partner without an owner".to_string(),
                due_in_days: config.unowned.due_in_days,
                priority: config.unowned.priority,
                kind: config.unowned.task_type,
                dated: true,
            });
        }

        if config.new_partner.enabled
            && let Some(first) = facts.first_referral
            && (inputs.as_of - first).num_days() <= i64::from(config.new_partner.days)
            && first <= inputs.as_of
        {
            conditions.push(Condition {
                rule: "new_partner",
                subject,
                partner_id: Some(id),
                target: target(None),
                importance: 30.0,
                title: format!(
                    "{name}: first referral in the last {} days — thank them and set up a meeting",
                    config.new_partner.days
                ),
                description: format!(
                    "{name} referred to us for the first time recently. Thank them and meet to learn what their patients need."
                ),
                reason: "first referral".to_string(),
                due_in_days: config.new_partner.due_in_days,
                priority: config.new_partner.priority,
                kind: config.new_partner.task_type,
                dated: true,
            });
        }
    }
}

fn percent_ceiling(p: Option<f64>) -> String {
    let percent = p.unwrap_or(0.05) * 100.0;
    if percent < 1.0 {
        "1".to_string()
    } else {
        format!("{}", percent.ceil() as u64)
    }
}

/// Referrals out with no placement outcome after `after_days`: confirm whether the partner took
/// the patient. The task names the partner and refbridge's referral number only.
fn placement_rule(
    connection: &Connection,
    config: &RulesConfig,
    inputs: &RuleInputs<'_>,
    homes: &HashMap<i64, Home>,
    names: &HashMap<i64, String>,
    conditions: &mut Vec<Condition>,
) -> rusqlite::Result<()> {
    let rule = &config.placement_follow_up;
    let newest = inputs.as_of - chrono::Duration::days(i64::from(rule.after_days));
    let oldest = inputs.as_of - chrono::Duration::days(i64::from(rule.max_age_days));
    // The CRM record of the referral out, when a CRM holds one: the task sits there. For an EHR
    // referral that is the lowest-id live deal describing it, found once for all referrals
    // (`linked`): `crm_referral.referral_id` has no index, and a lookup per referral out would
    // scan every deal for each one.
    let mut statement = connection.prepare(
        "WITH linked AS (
             SELECT referral_id, min(id) AS crm_referral_id FROM crm_referral
             WHERE referral_id IS NOT NULL AND deleted = 0 GROUP BY referral_id)
         SELECT u.referral_id, u.crm_referral_id, u.partner_id,
                COALESCE(c.system, l.system), COALESCE(c.crm_id, l.crm_id),
                COALESCE(c.owner_id, l.owner_id)
         FROM unified_referral u
         LEFT JOIN crm_referral c ON c.id = u.crm_referral_id
         LEFT JOIN linked k ON k.referral_id = u.referral_id
         LEFT JOIN crm_referral l ON l.id = k.crm_referral_id
         WHERE u.direction = 'out' AND u.disposition IN ('pending', 'referred_out')
           AND u.partner_id IS NOT NULL AND u.inquiry_date >= ?1 AND u.inquiry_date <= ?2
         ORDER BY u.referral_id, u.crm_referral_id",
    )?;
    let rows = statement.query_map(params![oldest.to_string(), newest.to_string()], |row| {
        Ok((
            row.get::<_, Option<i64>>(0)?,
            row.get::<_, Option<i64>>(1)?,
            row.get::<_, i64>(2)?,
            row.get::<_, Option<String>>(3)?,
            row.get::<_, Option<String>>(4)?,
            row.get::<_, Option<String>>(5)?,
        ))
    })?;
    for row in rows {
        let (referral_id, crm_referral_id, partner_id, system, crm_id, owner) = row?;
        let (subject, number) = match (referral_id, crm_referral_id) {
            (Some(id), _) => (format!("ref{id}"), format!("R{id}")),
            (None, Some(id)) => (format!("crmref{id}"), format!("C{id}")),
            (None, None) => continue,
        };
        let name = names
            .get(&partner_id)
            .cloned()
            .unwrap_or_else(|| format!("partner #{partner_id}"));
        let target = match (system.as_deref().and_then(CrmSystem::parse), crm_id) {
            (Some(system), Some(about_id)) if inputs.configured.contains(&system) => Ok(Target {
                system,
                about_id,
                // The partner's owner, when the partner lives in the same CRM (owner ids are
                // per CRM).
                owner_id: owner.or_else(|| {
                    homes
                        .get(&partner_id)
                        .filter(|h| h.system.as_deref() == Some(system.as_str()))
                        .and_then(|h| h.owner_id.clone().filter(|_| h.owner_active))
                }),
            }),
            _ => partner_target(homes, partner_id, &name, inputs.configured, None),
        };
        conditions.push(Condition {
            rule: "placement_follow_up",
            subject,
            partner_id: Some(partner_id),
            target,
            importance: 90.0,
            title: format!(
                "{name}: referral {number} has had no placement outcome for {}+ days — confirm they accepted",
                rule.after_days
            ),
            description: format!(
                "We referred a patient to {name} (refbridge referral {number}) and no outcome is recorded after {} days. Call {name} to confirm whether they accepted, and record the outcome; refbridge closes this task when it is recorded.",
                rule.after_days
            ),
            reason: format!("referral {number} out without an outcome"),
            due_in_days: rule.due_in_days,
            priority: rule.priority,
            kind: rule.task_type,
            dated: false,
        });
    }
    Ok(())
}

/// Uncertain identity matches: ask ops to confirm or keep apart.
fn identity_rule(
    connection: &Connection,
    config: &RulesConfig,
    inputs: &RuleInputs<'_>,
    homes: &HashMap<i64, Home>,
    names: &HashMap<i64, String>,
    conditions: &mut Vec<Condition>,
) -> rusqlite::Result<()> {
    let mut statement = connection.prepare(
        "SELECT partner_id, candidate_id, confidence, reason FROM identity_suggestion
         ORDER BY partner_id, candidate_id",
    )?;
    let rows = statement.query_map([], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, i64>(1)?,
            row.get::<_, f64>(2)?,
            row.get::<_, String>(3)?,
        ))
    })?;
    for row in rows {
        let (a, b, confidence, why) = row?;
        let name = |id: i64| {
            names
                .get(&id)
                .cloned()
                .unwrap_or_else(|| format!("partner #{id}"))
        };
        let (name_a, name_b) = (name(a), name(b));
        let ops = |system: CrmSystem| match system {
            CrmSystem::Salesforce => config.ops_owner.salesforce.clone(),
            CrmSystem::Hubspot => config.ops_owner.hubspot.clone(),
        };
        let target = partner_target(homes, a, &name_a, inputs.configured, Some(None))
            .or_else(|_| partner_target(homes, b, &name_b, inputs.configured, Some(None)))
            .map(|mut target| {
                target.owner_id = ops(target.system);
                target
            })
            .map_err(|_| format!("neither {name_a} (#{a}) nor {name_b} (#{b}) is in a CRM"));
        conditions.push(Condition {
            rule: "identity_review",
            subject: format!("pair{a}-{b}"),
            partner_id: Some(a),
            target,
            importance: 5.0 + confidence,
            title: format!(
                "Possible duplicate partner: {name_a} (#{a}) and {name_b} (#{b}) — confirm or keep apart"
            ),
            description: format!(
                "refbridge is {:.0}% sure these are one partner ({why}). If they are, add [[identity.merge]] to the refbridge config with both records (see `refbridge status`); if not, nothing needs to change and this task can be completed.",
                confidence * 100.0
            ),
            reason: format!("uncertain match: {why}"),
            due_in_days: config.identity_review.due_in_days,
            priority: config.identity_review.priority,
            kind: config.identity_review.task_type,
            dated: true,
        });
    }
    Ok(())
}

/// Leads that did not convert: a task on the lead's record with up to three partners that fit.
fn refer_out_rule(config: &RulesConfig, inputs: &RuleInputs<'_>, conditions: &mut Vec<Condition>) {
    for lead in inputs.leads {
        if lead.answer.options.is_empty() {
            continue;
        }
        let target = if inputs.configured.contains(&lead.system) {
            Ok(Target {
                system: lead.system,
                about_id: lead.lead_crm_id.clone(),
                owner_id: lead.owner_id.clone(),
            })
        } else {
            Err(format!(
                "the lead lives in {}, which is not configured",
                lead.system.as_str()
            ))
        };
        let mut options = String::new();
        for (index, option) in lead.answer.options.iter().enumerate() {
            options.push_str(&format!(
                "{}. {} — {}\n",
                index + 1,
                option.name,
                option.fit.task_reasons().join("; ")
            ));
        }
        let count = lead.answer.options.len() as u64;
        conditions.push(Condition {
            rule: "refer_out",
            subject: format!("lead-{}-{}", lead.system.as_str(), lead.lead_crm_id),
            partner_id: None,
            target,
            importance: 100.0,
            title: format!(
                "Refer out: {} fit this lead — contact one and record the placement",
                plural(count, "partner", "partners")
            ),
            description: format!(
                "This lead could not be admitted here. Partners that fit, best first (by fit only):\n{options}Record the referral out on this lead; refbridge then follows up on the placement."
            ),
            reason: format!("lead not admitted ({})", lead.reason),
            due_in_days: config.refer_out.due_in_days,
            priority: config.refer_out.priority,
            kind: config.refer_out.task_type,
            dated: false,
        });
    }
}

#[cfg(test)]
mod tests;
