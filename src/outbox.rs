//! The outbox, planned and applied: today's conditions against the alerts already open, turned
//! into task intents to create, update and close, under a per-rep daily budget, snoozes and a
//! circuit breaker.
//!
//! An alert is one rule about one subject for one episode: it opens when its condition starts to
//! hold (a state transition, not every run), its open task is updated when the words change, and
//! it is closed (the task completed by refbridge) when the condition clears. A rep who completes
//! the task while the condition still holds has answered it: it is not reopened until the
//! condition clears and comes back. Keys are deterministic — `rule:subject:episode-start` for
//! partner-level conditions, `rule:subject` for one referral or lead (whose key must not date a
//! patient's referral) — so a crash or a retry upserts the same CRM task and never a second one.
//!
//! [`reconcile`] does all of it inside the caller's transaction: `refbridge plan` rolls it back
//! (nothing is written, nothing sent), `sync` commits it and then pushes. This module never speaks
//! HTTP; it writes `alert` and `outbox` rows only.

use std::collections::HashMap;

use chrono::{Duration, NaiveDate};
use refbridge_model::crm::{CrmSystem, TaskIntent};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::ledger::crm::enqueue;
use crate::rules::config::{OutboxConfig, RulesConfig};
use crate::rules::{Condition, Target};

/// One task in a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedTask {
    pub system: &'static str,
    pub key: String,
    pub rule: String,
    pub partner_id: Option<i64>,
    pub owner_id: Option<String>,
    pub title: String,
    pub reason: String,
}

/// A condition that cannot become a task, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InvalidCondition {
    pub rule: String,
    pub subject: String,
    pub partner_id: Option<i64>,
    pub problem: String,
}

/// The circuit breaker's verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Breaker {
    pub open_tasks: u64,
    pub changes: u64,
    pub limit_share: f64,
    pub tripped: bool,
}

/// What the next push would create, update and close, and what it leaves alone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub as_of: NaiveDate,
    pub create: Vec<PlannedTask>,
    pub update: Vec<PlannedTask>,
    pub close: Vec<PlannedTask>,
    /// Open tasks whose words did not change.
    pub unchanged: u64,
    /// New alerts held back by a rep's daily budget; they open on a later day.
    pub waiting: Vec<PlannedTask>,
    /// Tasks the rep completed while the condition still holds (not reopened).
    pub answered: u64,
    pub snoozed: u64,
    pub invalid: Vec<InvalidCondition>,
    /// Intents queued earlier and not yet acknowledged by their CRM (sent again by the next push).
    pub retries: u64,
    /// Intents a CRM refused for good (see `refbridge status`).
    pub refused: u64,
    pub breaker: Breaker,
}

impl Plan {
    /// True when the plan changes nothing in any CRM.
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.close.is_empty()
    }
}

/// Why a plan was not applied.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error(
        "the circuit breaker refused the plan: it would update or close {changes} of {open} open tasks ({share:.0}% > outbox.max_change_share {limit:.0}%); check the rules and the last pull, then run `refbridge plan` to review and `refbridge sync --once --allow-mass-change` to accept it"
    )]
    Breaker {
        changes: u64,
        open: u64,
        share: f64,
        limit: f64,
        plan: Box<Plan>,
    },
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
}

/// When and how `reconcile` runs.
pub struct ReconcileOptions<'a> {
    pub as_of: NaiveDate,
    /// The day budgets are counted on (today, UTC).
    pub today: NaiveDate,
    /// The timestamp written on rows.
    pub now: &'a str,
    /// Apply even when the breaker trips.
    pub allow_mass_change: bool,
}

struct AlertRow {
    key: String,
    rule: String,
    system: String,
    state: String,
    opened_at: String,
}

/// The alert's rule and subject: its key without the day its episode began (keys about one
/// referral or lead carry no day).
fn episode_of(key: &str) -> &str {
    match key.rsplit_once(':') {
        Some((head, day)) if NaiveDate::parse_from_str(day, "%Y-%m-%d").is_ok() => head,
        _ => key,
    }
}

