//! Partners from referral-source names at import time: one partner, many spellings.
//!
//! A name from an export resolves to a partner by its spelling's existing source record, else by
//! NPI (when present and valid), else by its normalized name (case, punctuation, suffixes such as
//! Inc/LLC, honorifics, and abbreviations such as Hosp → Hospital), else by a configured
//! `[[identity.alias]]`; otherwise it becomes a new partner known only from the EHR. Each spelling
//! (name and NPI together: see [`ehr_external_key`]) is kept as a source record with how it
//! matched, and every referral points at its spelling's record. This is the fast, exact matching a
//! million-row import can afford (one hash lookup per row); it must not merge or move partners:
//! fuzzy evidence, CRM records, merges and splits belong to [`crate::identity`], which re-clusters
//! every source record after each cycle.

use std::collections::HashMap;

use refbridge_model::{Npi, PartnerRef};
use rusqlite::Connection;

use crate::config::AliasConfig;
use crate::ledger::store::{self, NewPartner, NewSourceRecord};

/// Abbreviations expanded before names are compared.
const EXPANSIONS: &[(&str, &str)] = &[
    ("hosp", "hospital"),
    ("hsptl", "hospital"),
    ("ctr", "center"),
    ("cntr", "center"),
    ("centre", "center"),
    ("med", "medical"),
    ("hlth", "health"),
    ("svc", "services"),
    ("svcs", "services"),
    ("service", "services"),
    ("mem", "memorial"),
    ("univ", "university"),
    ("st", "saint"),
    ("mt", "mount"),
    ("dept", "department"),
    ("assoc", "associates"),
    ("assocs", "associates"),
    ("grp", "group"),
    ("rehab", "rehabilitation"),
    ("tx", "treatment"),
    ("bh", "behavioral health"),
    ("behavioural", "behavioral"),
    ("&", "and"),
];

/// Words dropped before names are compared: legal suffixes, honorifics, credentials, articles.
const DROPPED: &[&str] = &[
    "inc",
    "incorporated",
    "llc",
    "pllc",
    "pc",
    "pa",
    "corp",
    "corporation",
    "ltd",
    "lp",
    "llp",
    "co",
    "company",
    "the",
    "dr",
    "md",
    "do",
    "phd",
    "psyd",
    "lcsw",
    "lmft",
    "lpc",
    "np",
    "rn",
];

/// The comparison key of a partner name: "The Mercy Hosp., Inc." → "mercy hospital".
pub fn normalize_name(name: &str) -> String {
    let mut spaced = String::with_capacity(name.len() + 8);
    for c in name.chars() {
        if c == '&' {
            spaced.push_str(" & ");
        } else if c.is_alphanumeric() {
            spaced.extend(c.to_lowercase());
        } else if c == '\'' || c == '’' {
            // "St. Mary's" and "St Marys" compare equal.
        } else {
            spaced.push(' ');
        }
    }
    let mut words: Vec<&str> = Vec::new();
    for word in spaced.split_whitespace() {
        if DROPPED.contains(&word) {
            continue;
        }
        match EXPANSIONS.iter().find(|(short, _)| *short == word) {
            Some((_, long)) => words.extend(long.split(' ')),
            None => words.push(word),
        }
    }
    words.join(" ")
}

/// How a name was matched to a partner, as stored on its source record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchMethod {
    Npi,
    Name,
    Alias,
    New,
}

impl MatchMethod {
    fn as_str(self) -> &'static str {
        match self {
            MatchMethod::Npi => "npi",
            MatchMethod::Name => "name",
            MatchMethod::Alias => "alias",
            MatchMethod::New => "new",
        }
    }

    fn confidence(self) -> f64 {
        match self {
            MatchMethod::Npi | MatchMethod::Alias | MatchMethod::New => 1.0,
            MatchMethod::Name => 0.9,
        }
    }
}

/// The source-record key of an EHR spelling: the name as written, and the NPI it came with
/// (`"Mercy Hospital [NPI 1234567893]"`). One name given with two NPIs names two providers, so
/// the NPI is part of the key; config references (`ehr:<key>`) use the same text.
pub fn ehr_external_key(raw_name: &str, npi: Option<&Npi>) -> String {
    match npi {
        Some(npi) => format!("{raw_name} [NPI {npi}]"),
        None => raw_name.to_string(),
    }
}

