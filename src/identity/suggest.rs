//! Matches identity resolution is not sure of: listed in `identity_suggestion` with a confidence
//! (0.5–0.79) and a sentence, never applied. A person decides, and pastes the merge `refbridge
//! status` prints into the config.
//!
//! Three kinds, each found by blocking (never by comparing every pair of partners): one name's
//! words contained in the other's (blocked by the first significant word), the same phone with a
//! different ZIP (blocked by phone), and the same name in different cities (blocked by name).
//! Pairs with two different NPIs are never suggested. A run that finds the same suggestions writes
//! nothing; pairs no longer suggested (or now one partner) are deleted.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rusqlite::{Connection, params};

use super::records::Record;

/// Words too common in partner names to say which partner a name means.
const GENERIC_WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "for",
    "at",
    "a",
    "hospital",
    "hospitals",
    "center",
    "centers",
    "medical",
    "health",
    "healthcare",
    "clinic",
    "clinics",
    "services",
    "counseling",
    "behavioral",
    "mental",
    "care",
    "regional",
    "community",
    "county",
    "group",
    "associates",
    "practice",
    "family",
    "department",
    "program",
    "treatment",
    "recovery",
    "saint",
    "university",
    "ed",
    "er",
];

/// The first word of a normalized name that says which partner it is (`None` when all are
/// generic).
pub(super) fn first_significant_word(normalized: &str) -> Option<&str> {
    normalized
        .split_whitespace()
        .find(|word| !GENERIC_WORDS.contains(word) && word.len() > 1)
}

/// One uncertain match between two live partners (`partner_id` < `candidate_id`).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Suggestion {
    pub method: &'static str,
    pub confidence: f64,
    pub reason: String,
}

/// What a partner's active records say, for judging a pair.
#[derive(Default)]
struct Facts {
    npis: BTreeSet<String>,
    cities: BTreeSet<String>,
    city_names: BTreeMap<String, String>,
}

/// This run's suggestions, by (lower, higher) partner id. Records a config split holds apart are
/// left out: a person already decided about them.
pub(super) fn find(
    records: &[Record],
    partner_of: &[i64],
    split: &[bool],
) -> BTreeMap<(i64, i64), Suggestion> {
    let considered = |index: usize| records[index].active && !split[index];
    let mut facts: HashMap<i64, Facts> = HashMap::new();
    for (index, record) in records.iter().enumerate() {
        if !considered(index) {
            continue;
        }
        let entry = facts.entry(partner_of[index]).or_default();
        if let Some(npi) = &record.npi {
            entry.npis.insert(npi.clone());
        }
        if let Some(city) = &record.city {
            entry.cities.insert(city.clone());
            let shown = record
                .crm
                .as_ref()
                .and_then(|crm| crm.city.as_deref())
                .map(str::trim)
                .unwrap_or(city);
            entry
                .city_names
                .entry(city.clone())
                .or_insert_with(|| shown.to_string());
        }
    }
    let mut found: BTreeMap<(i64, i64), Suggestion> = BTreeMap::new();
    let mut offer = |a: i64, b: i64, suggestion: Suggestion| {
        let key = (a.min(b), a.max(b));
        match found.get(&key) {
            Some(known) if known.confidence >= suggestion.confidence => {}
            _ => {
                found.insert(key, suggestion);
            }
        }
    };
    let npis_clash = |a: &Facts, b: &Facts| {
        !a.npis.is_empty() && !b.npis.is_empty() && a.npis.is_disjoint(&b.npis)
    };
    let cities_clash = |a: &Facts, b: &Facts| {
        !a.cities.is_empty() && !b.cities.is_empty() && a.cities.is_disjoint(&b.cities)
    };

    // Names and the partners holding them.
    let mut holders: BTreeMap<&str, BTreeSet<i64>> = BTreeMap::new();
    for (index, record) in records.iter().enumerate() {
        if considered(index) && !record.normalized.is_empty() {
            holders
                .entry(record.normalized.as_str())
                .or_default()
                .insert(partner_of[index]);
        }
    }

    // One name's words inside the other's ("mercy hospital" / "mercy hospital ed").
    let mut by_word: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for name in holders.keys() {
        if let Some(word) = first_significant_word(name) {
            by_word.entry(word).or_default().push(name);
        }
    }
    for names in by_word.values() {
        let mut sized: Vec<(BTreeSet<&str>, &str)> = names
            .iter()
            .map(|name| (name.split_whitespace().collect(), *name))
            .collect();
        sized.sort_by_key(|(words, name)| (words.len(), *name));
        for (i, (short_words, short)) in sized.iter().enumerate() {
            for (long_words, long) in &sized[i + 1..] {
                if long_words.len() <= short_words.len() || !short_words.is_subset(long_words) {
                    continue;
                }
                let added: Vec<&str> = long
                    .split_whitespace()
                    .filter(|word| !short_words.contains(word))
                    .collect();
                for &a in &holders[short] {
                    for &b in &holders[long] {
                        let (fa, fb) = (&facts[&a], &facts[&b]);
                        if a == b || npis_clash(fa, fb) || cities_clash(fa, fb) {
                            continue;
                        }
                        let reason = format!(
                            "same name words, one adds \"{}\"; {}; {}",
                            added.join(" "),
                            npi_phrase(fa, fb),
                            city_phrase(fa, fb)
                        );
                        let confidence = if added.len() == 1 { 0.7 } else { 0.6 };
                        offer(
                            a,
                            b,
                            Suggestion {
                                method: "name_words",
                                confidence,
                                reason,
                            },
                        );
                    }
                }
            }
        }
    }

    // The same phone with another ZIP: only when the names share a significant word, since
    // phones alone collide.
    let mut by_phone: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (index, record) in records.iter().enumerate() {
        if considered(index)
            && let Some(phone) = &record.phone
        {
            by_phone.entry(phone.as_str()).or_default().push(index);
        }
    }
    for (phone, members) in &by_phone {
        for (i, &x) in members.iter().enumerate() {
            for &y in &members[i + 1..] {
                let (a, b) = (partner_of[x], partner_of[y]);
                let (rx, ry) = (&records[x], &records[y]);
                let (Some(zx), Some(zy)) = (&rx.zip, &ry.zip) else {
                    continue;
                };
                if a == b || zx == zy || npis_clash(&facts[&a], &facts[&b]) {
                    continue;
                }
                let words_x: BTreeSet<&str> = significant_words(&rx.normalized).collect();
                let Some(shared) = significant_words(&ry.normalized).find(|w| words_x.contains(w))
                else {
                    continue;
                };
                offer(
                    a,
                    b,
                    Suggestion {
                        method: "phone_other_zip",
                        confidence: 0.65,
                        reason: format!(
                            "same phone {phone} and both names say \"{shared}\", but ZIP {zx} vs {zy}"
                        ),
                    },
                );
            }
        }
    }

    // The same name in different cities.
    for (name, partners) in &holders {
        let partners: Vec<i64> = partners.iter().copied().collect();
        for (i, &a) in partners.iter().enumerate() {
            for &b in &partners[i + 1..] {
                let (fa, fb) = (&facts[&a], &facts[&b]);
                if npis_clash(fa, fb) || !cities_clash(fa, fb) {
                    continue;
                }
                let cities = |f: &Facts| {
                    f.city_names
                        .values()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                offer(
                    a,
                    b,
                    Suggestion {
                        method: "name_other_city",
                        confidence: 0.5,
                        reason: format!(
                            "same name \"{name}\" in different cities ({} vs {}); {}",
                            cities(fa),
                            cities(fb),
                            npi_phrase(fa, fb)
                        ),
                    },
                );
            }
        }
    }
    found
}

fn significant_words(normalized: &str) -> impl Iterator<Item = &str> {
    normalized
        .split_whitespace()
        .filter(|word| !GENERIC_WORDS.contains(word) && word.len() > 1)
}

fn npi_phrase(a: &Facts, b: &Facts) -> &'static str {
    match (a.npis.is_empty(), b.npis.is_empty()) {
        (true, true) => "no NPI on either",
        (false, false) => "same NPI",
        _ => "an NPI on one side only",
    }
}