fn load_live_alerts(connection: &Connection) -> rusqlite::Result<HashMap<String, AlertRow>> {
    let mut statement = connection.prepare(
        "SELECT key, rule, system, state, opened_at FROM alert WHERE state != 'closed' ORDER BY key",
    )?;
    let rows = statement.query_map([], |row| {
        Ok(AlertRow {
            key: row.get(0)?,
            rule: row.get(1)?,
            system: row.get(2)?,
            state: row.get(3)?,
            opened_at: row.get(4)?,
        })
    })?;
    let mut alerts = HashMap::new();
    for row in rows {
        let row = row?;
        alerts.insert(episode_of(&row.key).to_string(), row);
    }
    Ok(alerts)
}

/// What the outbox last held for a key: the intent and whether a CRM acknowledged it.
fn queued(
    connection: &Connection,
    system: CrmSystem,
    key: &str,
) -> rusqlite::Result<Option<(TaskIntent, bool)>> {
    let row: Option<(String, Option<String>)> = connection
        .prepare_cached("SELECT intent, crm_task_id FROM outbox WHERE system = ?1 AND key = ?2")?
        .query_row(params![system.as_str(), key], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    row.map(|(json, task_id)| {
        serde_json::from_str::<TaskIntent>(&json)
            .map(|intent| (intent, task_id.is_some()))
            .map_err(|error| {
                rusqlite::Error::FromSqlConversionFailure(
                    0,
                    rusqlite::types::Type::Text,
                    Box::new(error),
                )
            })
    })
    .transpose()
}

/// (system, owner id) → the rep's email, for reps the CRMs give one.
fn reps_by_email(connection: &Connection) -> rusqlite::Result<HashMap<(String, String), String>> {
    let mut statement = connection.prepare(
        "SELECT system, external_id, lower(email) FROM rep WHERE email IS NOT NULL AND email <> ''",
    )?;
    let rows = statement.query_map([], |row| Ok(((row.get(0)?, row.get(1)?), row.get(2)?)))?;
    rows.collect()
}

/// Keys of refbridge tasks a CRM reports completed (or deleted) by someone: the rep's answer.
fn answered_keys(connection: &Connection) -> rusqlite::Result<HashMap<(String, String), ()>> {
    let mut statement = connection.prepare(
        "SELECT system, json_extract(body, '$.key') FROM crm_record
         WHERE stream = 'tasks' AND (deleted = 1 OR json_extract(body, '$.completed') = 1)",
    )?;
    let rows = statement.query_map([], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, Option<String>>(1)?))
    })?;
    let mut keys = HashMap::new();
    for row in rows {
        if let (system, Some(key)) = row? {
            keys.insert((system, key), ());
        }
    }
    Ok(keys)
}

fn snoozed(config: &RulesConfig, condition: &Condition, as_of: NaiveDate) -> bool {
    config.snooze.iter().any(|snooze| {
        Some(snooze.partner) == condition.partner_id
            && snooze
                .rule
                .as_deref()
                .is_none_or(|rule| rule == condition.rule)
            && snooze.until >= as_of
    })
}

fn intent_for(condition: &Condition, target: &Target, key: &str, opened: NaiveDate) -> TaskIntent {
    TaskIntent {
        key: key.to_string(),
        owner_id: target.owner_id.clone(),
        about_id: target.about_id.clone(),
        subject: condition.title.clone(),
        description: condition.description.clone(),
        due: opened + Duration::days(i64::from(condition.due_in_days)),
        priority: condition.priority,
        kind: condition.kind,
        completed: false,
    }
}

fn planned(condition: &Condition, target: &Target, key: &str) -> PlannedTask {
    PlannedTask {
        system: target.system.as_str(),
        key: key.to_string(),
        rule: condition.rule.to_string(),
        partner_id: condition.partner_id,
        owner_id: target.owner_id.clone(),
        title: condition.title.clone(),
        reason: condition.reason.clone(),
    }
}

fn date_of(timestamp: &str) -> NaiveDate {
    timestamp
        .get(..10)
        .and_then(|day| NaiveDate::parse_from_str(day, "%Y-%m-%d").ok())
        .unwrap_or(NaiveDate::MIN)
}