/// The NPI an EHR spelling's key carries, if any (the inverse of [`ehr_external_key`]).
pub fn npi_of_ehr_key(key: &str) -> Option<Npi> {
    let inner = key.strip_suffix(']')?;
    let (_, npi) = inner.rsplit_once(" [NPI ")?;
    Npi::parse(npi).ok()
}

/// Where a spelling resolved to: the partner, and the spelling's source record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    pub partner_id: i64,
    pub source_record_id: i64,
}

/// Resolves partner names to partner ids, keeping an in-memory index of the ledger's partners so
/// that a million-row import costs one hash lookup per row.
pub struct PartnerResolver {
    system: &'static str,
    by_npi: HashMap<String, i64>,
    by_name: HashMap<String, i64>,
    npi_of: HashMap<i64, Option<String>>,
    aliases: Vec<AliasConfig>,
    alias_by_name: HashMap<String, usize>,
    /// Source records of this system already in the ledger: key → where it resolves.
    by_key: HashMap<String, Resolved>,
    /// Raw spellings already resolved in this process: name → [(npi, resolved)].
    resolved: HashMap<String, Vec<(Option<Npi>, Resolved)>>,
    pub partners_created: u64,
}

impl PartnerResolver {
    /// Loads the partner index from the ledger for names coming from `system` (e.g. `ehr`). A
    /// partner that identity resolution merged into another stands for the one it went to.
    pub fn load(
        connection: &Connection,
        system: &'static str,
        aliases: &[AliasConfig],
    ) -> rusqlite::Result<PartnerResolver> {
        let mut resolver = PartnerResolver {
            system,
            by_npi: HashMap::new(),
            by_name: HashMap::new(),
            npi_of: HashMap::new(),
            aliases: aliases.to_vec(),
            alias_by_name: HashMap::new(),
            by_key: HashMap::new(),
            resolved: HashMap::new(),
            partners_created: 0,
        };
        let partners = store::load_partners(connection)?;
        for partner in &partners {
            if partner.merged_into.is_none() {
                resolver.npi_of.insert(partner.id, partner.npi.clone());
            }
        }
        for partner in partners {
            let live = partner.merged_into.unwrap_or(partner.id);
            if let Some(npi) = partner.npi {
                resolver.by_npi.insert(npi, live);
            }
            resolver
                .by_name
                .entry(partner.normalized_name)
                .or_insert(live);
        }
        for record in store::load_source_records(connection)? {
            let partner_id = record.live_partner_id;
            if record.system == system {
                resolver.by_key.insert(
                    record.external_key,
                    Resolved {
                        partner_id,
                        source_record_id: record.id,
                    },
                );
            }
            resolver
                .by_name
                .entry(record.normalized_name)
                .or_insert(partner_id);
        }
        for (index, alias) in aliases.iter().enumerate() {
            for name in alias.names.iter().chain(std::iter::once(&alias.partner)) {
                resolver.alias_by_name.insert(normalize_name(name), index);
            }
        }
        Ok(resolver)
    }

    /// The partner `reference` names and its spelling's source record, creating either when
    /// needed. A spelling seen before keeps the partner identity resolution gave it.
    pub fn resolve(
        &mut self,
        connection: &Connection,
        reference: &PartnerRef,
        now: &str,
    ) -> rusqlite::Result<Resolved> {
        let raw = reference.name.trim();
        if let Some(known) = self.resolved.get(raw)
            && let Some((_, resolved)) = known.iter().find(|(npi, _)| *npi == reference.npi)
        {
            return Ok(*resolved);
        }
        let key = ehr_external_key(raw, reference.npi.as_ref());
        let resolved = match self.by_key.get(&key) {
            Some(resolved) => *resolved,
            None => self.first_seen(connection, reference, raw, &key, now)?,
        };
        self.resolved
            .entry(raw.to_string())
            .or_default()
            .push((reference.npi, resolved));
        Ok(resolved)
    }

