//! The generator: seed, scale and end date → one [`World`].
//!
//! Each part of the world draws from its own forked PRNG stream, so adding a field to one part never
//! shifts the others. Stories are planted on purpose: some partners decline or fall silent, some are
//! new, some only send and never receive, some have a duplicate CRM record under a name variant, and
//! some have no owner.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use refbridge_model::Npi;

use crate::Random;
use crate::world::*;

/// Counts per scale.
struct Sizes {
    reps: usize,
    partners: usize,
    contacts_per_partner: (u64, u64),
    /// Multiplies every partner's monthly referral rate.
    rate_factor: f64,
    touches_per_month: f64,
}

fn sizes(scale: Scale) -> Sizes {
    match scale {
        Scale::Small => Sizes {
            reps: 5,
            partners: 36,
            contacts_per_partner: (1, 3),
            rate_factor: 1.0,
            touches_per_month: 0.8,
        },
        Scale::Medium => Sizes {
            reps: 12,
            partners: 400,
            contacts_per_partner: (2, 5),
            rate_factor: 0.6,
            touches_per_month: 0.5,
        },
        Scale::Large => Sizes {
            reps: 60,
            partners: 20_000,
            contacts_per_partner: (5, 5),
            rate_factor: 0.16,
            touches_per_month: 0.3,
        },
    }
}

const MONTHS: u32 = 18;

const PLACES: &[&str] = &[
    "Mercy",
    "Lakeside",
    "Harbor",
    "St. Mary's",
    "Riverside",
    "Summit",
    "Cedar",
    "Valley",
    "Northgate",
    "Pinecrest",
    "Oakwood",
    "Bayview",
    "Granite",
    "Willow Creek",
    "Maplewood",
    "Eastside",
    "Westview",
    "Hillcrest",
    "Fairview",
    "Grace",
    "Providence",
    "Magnolia",
    "Brookside",
    "Lincoln",
    "Jefferson",
    "Piedmont",
    "Stonebridge",
    "Clearwater",
];
const CITIES: &[(&str, &str)] = &[
    ("Atlanta", "303"),
    ("Decatur", "300"),
    ("Marietta", "300"),
    ("Roswell", "300"),
    ("Athens", "306"),
    ("Macon", "312"),
    ("Savannah", "314"),
    ("Augusta", "309"),
    ("Columbus", "319"),
    ("Rome", "301"),
];
const FIRST_NAMES: &[&str] = &[
    "Alice", "Omar", "Grace", "Daniel", "Priya", "Marcus", "Elena", "James", "Aisha", "Tomás",
    "Hannah", "Wei", "Fatima", "Robert", "Keisha", "Luis", "Sarah", "Andre", "Mei", "Patrick",
    "Nadia", "Samuel", "Ivy", "Jorge",
];
const LAST_NAMES: &[&str] = &[
    "Lee",
    "Haddad",
    "O'Neil",
    "Okafor",
    "Patel",
    "Johnson",
    "Ruiz",
    "Nguyen",
    "Brooks",
    "Kowalski",
    "Chen",
    "Washington",
    "Moreau",
    "Lindqvist",
    "Abara",
    "Fischer",
    "Delgado",
    "Kim",
    "Osei",
    "Murphy",
    "Silva",
    "Novak",
];
const PAYERS: &[&str] = &[
    "Aetna",
    "Anthem BCBS",
    "Cigna",
    "UnitedHealthcare",
    "Humana",
    "Ambetter",
    "Georgia Medicaid",
    "Medicare",
    "Self-pay",
];
const PLAN_TYPES: &[&str] = &[
    "PPO", "HMO", "EPO", "POS", "Medicaid", "Medicare", "Self-pay",
];
const LEVELS: &[&str] = &[
    "0.5", "1", "2.1", "2.5", "3.1", "3.5", "3.7", "3.7-WM", "4", "OTP",
];
const REASONS: &[&str] = &[
    "out_of_network",
    "level_of_care_mismatch",
    "geography",
    "capacity",
    "clinical_exclusion",
    "declined",
    "no_contact",
];
/// Reasons after which the patient is referred out to a partner that fits.
const REFERABLE_REASONS: &[&str] = &[
    "out_of_network",
    "level_of_care_mismatch",
    "geography",
    "capacity",
];