fn city_phrase(a: &Facts, b: &Facts) -> String {
    match (a.cities.is_empty(), b.cities.is_empty()) {
        (true, true) => "no city on either".to_string(),
        (false, false) => {
            let shared: Vec<&str> = a
                .cities
                .intersection(&b.cities)
                .filter_map(|city| a.city_names.get(city).map(String::as_str))
                .collect();
            format!("both in {}", shared.join(", "))
        }
        _ => "a city on one side only".to_string(),
    }
}

/// Stores this run's suggestions: new pairs inserted, changed ones updated (`last_seen_at` is when
/// their evidence last changed), vanished ones deleted. Returns how many are stored.
pub(super) fn store(
    connection: &Connection,
    found: &BTreeMap<(i64, i64), Suggestion>,
    now: &str,
) -> rusqlite::Result<u64> {
    let mut existing: HashMap<(i64, i64), (String, f64, String)> = HashMap::new();
    {
        let mut statement = connection.prepare(
            "SELECT partner_id, candidate_id, method, confidence, reason FROM identity_suggestion",
        )?;
        let rows = statement.query_map([], |row| {
            Ok((
                (row.get::<_, i64>(0)?, row.get::<_, i64>(1)?),
                (
                    row.get::<_, String>(2)?,
                    row.get::<_, f64>(3)?,
                    row.get::<_, String>(4)?,
                ),
            ))
        })?;
        for row in rows {
            let (key, value) = row?;
            existing.insert(key, value);
        }
    }
    for (key, suggestion) in found {
        match existing.remove(key) {
            Some((method, confidence, reason))
                if method == suggestion.method
                    && confidence == suggestion.confidence
                    && reason == suggestion.reason => {}
            Some(_) => {
                connection
                    .prepare_cached(
                        "UPDATE identity_suggestion SET method = ?3, confidence = ?4, reason = ?5,
                             last_seen_at = ?6
                         WHERE partner_id = ?1 AND candidate_id = ?2",
                    )?
                    .execute(params![
                        key.0,
                        key.1,
                        suggestion.method,
                        suggestion.confidence,
                        suggestion.reason,
                        now
                    ])?;
            }
            None => {
                connection
                    .prepare_cached(
                        "INSERT INTO identity_suggestion (partner_id, candidate_id, method,
                             confidence, reason, first_seen_at, last_seen_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                    )?
                    .execute(params![
                        key.0,
                        key.1,
                        suggestion.method,
                        suggestion.confidence,
                        suggestion.reason,
                        now
                    ])?;
            }
        }
    }
    for key in existing.keys() {
        connection
            .prepare_cached(
                "DELETE FROM identity_suggestion WHERE partner_id = ?1 AND candidate_id = ?2",
            )?
            .execute(params![key.0, key.1])?;
    }
    Ok(found.len() as u64)
}