/// Turns today's conditions into alert changes and outbox intents, inside the caller's
/// transaction. Returns the plan; with the breaker tripped (and not allowed) it returns
/// [`OutboxError::Breaker`] and the caller must roll back.
pub fn reconcile(
    connection: &Connection,
    conditions: &[Condition],
    rules: &RulesConfig,
    outbox: &OutboxConfig,
    options: &ReconcileOptions<'_>,
) -> Result<Plan, OutboxError> {
    let now = options.now;
    let mut plan = Plan {
        as_of: options.as_of,
        create: Vec::new(),
        update: Vec::new(),
        close: Vec::new(),
        unchanged: 0,
        waiting: Vec::new(),
        answered: 0,
        snoozed: 0,
        invalid: Vec::new(),
        retries: 0,
        refused: 0,
        breaker: Breaker {
            open_tasks: 0,
            changes: 0,
            limit_share: outbox.max_change_share,
            tripped: false,
        },
    };
    let (retries, refused): (i64, i64) = connection.query_row(
        "SELECT count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE status = 'permanent')
         FROM outbox",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    plan.retries = retries as u64;
    plan.refused = refused as u64;
    let mut alerts = load_live_alerts(connection)?;
    plan.breaker.open_tasks = alerts.values().filter(|a| a.state == "open").count() as u64;
    let answered = answered_keys(connection)?;

    // A rep's completion while the alert is open: the alert is answered.
    for alert in alerts.values_mut() {
        if alert.state == "open"
            && answered.contains_key(&(alert.system.clone(), alert.key.clone()))
        {
            let Some(system) = CrmSystem::parse(&alert.system) else {
                continue;
            };
            let ours = queued(connection, system, &alert.key)?;
            if ours.is_some_and(|(intent, _)| !intent.completed) {
                connection.execute(
                    "UPDATE alert SET state = 'done', updated_at = ?2 WHERE key = ?1",
                    params![alert.key, now],
                )?;
                alert.state = "done".to_string();
            }
        }
    }

    let mut holding: HashMap<String, (&Condition, &Target)> = HashMap::new();
    let mut candidates: Vec<(&Condition, &Target, String)> = Vec::new();
    for condition in conditions {
        if snoozed(rules, condition, options.as_of) {
            plan.snoozed += 1;
            continue;
        }
        let target = match &condition.target {
            Ok(target) => target,
            Err(problem) => {
                plan.invalid.push(InvalidCondition {
                    rule: condition.rule.to_string(),
                    subject: condition.subject.clone(),
                    partner_id: condition.partner_id,
                    problem: problem.clone(),
                });
                continue;
            }
        };
        let episode = format!("{}:{}", condition.rule, condition.subject);
        match alerts.get(&episode) {
            Some(alert) if alert.system == target.system.as_str() => {
                holding.insert(episode, (condition, target));
            }
            _ => {
                let key = match condition.dated {
                    true => format!("{episode}:{}", options.as_of),
                    false => episode,
                };
                candidates.push((condition, target, key));
            }
        }
    }

    // Alerts already live: update, keep, or close.
    let mut live: Vec<&AlertRow> = alerts.values().collect();
    live.sort_by(|a, b| a.key.cmp(&b.key));
    for alert in live {
        let episode = episode_of(&alert.key);
        let system = CrmSystem::parse(&alert.system);
        match (holding.get(episode), alert.state.as_str()) {
            (Some((condition, target)), "open") => {
                let intent = intent_for(condition, target, &alert.key, date_of(&alert.opened_at));
                let before = queued(connection, target.system, &alert.key)?;
                let changed = before.as_ref().is_none_or(|(queued, _)| *queued != intent);
                if changed {
                    enqueue(
                        connection,
                        target.system,
                        std::slice::from_ref(&intent),
                        now,
                    )?;
                    connection.execute(
                        "UPDATE alert SET reason = ?2, owner_id = ?3, updated_at = ?4 WHERE key = ?1",
                        params![alert.key, condition.reason, target.owner_id, now],
                    )?;
                    let acknowledged = before.is_some_and(|(_, stored)| stored);
                    if acknowledged {
                        plan.update.push(planned(condition, target, &alert.key));
                    } else {
                        plan.create.push(planned(condition, target, &alert.key));
                    }
                } else {
                    plan.unchanged += 1;
                }
            }
            (Some((condition, target)), "waiting") => {
                candidates.push((condition, target, alert.key.clone()));
            }
            (Some(_), _) => plan.answered += 1, // done: the rep answered it
            (None, state) => {
                // The condition cleared (or was snoozed): close what the CRM holds.
                if state == "open"
                    && let Some(system) = system
                    && let Some((mut intent, _)) = queued(connection, system, &alert.key)?
                    && !intent.completed
                {
                    intent.completed = true;
                    enqueue(connection, system, std::slice::from_ref(&intent), now)?;
                    plan.close.push(PlannedTask {
                        system: system.as_str(),
                        key: alert.key.clone(),
                        rule: alert.rule.clone(),
                        partner_id: None,
                        owner_id: intent.owner_id.clone(),
                        title: intent.subject.clone(),
                        reason: "the condition cleared".to_string(),
                    });
                }
                connection.execute(
                    "UPDATE alert SET state = 'closed', closed_at = ?2, updated_at = ?2 WHERE key = ?1",
                    params![alert.key, now],
                )?;
            }
        }
    }

    // New alerts, most important first, within each owner's budget for today.
    candidates.sort_by(|a, b| {
        b.0.importance
            .total_cmp(&a.0.importance)
            .then_with(|| a.2.cmp(&b.2))
    });
    // A rep is one person in both CRMs (matched by the email the CRMs report); a queue is per CRM.
    let person_of = reps_by_email(connection)?;
    let person = |system: &str, owner: Option<&str>| -> String {
        match owner {
            Some(owner) => person_of
                .get(&(system.to_string(), owner.to_string()))
                .cloned()
                .unwrap_or_else(|| format!("{system}:{owner}")),
            None => format!("{system}:(queue)"),
        }
    };
    let mut spent: HashMap<String, u32> = HashMap::new();
    {
        let mut statement = connection.prepare(
            "SELECT system, owner_id, count(*) FROM alert
             WHERE state != 'waiting' AND substr(opened_at, 1, 10) = ?1 GROUP BY system, owner_id",
        )?;
        let rows = statement.query_map([options.today.to_string()], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, Option<String>>(1)?,
                row.get::<_, u32>(2)?,
            ))
        })?;
        for row in rows {
            let (system, owner, count) = row?;
            *spent.entry(person(&system, owner.as_deref())).or_default() += count;
        }
    }
    for (condition, target, key) in candidates {
        let owner = person(target.system.as_str(), target.owner_id.as_deref());
        let used = spent.get(&owner).copied().unwrap_or(0);
        if used >= rules.daily_budget_per_rep {
            connection.execute(
                "INSERT INTO alert (key, rule, partner_id, system, owner_id, state, reason, opened_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'waiting', ?6, ?7, ?7)
                 ON CONFLICT (key) DO UPDATE SET reason = excluded.reason, owner_id = excluded.owner_id,
                     updated_at = excluded.updated_at",
                params![key, condition.rule, condition.partner_id, target.system.as_str(),
                        target.owner_id, condition.reason, now],
            )?;
            plan.waiting.push(planned(condition, target, &key));
            continue;
        }
        spent.insert(owner, used + 1);
        let intent = intent_for(condition, target, &key, options.today);
        enqueue(
            connection,
            target.system,
            std::slice::from_ref(&intent),
            now,
        )?;
        connection.execute(
            "INSERT INTO alert (key, rule, partner_id, system, owner_id, state, reason, opened_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 'open', ?6, ?7, ?7)
             ON CONFLICT (key) DO UPDATE SET state = 'open', reason = excluded.reason,
                 owner_id = excluded.owner_id, opened_at = excluded.opened_at,
                 updated_at = excluded.updated_at, closed_at = NULL",
            params![key, condition.rule, condition.partner_id, target.system.as_str(),
                    target.owner_id, condition.reason, now],
        )?;
        plan.create.push(planned(condition, target, &key));
    }

    plan.breaker.changes = (plan.update.len() + plan.close.len()) as u64;
    let open = plan.breaker.open_tasks;
    let share = if open == 0 {
        0.0
    } else {
        plan.breaker.changes as f64 / open as f64
    };
    plan.breaker.tripped = open >= outbox.breaker_min_open_tasks && share > outbox.max_change_share;
    if plan.breaker.tripped && !options.allow_mass_change {
        return Err(OutboxError::Breaker {
            changes: plan.breaker.changes,
            open,
            share: share * 100.0,
            limit: outbox.max_change_share * 100.0,
            plan: Box::new(plan),
        });
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Ledger;
    use crate::rules::config::Snooze;
    use refbridge_model::crm::{TaskKind, TaskPriority};

    fn ledger() -> (tempfile::TempDir, Ledger) {
        let (directory, ledger) = crate::ledger::scratch();
        for id in 1..=40 {
            ledger
                .connection()
                .execute(
                    "INSERT INTO partner (id, name, normalized_name, origin, created_at, updated_at)
                     VALUES (?1, 'Partner', 'partner', 'ehr', 't', 't')",
                    [id],
                )
                .unwrap();
        }
        (directory, ledger)
    }

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
    }

    fn condition(rule: &'static str, partner: i64, owner: &str, title: &str) -> Condition {
        Condition {
            rule,
            subject: format!("p{partner}"),
            partner_id: Some(partner),
            target: Ok(Target {
                system: CrmSystem::Salesforce,
                about_id: format!("001{partner:05}"),
                owner_id: Some(owner.to_string()),
            }),
            importance: partner as f64,
            title: title.to_string(),
            description: "partner-level words".to_string(),
            reason: "because".to_string(),
            due_in_days: 3,
            priority: TaskPriority::High,
            kind: TaskKind::Call,
            dated: true,
        }
    }

    /// Runs one reconcile on `as_of` inside a committed transaction.
    fn run(
        ledger: &Ledger,
        conditions: &[Condition],
        rules: &RulesConfig,
        as_of: NaiveDate,
    ) -> Plan {
        let connection = ledger.connection();
        connection.execute_batch("BEGIN").unwrap();
        let plan = reconcile(
            connection,
            conditions,
            rules,
            &OutboxConfig::default(),
            &ReconcileOptions {
                as_of,
                today: as_of,
                now: &format!("{as_of}T06:00:00.000Z"),
                allow_mass_change: false,
            },
        )
        .unwrap();
        connection.execute_batch("COMMIT").unwrap();
        plan
    }

    fn outbox_rows(ledger: &Ledger) -> Vec<(String, bool)> {
        let mut statement = ledger
            .connection()
            .prepare("SELECT key, intent FROM outbox ORDER BY key")
            .unwrap();
        statement
            .query_map([], |row| {
                let intent: String = row.get(1)?;
                let intent: TaskIntent = serde_json::from_str(&intent).unwrap();
                Ok((row.get(0)?, intent.completed))
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    /// Pretends the CRM stored every pending intent.
    fn acknowledge(ledger: &Ledger) {
        ledger
            .connection()
            .execute(
                "UPDATE outbox SET status = 'stored', crm_task_id = '00T' || id WHERE status = 'pending'",
                [],
            )
            .unwrap();
    }

    #[test]
    fn an_alert_opens_updates_in_place_and_closes_when_its_condition_clears() {
        let (_directory, ledger) = ledger();
        let rules = RulesConfig::default();
        let first = run(
            &ledger,
            &[condition("declining", 1, "005A", "Mercy: 2 referrals")],
            &rules,
            day(1),
        );
        assert_eq!(
            (first.create.len(), first.update.len(), first.close.len()),
            (1, 0, 0)
        );
        let key = first.create[0].key.clone();
        assert_eq!(key, "declining:p1:2026-11-01");
        acknowledge(&ledger);

        let same = run(
            &ledger,
            &[condition("declining", 1, "005A", "Mercy: 2 referrals")],
            &rules,
            day(2),
        );
        assert!(
            same.is_empty(),
            "an unchanged condition changes nothing: {same:?}"
        );
        assert_eq!(same.unchanged, 1);

        let worse = run(
            &ledger,
            &[condition("declining", 1, "005A", "Mercy: 1 referral")],
            &rules,
            day(3),
        );
        assert_eq!(
            worse.update.len(),
            1,
            "the open task is updated, not duplicated"
        );
        assert_eq!(worse.update[0].key, key, "same key, same CRM task");
        acknowledge(&ledger);

        let cleared = run(&ledger, &[], &rules, day(4));
        assert_eq!(cleared.close.len(), 1);
        assert_eq!(
            outbox_rows(&ledger),
            vec![(key.clone(), true)],
            "one row, now completed"
        );
        acknowledge(&ledger);

        // The condition returns: a new episode, a new task.
        let again = run(
            &ledger,
            &[condition("declining", 1, "005A", "Mercy: 0 referrals")],
            &rules,
            day(20),
        );
        assert_eq!(again.create[0].key, "declining:p1:2026-11-20");
        assert_eq!(outbox_rows(&ledger).len(), 2);
    }

    #[test]
    fn the_daily_budget_opens_the_most_important_first_and_the_rest_wait() {
        let (_directory, ledger) = ledger();
        let rules = RulesConfig {
            daily_budget_per_rep: 2,
            ..RulesConfig::default()
        };
        let conditions: Vec<Condition> = (1..=5)
            .map(|partner| condition("silent", partner, "005A", "quiet"))
            .chain([condition("silent", 9, "005B", "quiet")])
            .collect();
        let first = run(&ledger, &conditions, &rules, day(1));
        let opened: Vec<Option<i64>> = first.create.iter().map(|t| t.partner_id).collect();
        assert_eq!(
            opened,
            vec![Some(9), Some(5), Some(4)],
            "5 and 4 matter most for 005A"
        );
        assert_eq!(first.waiting.len(), 3);
        acknowledge(&ledger);

        let same_day = run(&ledger, &conditions, &rules, day(1));
        assert!(same_day.create.is_empty(), "the budget is spent for today");
        let next_day = run(&ledger, &conditions, &rules, day(2));
        let opened: Vec<Option<i64>> = next_day.create.iter().map(|t| t.partner_id).collect();
        assert_eq!(opened, vec![Some(3), Some(2)]);
        assert_eq!(next_day.waiting.len(), 1);
    }

    #[test]
    fn a_rep_in_both_crms_has_one_budget() {
        let (_directory, ledger) = ledger();
        for (system, id) in [("salesforce", "005A"), ("hubspot", "7001")] {
            ledger
                .connection()
                .execute(
                    "INSERT INTO rep (system, external_id, name, email, active)
                     VALUES (?1, ?2, 'Ana Ruiz', ?3, 1)",
                    params![
                        system,
                        id,
                        if system == "hubspot" {
                            "Ana@Example.org"
                        } else {
                            "ana@example.org"
                        }
                    ],
                )
                .unwrap();
        }
        let rules = RulesConfig {
            daily_budget_per_rep: 4,
            ..RulesConfig::default()
        };
        let conditions: Vec<Condition> = (1..=6)
            .map(|partner| {
                let mut c = condition("silent", partner, "005A", "quiet");
                if partner > 3 {
                    c.target = Ok(Target {
                        system: CrmSystem::Hubspot,
                        about_id: format!("9{partner}"),
                        owner_id: Some("7001".to_string()),
                    });
                }
                c
            })
            .collect();
        let plan = run(&ledger, &conditions, &rules, day(1));
        assert_eq!(plan.create.len(), 4, "one person, one budget: {plan:?}");
        assert_eq!(plan.waiting.len(), 2);
    }

    #[test]
    fn a_task_the_rep_completed_is_not_reopened_while_the_condition_holds() {
        let (_directory, ledger) = ledger();
        let rules = RulesConfig::default();
        let conditions = [condition("no_touch", 1, "005A", "no touch")];
        let first = run(&ledger, &conditions, &rules, day(1));
        acknowledge(&ledger);
        let key = &first.create[0].key;
        ledger
            .connection()
            .execute(
                "INSERT INTO crm_record (system, stream, external_id, modified_at, body, first_sync_run_id, last_sync_run_id)
                 VALUES ('salesforce', 'tasks', '00T1', '2026-11-02T00:00:00.000Z', ?1, 1, 1)",
                [serde_json::json!({"type": "task", "id": "00T1", "key": key, "status": "Completed", "completed": true, "owner_id": "005A"}).to_string()],
            )
            .unwrap();
        let later = run(&ledger, &conditions, &rules, day(3));
        assert!(later.is_empty(), "{later:?}");
        assert_eq!(later.answered, 1);
        let cleared = run(&ledger, &[], &rules, day(4));
        assert!(cleared.close.is_empty(), "the rep already closed it");
    }

    #[test]
    fn snoozes_hold_tasks_back_until_their_day() {
        let (_directory, ledger) = ledger();
        let rules = RulesConfig {
            snooze: vec![Snooze {
                partner: 1,
                rule: Some("declining".to_string()),
                until: day(10),
            }],
            ..RulesConfig::default()
        };
        let conditions = [
            condition("declining", 1, "005A", "snoozed"),
            condition("no_touch", 1, "005A", "not snoozed"),
        ];
        let during = run(&ledger, &conditions, &rules, day(5));
        assert_eq!(during.snoozed, 1);
        assert_eq!(during.create.len(), 1);
        assert_eq!(during.create[0].rule, "no_touch");
        let after = run(&ledger, &conditions, &rules, day(11));
        assert_eq!(after.create.len(), 1);
        assert_eq!(after.create[0].rule, "declining");
    }

    #[test]
    fn the_circuit_breaker_refuses_a_plan_that_closes_most_open_tasks() {
        let (_directory, ledger) = ledger();
        let rules = RulesConfig {
            daily_budget_per_rep: 100,
            ..RulesConfig::default()
        };
        let conditions: Vec<Condition> = (1..=30)
            .map(|partner| condition("silent", partner, "005A", "quiet"))
            .collect();
        run(&ledger, &conditions, &rules, day(1));
        acknowledge(&ledger);
        let connection = ledger.connection();
        connection.execute_batch("BEGIN").unwrap();
        let refused = reconcile(
            connection,
            &conditions[..5],
            &rules,
            &OutboxConfig::default(),
            &ReconcileOptions {
                as_of: day(2),
                today: day(2),
                now: "2026-11-02T06:00:00.000Z",
                allow_mass_change: false,
            },
        );
        connection.execute_batch("ROLLBACK").unwrap();
        match refused {
            Err(OutboxError::Breaker {
                changes,
                open,
                plan,
                ..
            }) => {
                assert_eq!((changes, open), (25, 30));
                assert!(plan.breaker.tripped);
            }
            other => panic!("expected the breaker, got {other:?}"),
        }
        let pending: i64 = connection
            .query_row(
                "SELECT count(*) FROM outbox WHERE status = 'pending'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(pending, 0, "a refused plan queues nothing");
        let small = run(&ledger, &conditions[..20], &rules, day(2));
        assert_eq!(
            small.close.len(),
            10,
            "a third of the tasks is a normal day"
        );
    }

    #[test]
    fn a_condition_without_a_crm_record_is_listed_as_invalid() {
        let (_directory, ledger) = ledger();
        let mut orphan = condition("declining", 7, "005A", "x");
        orphan.target = Err("Mercy (#7) is in no CRM".to_string());
        let plan = run(&ledger, &[orphan], &RulesConfig::default(), day(1));
        assert!(plan.create.is_empty());
        assert_eq!(plan.invalid.len(), 1);
        assert!(outbox_rows(&ledger).is_empty());
    }
}