/// Builds the world for `spec`. Pure: the same spec always gives the same world.
pub fn generate(spec: WorldSpec) -> World {
    let root = Random::new(spec.seed);
    let sizes = sizes(spec.scale);
    let end = Utc.from_utc_datetime(&spec.as_of.and_hms_opt(0, 0, 0).expect("midnight exists"));
    let facility = Facility {
        name: "Peachtree Recovery Center".to_string(),
        npi: Npi::from_first_nine(176_543_210).to_string(),
        city: "Atlanta".to_string(),
        state: "GA".to_string(),
        zip: "30309".to_string(),
        payers_in_network: vec![
            "Aetna".into(),
            "Cigna".into(),
            "UnitedHealthcare".into(),
            "Self-pay".into(),
        ],
        levels_of_care: vec!["2.1".into(), "2.5".into(), "3.5".into(), "3.7".into()],
    };
    let reps = make_reps(&mut root.fork(1), sizes.reps, end);
    let partners = make_partners(&mut root.fork(2), &sizes, reps.len(), end);
    let contacts = make_contacts(&mut root.fork(3), &sizes, &partners, end);
    let referrals = make_referrals(
        &mut root.fork(4),
        &sizes,
        &facility,
        &partners,
        &contacts,
        reps.len(),
        end,
    );
    let activities = make_activities(
        &mut root.fork(5),
        &sizes,
        &partners,
        &contacts,
        reps.len(),
        end,
    );
    World {
        spec,
        facility,
        reps,
        partners,
        contacts,
        referrals,
        activities,
    }
}

fn make_reps(random: &mut Random, count: usize, end: DateTime<Utc>) -> Vec<Rep> {
    (0..count)
        .map(|index| {
            let first = FIRST_NAMES[(index * 7 + 3) % FIRST_NAMES.len()];
            let last = LAST_NAMES[(index * 5 + 1) % LAST_NAMES.len()];
            let suffix = if index >= LAST_NAMES.len() {
                format!("{}", index / LAST_NAMES.len() + 1)
            } else {
                String::new()
            };
            Rep {
                key: format!("R{:03}", index + 1),
                first_name: first.to_string(),
                last_name: format!("{last}{suffix}"),
                email: format!(
                    "{}.{}{}@peachtree-recovery.example",
                    ascii(first),
                    ascii(last),
                    suffix
                ),
                // The last rep of a team has left: partners still owned by them look orphaned.
                active: index + 1 < count || count < 3,
                created_at: end - Duration::days(700 + random.below(900) as i64),
            }
        })
        .collect()
}

