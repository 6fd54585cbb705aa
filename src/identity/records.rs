//! The source records identity resolution clusters, read from the ledger: every stored
//! `partner_source_record` (EHR spellings, CRM records already linked) and every live CRM partner
//! record not linked yet, each with the keys evidence is found by (NPI, website domain, phone,
//! ZIP, city, normalized name). Reads only; normalizing a key never guesses (a phone with fewer
//! than ten digits, a free-mail domain, a ZIP that is not five digits are no key at all).

use std::collections::HashMap;

use refbridge_model::crm::{CrmPartner, CrmRecordBody};
use rusqlite::Connection;

use crate::partners::{normalize_name, npi_of_ehr_key};

/// The system EHR spellings are recorded under.
pub(super) const EHR: &str = "ehr";

/// One source record as identity resolution sees it.
#[derive(Debug, Clone)]
pub(super) struct Record {
    /// Its `partner_source_record` id; `None` for a CRM record seen for the first time.
    pub id: Option<i64>,
    pub system: String,
    pub key: String,
    pub raw_name: String,
    pub normalized: String,
    /// The partner the ledger links it to now, as stored.
    pub stored_partner: Option<i64>,
    /// That partner, or the partner it was merged into.
    pub partner: Option<i64>,
    pub stored_method: Option<String>,
    pub stored_confidence: f64,
    /// Takes part in evidence: false for CRM records the CRM deleted or merged away, which only
    /// keep their partner.
    pub active: bool,
    pub npi: Option<String>,
    pub domain: Option<String>,
    pub phone: Option<String>,
    pub zip: Option<String>,
    pub city: Option<String>,
    /// For CRM partner records: the record as pulled and when it was last modified.
    pub crm: Option<Box<CrmPartner>>,
    pub modified_at: Option<String>,
    /// For a CRM record the CRM merged into another: the survivor's id.
    pub crm_merged_into: Option<String>,
}

impl Record {
    pub fn is_crm(&self) -> bool {
        self.system != EHR
    }
}

/// Everything read: the records (existing ones by id, then new CRM records by system and id),
/// and where each partner went if it was merged.
pub(super) struct Loaded {
    pub records: Vec<Record>,
    pub by_reference: HashMap<(String, String), usize>,
    /// partner id → merged_into, for every partner.
    pub merged_into: HashMap<i64, Option<i64>>,
}

impl Loaded {
    /// The live partner `partner` stands for: itself, or where its merges lead.
    pub fn live(&self, partner: i64) -> i64 {
        live_partner(&self.merged_into, partner)
    }
}

pub(super) fn live_partner(merged_into: &HashMap<i64, Option<i64>>, partner: i64) -> i64 {
    let mut current = partner;
    for _ in 0..64 {
        match merged_into.get(&current).copied().flatten() {
            Some(next) if next != current => current = next,
            _ => break,
        }
    }
    current
}

pub(super) fn load(connection: &Connection) -> rusqlite::Result<Loaded> {
    let mut merged_into = HashMap::new();
    {
        let mut statement = connection.prepare("SELECT id, merged_into FROM partner")?;
        let rows = statement.query_map([], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, Option<i64>>(1)?))
        })?;
        for row in rows {
            let (id, into) = row?;
            merged_into.insert(id, into);
        }
    }
    let mut loaded = Loaded {
        records: Vec::new(),
        by_reference: HashMap::new(),
        merged_into,
    };
    {
        let mut statement = connection.prepare(
            "SELECT id, partner_id, system, external_key, raw_name, normalized_name, match_method,
                    confidence
             FROM partner_source_record ORDER BY id",
        )?;
        let rows = statement.query_map([], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, String>(5)?,
                row.get::<_, String>(6)?,
                row.get::<_, f64>(7)?,
            ))
        })?;
        for row in rows {
            let (id, partner, system, key, raw_name, normalized, method, confidence) = row?;
            let npi = if system == EHR {
                npi_of_ehr_key(&key).map(|npi| npi.to_string())
            } else {
                None
            };
            let live = loaded.live(partner);
            loaded
                .by_reference
                .insert((system.clone(), key.clone()), loaded.records.len());
            loaded.records.push(Record {
                id: Some(id),
                // EHR spellings always take part; CRM records only once their pulled body says
                // they are live (below).
                active: system == EHR,
                system,
                key,
                raw_name,
                normalized,
                stored_partner: Some(partner),
                partner: Some(live),
                stored_method: Some(method),
                stored_confidence: confidence,
                npi,
                domain: None,
                phone: None,
                zip: None,
                city: None,
                crm: None,
                modified_at: None,
                crm_merged_into: None,
            });
        }
    }
    let mut new_records = Vec::new();
    {
        let mut statement = connection.prepare(
            "SELECT system, external_id, modified_at, deleted, merged_into, body
             FROM crm_record WHERE stream = 'partners' ORDER BY system, external_id",
        )?;
        let rows = statement.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, bool>(3)?,
                row.get::<_, Option<String>>(4)?,
                row.get::<_, String>(5)?,
            ))
        })?;
        for row in rows {
            let (system, external_id, modified_at, deleted, crm_merged_into, body) = row?;
            let partner = match serde_json::from_str::<CrmRecordBody>(&body) {
                Ok(CrmRecordBody::Partner(partner)) => partner,
                _ => {
                    tracing::warn!(system = %system, crm_id = %external_id, "a stored CRM partner record could not be read; it is left out of identity resolution");
                    continue;
                }
            };
            let live = !deleted && crm_merged_into.is_none();
            let index = loaded
                .by_reference
                .get(&(system.clone(), external_id.clone()))
                .copied();
            match index {
                Some(index) => {
                    let record = &mut loaded.records[index];
                    record.crm_merged_into = crm_merged_into;
                    if live {
                        fill_from_crm(record, partner, modified_at);
                    }
                }
                // A record the CRM deleted before it was ever linked is history only.
                None if !live => {}
                None => {
                    let mut record = Record {
                        id: None,
                        system: system.clone(),
                        key: external_id.clone(),
                        raw_name: String::new(),
                        normalized: String::new(),
                        stored_partner: None,
                        partner: None,
                        stored_method: None,
                        stored_confidence: 1.0,
                        active: false,
                        npi: None,
                        domain: None,
                        phone: None,
                        zip: None,
                        city: None,
                        crm: None,
                        modified_at: None,
                        crm_merged_into: None,
                    };
                    fill_from_crm(&mut record, partner, modified_at);
                    new_records.push(record);
                }
            }
        }
    }
    for record in new_records {
        loaded.by_reference.insert(
            (record.system.clone(), record.key.clone()),
            loaded.records.len(),
        );
        loaded.records.push(record);
    }
    Ok(loaded)
}