    /// A spelling the ledger does not hold yet: match it, complete its partner, record it.
    fn first_seen(
        &mut self,
        connection: &Connection,
        reference: &PartnerRef,
        raw: &str,
        key: &str,
        now: &str,
    ) -> rusqlite::Result<Resolved> {
        let normalized = normalize_name(raw);
        let npi = reference.npi.map(|npi| npi.to_string());
        let source_type = reference.source_type.as_deref();
        let (partner_id, method) = self.match_or_create(
            connection,
            raw,
            &normalized,
            npi.as_deref(),
            source_type,
            now,
        )?;
        store::complete_partner(connection, partner_id, npi.as_deref(), source_type, now)?;
        if let Some(npi) = &npi {
            self.by_npi.entry(npi.clone()).or_insert(partner_id);
            if matches!(self.npi_of.get(&partner_id), Some(None) | None) {
                self.npi_of.insert(partner_id, Some(npi.clone()));
            }
        }
        let source_record_id = store::insert_source_record(
            connection,
            &NewSourceRecord {
                partner_id,
                system: self.system,
                external_key: key,
                raw_name: raw,
                normalized_name: &normalized,
                match_method: method.as_str(),
                confidence: method.confidence(),
            },
            now,
        )?;
        self.by_name.entry(normalized).or_insert(partner_id);
        let resolved = Resolved {
            partner_id,
            source_record_id,
        };
        self.by_key.insert(key.to_string(), resolved);
        Ok(resolved)
    }

    fn match_or_create(
        &mut self,
        connection: &Connection,
        raw: &str,
        normalized: &str,
        npi: Option<&str>,
        source_type: Option<&str>,
        now: &str,
    ) -> rusqlite::Result<(i64, MatchMethod)> {
        if let Some(npi) = npi {
            if let Some(id) = self.by_npi.get(npi) {
                return Ok((*id, MatchMethod::Npi));
            }
            // Same name, no NPI yet: the NPI completes that partner. A different NPI is a
            // different provider.
            if let Some(id) = self.by_name.get(normalized)
                && matches!(self.npi_of.get(id), Some(None) | None)
            {
                return Ok((*id, MatchMethod::Name));
            }
        } else if let Some(id) = self.by_name.get(normalized) {
            return Ok((*id, MatchMethod::Name));
        }
        if let Some(index) = self.alias_by_name.get(normalized).copied() {
            let alias = self.aliases[index].clone();
            let canonical = normalize_name(&alias.partner);
            let alias_npi = alias
                .npi
                .as_deref()
                .and_then(|n| Npi::parse(n).ok())
                .map(|n| n.to_string());
            let existing = alias_npi
                .as_ref()
                .and_then(|n| self.by_npi.get(n))
                .or_else(|| self.by_name.get(&canonical))
                .copied();
            let id = match existing {
                Some(id) => id,
                None => self.create(
                    connection,
                    &alias.partner,
                    &canonical,
                    alias_npi.as_deref(),
                    source_type,
                    "config",
                    now,
                )?,
            };
            return Ok((id, MatchMethod::Alias));
        }
        let id = self.create(
            connection,
            raw,
            normalized,
            npi,
            source_type,
            self.system,
            now,
        )?;
        Ok((id, MatchMethod::New))
    }

    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        connection: &Connection,
        name: &str,
        normalized: &str,
        npi: Option<&str>,
        source_type: Option<&str>,
        origin: &str,
        now: &str,
    ) -> rusqlite::Result<i64> {
        let id = store::insert_partner(
            connection,
            &NewPartner {
                name,
                normalized_name: normalized,
                npi,
                source_type,
                origin,
            },
            now,
        )?;
        self.by_name.entry(normalized.to_string()).or_insert(id);
        self.npi_of.insert(id, npi.map(str::to_string));
        if let Some(npi) = npi {
            self.by_npi.insert(npi.to_string(), id);
        }
        self.partners_created += 1;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_name;

    #[test]
    fn spellings_of_one_partner_normalize_alike() {
        let check =
            |a: &str, b: &str| assert_eq!(normalize_name(a), normalize_name(b), "{a} vs {b}");
        check("Mercy Hospital", "MERCY HOSP.");
        check("The Mercy Hospital, Inc.", "mercy hospital");
        check("St. Mary's Medical Center", "Saint Marys Med Ctr");
        check("Dr. Alice Lee, MD", "alice lee");
        check("Harbor Behavioral Health LLC", "Harbor BH");
        check("Smith & Jones", "smith and jones");
        assert_eq!(normalize_name("Mercy Hosp ED"), "mercy hospital ed");
        assert_ne!(
            normalize_name("Mercy Hospital"),
            normalize_name("Mercy Hospital ED")
        );
    }
}