/// Lower-case ASCII letters only, for e-mail addresses and domains.
fn ascii(text: &str) -> String {
    text.chars()
        .filter_map(|c| match c {
            'á' | 'à' => Some('a'),
            'é' => Some('e'),
            'í' => Some('i'),
            'ó' => Some('o'),
            'ú' => Some('u'),
            c if c.is_ascii_alphanumeric() => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// A partner's own web domain: its whole name as a hyphenated slug (`cedar-logistics-eap-atlanta-2
/// .example`), as real organizations register theirs. Two partners never share one: names are
/// unique, and a slug that still collides (names differing only in punctuation) or that is cut to
/// the 63 letters a DNS label allows gets a number. A CRM duplicate of a partner has no website
/// of its own, so identity must join it by phone, ZIP and name.
fn unique_domain(taken: &mut std::collections::HashSet<String>, name: &str) -> String {
    let mut slug = String::new();
    for word in name.split(|c: char| !c.is_alphanumeric()) {
        let word = ascii(word);
        if word.is_empty() {
            continue;
        }
        if !slug.is_empty() {
            slug.push('-');
        }
        slug.push_str(&word);
    }
    let mut label: String = slug.chars().take(63).collect();
    let mut number = 2;
    while !taken.insert(label.clone()) {
        let suffix = format!("-{number}");
        label = format!(
            "{}{suffix}",
            slug.chars().take(63 - suffix.len()).collect::<String>()
        );
        number += 1;
    }
    format!("{label}.example")
}

fn partner_name(random: &mut Random, source_type: SourceType, place: &str) -> String {
    match source_type {
        SourceType::Hospital => format!(
            "{place} {}",
            random.pick(&["Hospital", "Medical Center", "Regional Hospital"])
        ),
        SourceType::Physician => {
            let first = random.pick(FIRST_NAMES);
            let last = random.pick(LAST_NAMES);
            if random.chance(0.5) {
                format!("Dr. {first} {last}, MD")
            } else {
                format!(
                    "{place} {}",
                    random.pick(&[
                        "Family Practice",
                        "Internal Medicine",
                        "Psychiatry Associates"
                    ])
                )
            }
        }
        SourceType::Therapist => format!(
            "{place} {}",
            random.pick(&[
                "Counseling Associates",
                "Behavioral Health",
                "Therapy Group"
            ])
        ),
        SourceType::Detox => format!(
            "{place} {}",
            random.pick(&[
                "Detox Center",
                "Withdrawal Management",
                "Crisis Stabilization Unit"
            ])
        ),
        SourceType::TreatmentProgram => format!(
            "{place} {}",
            random.pick(&["Recovery Program", "Treatment Center", "Sober Living"])
        ),
        SourceType::School => format!(
            "{place} {}",
            random.pick(&[
                "High School",
                "University Counseling Center",
                "Middle School"
            ])
        ),
        SourceType::Employer => format!(
            "{place} {}",
            random.pick(&["Logistics EAP", "Health System EAP", "Manufacturing EAP"])
        ),
        SourceType::Court => format!(
            "{place} County {}",
            random.pick(&["Drug Court", "Accountability Court", "Probation Office"])
        ),
        SourceType::Community => format!(
            "{place} {}",
            random.pick(&[
                "Community Services",
                "Outreach Ministry",
                "Recovery Community Org"
            ])
        ),
    }
}

fn make_partners(
    random: &mut Random,
    sizes: &Sizes,
    rep_count: usize,
    end: DateTime<Utc>,
) -> Vec<Partner> {
    let mut partners: Vec<Partner> = Vec::with_capacity(sizes.partners + sizes.partners / 10);
    let mut names = std::collections::HashSet::new();
    let mut domains = std::collections::HashSet::new();
    for index in 0..sizes.partners {
        let source_type = SourceType::ALL[index % SourceType::ALL.len()];
        let (city, zip3) = *random.pick(CITIES);
        let place = *random.pick(PLACES);
        let mut name = partner_name(random, source_type, place);
        if !names.insert(name.clone()) {
            name = format!("{name} - {city}");
            let mut branch = 2;
            while !names.insert(name.clone()) {
                name = format!("{name} {branch}");
                branch += 1;
            }
        }
        // The stories, in fixed proportions (small worlds get a few of each).
        let pattern = match index % 20 {
            0..=8 => Pattern::Steady,
            9..=12 => Pattern::Occasional,
            13 | 14 => Pattern::Declining,
            15 | 16 => Pattern::Silent,
            17 => Pattern::OneSided,
            _ => Pattern::New,
        };
        let has_npi = matches!(
            source_type,
            SourceType::Hospital
                | SourceType::Physician
                | SourceType::Therapist
                | SourceType::Detox
                | SourceType::TreatmentProgram
        );
        let npi = has_npi.then(|| {
            Npi::from_first_nine((100_000_000 + (index as u64 * 7919) % 800_000_000) as u32)
                .to_string()
        });
        let domain = unique_domain(&mut domains, &name);
        let created_at = match pattern {
            Pattern::New => end - Duration::days(20 + random.below(40) as i64),
            _ => end - Duration::days(600 + random.below(1200) as i64),
        };
        let owner = (index % 9 != 4).then(|| random.below(rep_count as u64) as usize);
        let mut payers: Vec<String> = PAYERS
            .iter()
            .filter(|_| random.chance(0.55))
            .map(|p| p.to_string())
            .collect();
        if payers.is_empty() {
            payers.push("Self-pay".to_string());
        }
        let levels: Vec<String> = LEVELS
            .iter()
            .filter(|_| random.chance(0.4))
            .map(|l| l.to_string())
            .collect();
        let modified_at = created_at
            + Duration::seconds(random.below((end - created_at).num_seconds().max(1) as u64) as i64);
        partners.push(Partner {
            key: format!("P{:05}", index + 1),
            name,
            npi,
            source_type,
            website: (!matches!(source_type, SourceType::Physician) || random.chance(0.5))
                .then(|| format!("https://www.{domain}")),
            phone: format!("(404) 555-{:04}", random.below(10_000)),
            street: format!(
                "{} {} {}",
                100 + random.below(9000),
                random.pick(PLACES),
                random.pick(&["Rd", "St", "Ave", "Blvd", "Pkwy"])
            ),
            city: city.to_string(),
            state: "GA".to_string(),
            zip: format!("{zip3}{:02}", random.below(100)),
            payers_accepted: payers,
            levels_of_care: levels,
            accepting_referrals: random.chance(0.85),
            preferred: random.chance(0.15),
            owner,
            pattern,
            duplicate_of: None,
            created_at,
            modified_at,
        });
    }
    // Duplicate records under a name variant: about one partner in twelve.
    let originals = partners.len();
    for index in (3..originals).step_by(12) {
        let original = partners[index].clone();
        let variant = name_variant(random, &original.name);
        let created_at = original.created_at
            + Duration::days(30 + random.below(200) as i64)
                .min(end - original.created_at - Duration::days(1));
        partners.push(Partner {
            key: format!("P{:05}", partners.len() + 1),
            name: variant,
            npi: None,
            website: None,
            owner: (random.chance(0.5)).then(|| random.below(rep_count as u64) as usize),
            pattern: Pattern::Occasional,
            duplicate_of: Some(index),
            created_at,
            modified_at: created_at,
            ..original
        });
    }
    partners
}

/// "Mercy Hospital" → "MERCY HOSP ED", "Mercy Hosp.", "Mercy Hospital Inc" …
pub(crate) fn name_variant(random: &mut Random, name: &str) -> String {
    let abbreviated = name
        .replace("Hospital", "Hosp.")
        .replace("Medical Center", "Med Ctr")
        .replace("Center", "Ctr")
        .replace("Associates", "Assoc.")
        .replace("Saint", "St.");
    match random.below(4) {
        0 => format!("{} ED", abbreviated.to_uppercase().replace('.', "")),
        1 => abbreviated,
        2 => format!("{name}, Inc."),
        _ => name.to_lowercase(),
    }
}

fn make_contacts(
    random: &mut Random,
    sizes: &Sizes,
    partners: &[Partner],
    end: DateTime<Utc>,
) -> Vec<Contact> {
    let mut contacts = Vec::new();
    for (partner_index, partner) in partners.iter().enumerate() {
        let (low, high) = sizes.contacts_per_partner;
        let count = low + random.below(high - low + 1);
        let domain = partner
            .website
            .as_deref()
            .and_then(|w| w.strip_prefix("https://www."))
            .unwrap_or("mail.example")
            .to_string();
        for _ in 0..count {
            let first = *random.pick(FIRST_NAMES);
            let last = *random.pick(LAST_NAMES);
            let title = match partner.source_type {
                SourceType::Hospital => *random.pick(&[
                    "ED Social Worker",
                    "Case Manager",
                    "Discharge Planner",
                    "Psychiatrist",
                ]),
                SourceType::Physician => {
                    *random.pick(&["Physician", "Practice Manager", "Nurse Practitioner"])
                }
                SourceType::Therapist => *random.pick(&["Licensed Therapist", "Clinical Director"]),
                SourceType::Detox | SourceType::TreatmentProgram => *random.pick(&[
                    "Admissions Coordinator",
                    "Clinical Director",
                    "Case Manager",
                ]),
                SourceType::School => *random.pick(&["School Counselor", "Dean of Students"]),
                SourceType::Employer => *random.pick(&["EAP Coordinator", "HR Manager"]),
                SourceType::Court => *random.pick(&["Probation Officer", "Drug Court Coordinator"]),
                SourceType::Community => {
                    *random.pick(&["Outreach Coordinator", "Peer Support Specialist"])
                }
            };
            let created_at = partner.created_at + Duration::days(random.below(60) as i64);
            let created_at = created_at.min(end - Duration::hours(1));
            let modified_at = created_at
                + Duration::seconds(
                    random.below((end - created_at).num_seconds().max(1) as u64) as i64
                );
            contacts.push(Contact {
                key: format!("C{:06}", contacts.len() + 1),
                partner: partner_index,
                first_name: first.to_string(),
                last_name: last.to_string(),
                title: title.to_string(),
                email: format!(
                    "{}.{}{}@{domain}",
                    ascii(first),
                    ascii(last),
                    contacts.len() % 97
                ),
                phone: format!("(404) 555-{:04}", random.below(10_000)),
                owner: partner.owner,
                created_at,
                modified_at,
            });
        }
    }
    contacts
}

/// Monthly referral rate of a partner in month `month` (0 = oldest of the 18).
fn monthly_rate(pattern: Pattern, base: f64, month: u32) -> f64 {
    match pattern {
        Pattern::Steady | Pattern::OneSided => base,
        Pattern::Occasional => base * 0.25,
        Pattern::Declining if month >= MONTHS - 5 => base * 0.15,
        Pattern::Declining => base * 1.3,
        Pattern::Silent if month >= MONTHS - 4 => 0.0,
        Pattern::Silent => base,
        Pattern::New if month >= MONTHS - 2 => base.max(1.5),
        Pattern::New => 0.0,
    }
}

#[allow(clippy::too_many_arguments)]
fn make_referrals(
    random: &mut Random,
    sizes: &Sizes,
    facility: &Facility,
    partners: &[Partner],
    contacts: &[Contact],
    rep_count: usize,
    end: DateTime<Utc>,
) -> Vec<Referral> {
    let start_month = first_of_month(end.date_naive(), MONTHS);
    let mut contacts_of: Vec<Vec<usize>> = vec![Vec::new(); partners.len()];
    for (index, contact) in contacts.iter().enumerate() {
        contacts_of[contact.partner].push(index);
    }
    // Inbound inquiries, partner by partner and month by month.
    let mut inbound: Vec<(DateTime<Utc>, usize)> = Vec::new();
    for (partner_index, partner) in partners.iter().enumerate() {
        let base = match partner.source_type {
            SourceType::Hospital | SourceType::Detox => 2.5,
            SourceType::TreatmentProgram | SourceType::Court => 1.6,
            SourceType::Physician | SourceType::Therapist => 1.1,
            _ => 0.6,
        } * (0.5 + random.unit())
            * sizes.rate_factor;
        for month in 0..MONTHS {
            let month_start = start_month
                .checked_add_months(chrono::Months::new(month))
                .expect("in range");
            let month_end = month_start
                .checked_add_months(chrono::Months::new(1))
                .expect("in range");
            let from = Utc.from_utc_datetime(&month_start.and_hms_opt(0, 0, 0).expect("midnight"));
            let to = Utc
                .from_utc_datetime(&month_end.and_hms_opt(0, 0, 0).expect("midnight"))
                .min(end);
            if from >= to || from < partner.created_at - Duration::days(30) {
                continue;
            }
            for _ in 0..random.poisson(monthly_rate(partner.pattern, base, month)) {
                let seconds = random.below((to - from).num_seconds().max(1) as u64);
                inbound.push((from + Duration::seconds(seconds as i64), partner_index));
            }
        }
    }
    inbound.sort();

    // Partners a patient can be referred out to: accepting, not one-sided, not duplicates.
    let receivers: Vec<usize> = partners
        .iter()
        .enumerate()
        .filter(|(_, p)| {
            p.accepting_referrals && p.pattern != Pattern::OneSided && p.duplicate_of.is_none()
        })
        .map(|(index, _)| index)
        .collect();

    // Receivers that fit a patient, by (payer, level of care).
    let mut fitting: std::collections::HashMap<(&str, &str), Vec<usize>> =
        std::collections::HashMap::new();
    for &receiver in &receivers {
        for payer in &partners[receiver].payers_accepted {
            for level in &partners[receiver].levels_of_care {
                fitting
                    .entry((payer.as_str(), level.as_str()))
                    .or_default()
                    .push(receiver);
            }
        }
    }

    let mut referrals = Vec::with_capacity(inbound.len() * 11 / 10);
    for (sequence, (inquiry_at, partner_index)) in inbound.into_iter().enumerate() {
        let partner = &partners[partner_index];
        let inquiry_id = format!("INQ-{:06}", sequence + 1);
        let age_days = (end - inquiry_at).num_days();
        let payer = random.pick(PAYERS).to_string();
        let in_network = facility.payers_in_network.contains(&payer);
        let level = random.pick(LEVELS).to_string();
        let roll = random.unit();
        let (mut stage, reason) = if age_days < 10 && roll < 0.6 {
            (Stage::Pending, None)
        } else if !in_network && roll < 0.7 {
            (Stage::NotAdmitted, Some("out_of_network"))
        } else if roll < 0.5 {
            (Stage::Admitted, None)
        } else if roll < 0.92 {
            (Stage::NotAdmitted, Some(*random.pick(REASONS)))
        } else {
            (Stage::Pending, None)
        };
        let admit_date = (stage == Stage::Admitted)
            .then(|| (inquiry_at + Duration::days(random.below(4) as i64)).date_naive())
            .filter(|date| *date < end.date_naive());
        let contact = contacts_of[partner_index]
            .first()
            .copied()
            .filter(|_| random.chance(0.7));
        let rep = partner.owner.or_else(|| {
            random
                .chance(0.5)
                .then(|| random.below(rep_count as u64) as usize)
        });
        let modified_at = (inquiry_at + Duration::hours(1 + random.below(24 * 6) as i64))
            .min(end - Duration::seconds(1));
        let patient = make_patient(random, sequence);
        let referable = reason.is_some_and(|r| REFERABLE_REASONS.contains(&r))
            && random.chance(0.55)
            && !receivers.is_empty();
        let parent_index = referrals.len();
        if referable {
            stage = Stage::ReferredOut;
        }
        referrals.push(Referral {
            inquiry_id: inquiry_id.clone(),
            direction: Direction::In,
            partner: partner_index,
            referred_out_as: None,
            parent: None,
            contact,
            rep,
            inquiry_at,
            stage,
            reason,
            payer: payer.clone(),
            plan_type: random.pick(PLAN_TYPES).to_string(),
            level_of_care: level.clone(),
            admit_date,
            patient: patient.clone(),
            modified_at,
        });
        if referable {
            // Prefer a receiver that fits the patient: payer accepted and level offered.
            let fits = fitting
                .get(&(payer.as_str(), level.as_str()))
                .filter(|fits| fits.iter().any(|r| *r != partner_index));
            let mut target = match fits {
                Some(fits) => *random.pick(fits),
                None => *random.pick(&receivers),
            };
            if target == partner_index {
                target = receivers[(receivers.iter().position(|r| *r == target).unwrap_or(0) + 1)
                    % receivers.len()];
            }
            let placed_at = inquiry_at + Duration::hours(2 + random.below(48) as i64);
            let placement = if (end - placed_at).num_days() < 7 {
                Stage::Pending
            } else if random.chance(0.7) {
                Stage::Admitted
            } else {
                Stage::NotAdmitted
            };
            let out_index = referrals.len();
            referrals[parent_index].referred_out_as = Some(out_index);
            referrals.push(Referral {
                inquiry_id: format!("{inquiry_id}-OUT"),
                direction: Direction::Out,
                partner: target,
                referred_out_as: None,
                parent: Some(parent_index),
                contact: None,
                rep,
                inquiry_at: placed_at.min(end - Duration::seconds(2)),
                stage: placement,
                reason: None,
                payer,
                plan_type: referrals[parent_index].plan_type.clone(),
                level_of_care: level,
                admit_date: (placement == Stage::Admitted)
                    .then(|| (placed_at + Duration::days(1)).date_naive())
                    .filter(|date| *date < end.date_naive()),
                patient,
                modified_at: (placed_at + Duration::hours(3)).min(end - Duration::seconds(1)),
            });
        }
    }
    referrals
}

fn make_patient(random: &mut Random, sequence: usize) -> Patient {
    let first = random.pick(FIRST_NAMES);
    let last = random.pick(LAST_NAMES);
    let birth = NaiveDate::from_ymd_opt(
        1950 + random.below(55) as i32,
        1 + random.below(12) as u32,
        1 + random.below(28) as u32,
    )
    .expect("valid date");
    let (_, zip3) = random.pick(CITIES);
    Patient {
        mrn: format!(
            "M{:07}",
            1_000_000 + sequence * 7 % 9_000_000 + random.below(7) as usize
        ),
        first_name: first.to_string(),
        last_name: last.to_string(),
        birth_date: birth,
        phone: format!("(678) 555-{:04}", random.below(10_000)),
        address: format!(
            "{} {} St, Apt {}",
            10 + random.below(990),
            random.pick(PLACES),
            1 + random.below(40)
        ),
        zip: format!("{zip3}{:02}", random.below(100)),
    }
}

fn make_activities(
    random: &mut Random,
    sizes: &Sizes,
    partners: &[Partner],
    contacts: &[Contact],
    rep_count: usize,
    end: DateTime<Utc>,
) -> Vec<Activity> {
    let mut contacts_of: Vec<Vec<usize>> = vec![Vec::new(); partners.len()];
    for (index, contact) in contacts.iter().enumerate() {
        contacts_of[contact.partner].push(index);
    }
    let start = end - Duration::days(i64::from(MONTHS) * 30);
    let mut touches: Vec<(DateTime<Utc>, usize, usize)> = Vec::new();
    for (partner_index, partner) in partners.iter().enumerate() {
        let rep = match partner.owner {
            Some(rep) => rep,
            None if random.chance(0.3) => random.below(rep_count as u64) as usize,
            None => continue,
        };
        let from = partner.created_at.max(start);
        // Declining and silent partners were not visited lately: that is part of their story.
        let quiet_since = match partner.pattern {
            Pattern::Declining => end - Duration::days(75),
            Pattern::Silent => end - Duration::days(150),
            _ => end,
        };
        let months = ((quiet_since - from).num_days().max(0) as f64) / 30.0;
        let count = random.poisson(
            sizes.touches_per_month * months * if partner.owner.is_some() { 1.0 } else { 0.3 },
        );
        for _ in 0..count {
            let span = (quiet_since - from).num_seconds().max(1) as u64;
            touches.push((
                from + Duration::seconds(random.below(span) as i64),
                partner_index,
                rep,
            ));
        }
    }
    touches.sort();
    touches
        .into_iter()
        .enumerate()
        .map(|(index, (at, partner, rep))| {
            let kind = match random.below(20) {
                0..=7 => ActivityKind::Call,
                8..=12 => ActivityKind::Email,
                13..=14 => ActivityKind::Meeting,
                15..=18 => ActivityKind::Visit,
                _ => ActivityKind::Note,
            };
            let subject = match kind {
                ActivityKind::Call => "Check-in call",
                ActivityKind::Email => "Follow-up email",
                ActivityKind::Meeting => "Lunch and learn",
                ActivityKind::Visit => "Site visit",
                ActivityKind::Note => "Relationship note",
            };
            let contact = contacts_of[partner]
                .first()
                .copied()
                .filter(|_| random.chance(0.6));
            Activity {
                key: format!("A{:06}", index + 1),
                kind,
                rep,
                partner,
                contact,
                at,
                subject: format!("{subject} - {}", partners[partner].name),
                modified_at: (at + Duration::minutes(30 + random.below(600) as i64))
                    .min(end - Duration::seconds(1)),
            }
        })
        .collect()
}

/// The first day of the month `months` months before `date`'s month.
fn first_of_month(date: NaiveDate, months: u32) -> NaiveDate {
    let first = NaiveDate::from_ymd_opt(date.year(), date.month(), 1).expect("first of month");
    first
        .checked_sub_months(chrono::Months::new(months))
        .unwrap_or(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> World {
        generate(WorldSpec {
            seed: 7,
            scale: Scale::Small,
            as_of: NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
        })
    }

    #[test]
    fn the_same_seed_gives_the_same_world_and_another_seed_another() {
        assert_eq!(small(), small());
        let other = generate(WorldSpec {
            seed: 8,
            scale: Scale::Small,
            as_of: NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
        });
        assert_ne!(small().referrals, other.referrals);
    }

    #[test]
    fn every_partner_of_a_large_world_has_a_website_of_its_own() {
        let end = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
        let partners = make_partners(&mut Random::new(7).fork(2), &sizes(Scale::Large), 60, end);
        let mut owners = std::collections::HashMap::new();
        for partner in &partners {
            let Some(website) = &partner.website else {
                continue;
            };
            assert!(partner.duplicate_of.is_none(), "{}", partner.name);
            let label = website
                .strip_prefix("https://www.")
                .and_then(|domain| domain.strip_suffix(".example"))
                .unwrap_or_else(|| panic!("{website}"));
            assert!(
                label.len() <= 63 && !label.starts_with('-') && !label.ends_with('-'),
                "{website}"
            );
            if let Some(other) = owners.insert(website.clone(), &partner.name) {
                panic!("{other} and {} share {website}", partner.name);
            }
        }
        assert!(owners.len() > 15_000, "{}", owners.len());
        assert_eq!(
            unique_domain(&mut Default::default(), "Dr. María López, MD"),
            "dr-maria-lopez-md.example"
        );
        let mut taken = std::collections::HashSet::new();
        assert_eq!(
            unique_domain(&mut taken, "Cedar Logistics EAP - Atlanta 2"),
            "cedar-logistics-eap-atlanta-2.example"
        );
        assert_eq!(
            unique_domain(&mut taken, "Cedar Logistics EAP, Atlanta 2"),
            "cedar-logistics-eap-atlanta-2-2.example"
        );
    }

    #[test]
    fn a_small_world_has_every_story() {
        let world = small();
        let end = Utc.from_utc_datetime(&world.spec.as_of.and_hms_opt(0, 0, 0).unwrap());
        assert!(
            (30..=60).contains(&world.partners.len()),
            "{}",
            world.partners.len()
        );
        for source_type in SourceType::ALL {
            assert!(
                world.partners.iter().any(|p| p.source_type == source_type),
                "{source_type:?}"
            );
        }
        for pattern in [
            Pattern::Steady,
            Pattern::Declining,
            Pattern::Silent,
            Pattern::OneSided,
            Pattern::New,
        ] {
            assert!(
                world.partners.iter().any(|p| p.pattern == pattern),
                "{pattern:?}"
            );
        }
        assert!(world.partners.iter().any(|p| p.duplicate_of.is_some()));
        assert!(world.partners.iter().any(|p| p.owner.is_none()));
        for npi in world.partners.iter().filter_map(|p| p.npi.as_deref()) {
            assert!(Npi::parse(npi).is_ok(), "{npi}");
        }
        // Silent partners sent nothing in the last four months; new ones nothing before two months.
        let recent = |p: usize, days: i64| {
            world.referrals.iter().any(|r| {
                r.direction == Direction::In
                    && r.partner == p
                    && (end - r.inquiry_at).num_days() < days
            })
        };
        for (index, partner) in world.partners.iter().enumerate() {
            if partner.pattern == Pattern::Silent {
                assert!(!recent(index, 90), "{}", partner.name);
            }
        }
        let outbound = world
            .referrals
            .iter()
            .filter(|r| r.direction == Direction::Out)
            .count();
        assert!(outbound > 5, "{outbound}");
        for referral in &world.referrals {
            assert!(referral.inquiry_at < end && referral.modified_at < end);
            if let Some(parent) = referral.parent {
                assert_eq!(
                    world.referrals[parent]
                        .referred_out_as
                        .map(|o| &world.referrals[o]),
                    Some(referral)
                );
                assert_eq!(world.referrals[parent].stage, Stage::ReferredOut);
            }
        }
        let ids: std::collections::HashSet<&str> = world
            .referrals
            .iter()
            .map(|r| r.inquiry_id.as_str())
            .collect();
        assert_eq!(ids.len(), world.referrals.len(), "inquiry ids are unique");
        assert!(world.referrals.len() > 300, "{}", world.referrals.len());
    }
}