fn fill_from_crm(record: &mut Record, partner: CrmPartner, modified_at: String) {
    record.active = true;
    record.raw_name = partner.name.trim().to_string();
    record.normalized = normalize_name(&partner.name);
    record.npi = partner.npi.map(|npi| npi.to_string());
    record.domain = partner.website.as_deref().and_then(website_domain);
    record.phone = partner.phone.as_deref().and_then(phone_digits);
    record.zip = partner.zip.as_deref().and_then(zip5);
    record.city = partner.city.as_deref().and_then(city_key);
    record.modified_at = Some(modified_at);
    record.crm = Some(Box::new(partner));
}

/// Domains many unrelated partners share: free mail, site builders, social pages.
const GENERIC_DOMAINS: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "yahoo.com",
    "hotmail.com",
    "outlook.com",
    "live.com",
    "msn.com",
    "aol.com",
    "icloud.com",
    "me.com",
    "mac.com",
    "protonmail.com",
    "proton.me",
    "ymail.com",
    "comcast.net",
    "att.net",
    "sbcglobal.net",
    "bellsouth.net",
    "verizon.net",
    "mail.com",
    "gmx.com",
    "zoho.com",
    "facebook.com",
    "linkedin.com",
    "instagram.com",
    "twitter.com",
    "x.com",
    "yelp.com",
    "google.com",
    "business.site",
    "wixsite.com",
    "wix.com",
    "squarespace.com",
    "godaddysites.com",
    "wordpress.com",
    "blogspot.com",
    "weebly.com",
    "psychologytoday.com",
    "healthgrades.com",
    "zocdoc.com",
];

/// The host of a website, lower case, without `www.`: `https://www.Mercy.org/ed` → `mercy.org`.
/// Free-mail, social and site-builder hosts are no evidence: `None`.
pub(super) fn website_domain(website: &str) -> Option<String> {
    let mut text = website.trim().to_ascii_lowercase();
    for scheme in ["https://", "http://"] {
        if let Some(rest) = text.strip_prefix(scheme) {
            text = rest.to_string();
        }
    }
    let host = text
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default()
        .rsplit('@')
        .next()
        .unwrap_or_default()
        .split(':')
        .next()
        .unwrap_or_default()
        .trim_end_matches('.');
    let host = host.strip_prefix("www.").unwrap_or(host);
    if !host.contains('.')
        || host.starts_with('.')
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    {
        return None;
    }
    let generic = GENERIC_DOMAINS
        .iter()
        .any(|domain| host == *domain || host.ends_with(&format!(".{domain}")));
    (!generic).then(|| host.to_string())
}

/// The last ten digits of a phone number, before any extension: `+1 (404) 555-0123 x12` →
/// `4045550123`. Fewer than ten digits is no phone.
pub(super) fn phone_digits(phone: &str) -> Option<String> {
    let main = phone
        .split(|c: char| c.is_ascii_alphabetic())
        .next()
        .unwrap_or_default();
    let digits: String = main.chars().filter(char::is_ascii_digit).collect();
    (digits.len() >= 10).then(|| digits[digits.len() - 10..].to_string())
}

/// A five-digit ZIP (`30303-1234` → `30303`).
pub(super) fn zip5(zip: &str) -> Option<String> {
    let digits: String = zip
        .trim()
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    (digits.len() == 5).then_some(digits)
}

/// A city as compared: lower case, words only (`St. Louis` → `st louis`).
pub(super) fn city_key(city: &str) -> Option<String> {
    let words: Vec<String> = city
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_keys_normalize_or_refuse() {
        let check = |got: Option<String>, expected: Option<&str>| {
            assert_eq!(got.as_deref(), expected);
        };
        check(
            website_domain("https://www.Mercy.org/ed?x=1"),
            Some("mercy.org"),
        );
        check(website_domain("mercy.org"), Some("mercy.org"));
        check(
            website_domain("http://ed.mercy.org:8080"),
            Some("ed.mercy.org"),
        );
        check(website_domain("https://mercyclinic.wixsite.com/home"), None);
        check(website_domain("gmail.com"), None);
        check(website_domain("n/a"), None);
        check(phone_digits("+1 (404) 555-0123 x12"), Some("4045550123"));
        check(phone_digits("404.555.0123"), Some("4045550123"));
        check(phone_digits("555-0123"), None);
        check(zip5("30303-1234"), Some("30303"));
        check(zip5("303"), None);
        check(city_key(" St. Louis "), Some("st louis"));
        check(city_key("  "), None);
    }
}
