//! Partners from referral-source names: one partner, many spellings.
//!
//! A name from an export resolves to a partner by NPI (when present and valid), else by its
//! normalized name (case, punctuation, suffixes such as Inc/LLC, honorifics, and abbreviations
//! such as Hosp → Hospital), else by a configured `[[identity.alias]]`; otherwise it becomes a new
//! partner known only from the EHR. Each spelling is kept as a source record with how it matched.
//! Fuzzy matching and merges of existing partners are not done here.

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

/// Resolves partner names to partner ids, keeping an in-memory index of the ledger's partners so
/// that a million-row import costs one hash lookup per row.
pub struct PartnerResolver {
    system: &'static str,
    by_npi: HashMap<String, i64>,
    by_name: HashMap<String, i64>,
    npi_of: HashMap<i64, Option<String>>,
    aliases: Vec<AliasConfig>,
    alias_by_name: HashMap<String, usize>,
    /// Raw spellings already resolved in this process: name → [(npi, partner)].
    resolved: HashMap<String, Vec<(Option<Npi>, i64)>>,
    pub partners_created: u64,
}

impl PartnerResolver {
    /// Loads the partner index from the ledger for names coming from `system` (e.g. `ehr`).
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
            resolved: HashMap::new(),
            partners_created: 0,
        };
        for partner in store::load_partners(connection)? {
            if let Some(npi) = &partner.npi {
                resolver.by_npi.insert(npi.clone(), partner.id);
            }
            resolver
                .by_name
                .entry(partner.normalized_name)
                .or_insert(partner.id);
            resolver.npi_of.insert(partner.id, partner.npi);
        }
        for (normalized_name, partner_id) in store::load_source_record_names(connection)? {
            resolver
                .by_name
                .entry(normalized_name)
                .or_insert(partner_id);
        }
        for (index, alias) in aliases.iter().enumerate() {
            for name in alias.names.iter().chain(std::iter::once(&alias.partner)) {
                resolver.alias_by_name.insert(normalize_name(name), index);
            }
        }
        Ok(resolver)
    }

    /// The partner `reference` names, creating it (and recording the spelling) when needed.
    pub fn resolve(
        &mut self,
        connection: &Connection,
        reference: &PartnerRef,
        now: &str,
    ) -> rusqlite::Result<i64> {
        let raw = reference.name.trim();
        if let Some(known) = self.resolved.get(raw)
            && let Some((_, id)) = known.iter().find(|(npi, _)| *npi == reference.npi)
        {
            return Ok(*id);
        }
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
            self.npi_of.insert(partner_id, Some(npi.clone()));
        }
        store::insert_source_record(
            connection,
            &NewSourceRecord {
                partner_id,
                system: self.system,
                external_key: raw,
                raw_name: raw,
                normalized_name: &normalized,
                match_method: method.as_str(),
                confidence: method.confidence(),
            },
            now,
        )?;
        self.by_name.entry(normalized).or_insert(partner_id);
        self.resolved
            .entry(raw.to_string())
            .or_default()
            .push((reference.npi, partner_id));
        Ok(partner_id)
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
