//! The EHR exports of a world: the `generic` CSV and FHIR R4 Bulk Data NDJSON.
//!
//! They describe the same referrals as the CRM sandboxes (same inquiry ids) and, unlike the CRMs,
//! carry synthetic patient fields (name, MRN, birth date, phone, address, notes) — exactly what a
//! real export holds and what refbridge must drop at parse time. Spellings vary the way free text in
//! an admissions system does: a referral source is sometimes written in upper case or abbreviated,
//! dates are sometimes US-style.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::Random;
use crate::generate::name_variant;
use crate::world::*;

/// The `generic` header, as refbridge documents it.
pub const GENERIC_HEADER: &[&str] = &[
    "inquiry_id",
    "inquiry_date",
    "referral_source",
    "referral_source_npi",
    "referral_source_type",
    "referred_by",
    "rep",
    "payer",
    "plan_type",
    "level_of_care",
    "disposition",
    "disposition_reason",
    "referred_out_to",
    "admit_date",
    "mrn",
    "patient_name",
    "birth_date",
    "patient_phone",
    "patient_address",
    "patient_zip",
    "notes",
];

/// The files written by [`write_exports`].
#[derive(Debug, Clone)]
pub struct ExportFiles {
    pub generic_csv: PathBuf,
    pub service_requests_ndjson: PathBuf,
    pub patients_ndjson: PathBuf,
}

/// Writes `referrals.csv` (generic), `ServiceRequest.ndjson` and `Patient.ndjson` into `directory`.
/// They hold (synthetic) patient values, so they are written as a real export should be: files
/// readable by their owner only, in a directory created for the owner only.
pub fn write_exports(world: &World, directory: &Path) -> std::io::Result<ExportFiles> {
    if !directory.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(directory)?;
    }
    let files = ExportFiles {
        generic_csv: directory.join("referrals.csv"),
        service_requests_ndjson: directory.join("ServiceRequest.ndjson"),
        patients_ndjson: directory.join("Patient.ndjson"),
    };
    write_generic_csv(world, &files.generic_csv)?;
    write_fhir_ndjson(
        world,
        &files.service_requests_ndjson,
        &files.patients_ndjson,
    )?;
    Ok(files)
}

/// A new (or truncated) file readable and writable by its owner only.
fn owner_only(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

fn reason_label(reason: &str) -> &'static str {
    match reason {
        "out_of_network" => "Out of Network",
        "level_of_care_mismatch" => "Level of Care",
        "geography" => "Geography",
        "capacity" => "No Beds",
        "clinical_exclusion" => "Clinical Exclusion",
        "declined" => "Patient Declined",
        _ => "No Contact",
    }
}

/// One row per inbound inquiry; a refer-out appears as `referred_out_to` on its inquiry's row.
pub fn write_generic_csv(world: &World, path: &Path) -> std::io::Result<()> {
    let mut random = Random::new(world.spec.seed).fork(101);
    let mut writer = csv::Writer::from_writer(BufWriter::new(owner_only(path)?));
    writer.write_record(GENERIC_HEADER)?;
    for referral in world
        .referrals
        .iter()
        .filter(|r| r.direction == Direction::In)
    {
        let partner = &world.partners[referral.partner];
        let source = if random.chance(0.12) {
            name_variant(&mut random, &partner.name)
        } else {
            partner.name.clone()
        };
        let npi = partner
            .npi
            .clone()
            .filter(|_| random.chance(0.7))
            .unwrap_or_default();
        let date = referral.inquiry_at.date_naive();
        let inquiry_date = if random.chance(0.25) {
            date.format("%m/%d/%Y").to_string()
        } else {
            date.to_string()
        };
        let referred_by = referral
            .contact
            .map(|c| {
                format!(
                    "{} {}",
                    world.contacts[c].first_name, world.contacts[c].last_name
                )
            })
            .unwrap_or_default();
        let rep = referral
            .rep
            .map(|r| format!("{} {}", world.reps[r].first_name, world.reps[r].last_name))
            .unwrap_or_default();
        let referred_out_to = referral
            .referred_out_as
            .map(|out| world.partners[world.referrals[out].partner].name.clone())
            .unwrap_or_default();
        let patient = &referral.patient;
        let notes = match random.below(4) {
            0 => "VOB pending, left voicemail".to_string(),
            1 => format!(
                "Patient {} called back, prefers mornings",
                patient.first_name
            ),
            _ => String::new(),
        };
        writer.write_record([
            referral.inquiry_id.as_str(),
            &inquiry_date,
            &source,
            &npi,
            partner.source_type.as_str(),
            &referred_by,
            &rep,
            &referral.payer,
            &referral.plan_type,
            &referral.level_of_care,
            referral.stage.label(),
            referral.reason.map(reason_label).unwrap_or_default(),
            &referred_out_to,
            &referral
                .admit_date
                .map(|d| d.to_string())
                .unwrap_or_default(),
            &patient.mrn,
            &format!("{} {}", patient.first_name, patient.last_name),
            &patient.birth_date.to_string(),
            &patient.phone,
            &patient.address,
            &patient.zip,
            &notes,
        ])?;
    }
    writer.flush()
}

const INQUIRY_SYSTEM: &str = "urn:refbridge:sandbox:inquiry";
const MRN_SYSTEM: &str = "urn:refbridge:sandbox:mrn";
const NPI_SYSTEM: &str = "http://hl7.org/fhir/sid/us-npi";

/// Every referral as a `ServiceRequest` (inbound: requester = the partner; outbound: requester =
/// the facility, performer = the partner, `basedOn` = the inquiry), and every patient once.
pub fn write_fhir_ndjson(
    world: &World,
    service_requests: &Path,
    patients: &Path,
) -> std::io::Result<()> {
    let mut requests = BufWriter::new(owner_only(service_requests)?);
    let mut patient_file = BufWriter::new(owner_only(patients)?);
    let facility = json!({
        "type": "Organization",
        "display": world.facility.name,
        "identifier": {"system": NPI_SYSTEM, "value": world.facility.npi},
    });
    let mut seen_patients = std::collections::HashSet::new();
    for referral in &world.referrals {
        let partner = &world.partners[referral.partner];
        let mut partner_reference = json!({
            "type": if partner.source_type == SourceType::Physician && partner.name.starts_with("Dr.") { "Practitioner" } else { "Organization" },
            "display": partner.name,
        });
        if let Some(npi) = &partner.npi {
            partner_reference["identifier"] = json!({"system": NPI_SYSTEM, "value": npi});
        }
        let status = match referral.stage {
            Stage::Admitted => "completed",
            Stage::NotAdmitted | Stage::ReferredOut => "revoked",
            Stage::Pending => "active",
        };
        let patient_id = format!("pt-{}", referral.patient.mrn);
        let mut request = json!({
            "resourceType": "ServiceRequest",
            "id": format!("sr-{}", referral.inquiry_id),
            "identifier": [{"system": INQUIRY_SYSTEM, "value": referral.inquiry_id}],
            "status": status,
            "intent": "order",
            "authoredOn": referral.inquiry_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "subject": {
                "reference": format!("Patient/{patient_id}"),
                "identifier": {"system": MRN_SYSTEM, "value": referral.patient.mrn},
                "display": format!("{} {}", referral.patient.first_name, referral.patient.last_name),
            },
            "code": {"coding": [{"system": "https://www.asam.org/asam-criteria", "code": referral.level_of_care}]},
            "insurance": [{"display": referral.payer}],
            "note": [{"text": format!("Intake call with {}", referral.patient.first_name)}],
        });
        match referral.direction {
            Direction::In => {
                request["requester"] = partner_reference;
                request["performer"] = json!([facility]);
            }
            Direction::Out => {
                request["requester"] = facility.clone();
                request["performer"] = json!([partner_reference]);
                if let Some(parent) = referral.parent {
                    request["basedOn"] = json!([{"identifier": {"system": INQUIRY_SYSTEM, "value": world.referrals[parent].inquiry_id}}]);
                }
            }
        }
        if let Some(date) = referral.admit_date {
            request["occurrenceDateTime"] = json!(date.to_string());
        }
        if let Some(reason) = referral.reason {
            request["extension"] = json!([{"url": "https://refbridge.example/fhir/StructureDefinition/disposition-reason", "valueCode": reason}]);
        }
        serde_json::to_writer(&mut requests, &request)?;
        requests.write_all(b"\n")?;
        if seen_patients.insert(referral.patient.mrn.clone()) {
            let patient = &referral.patient;
            let resource = json!({
                "resourceType": "Patient",
                "id": patient_id,
                "identifier": [{"system": MRN_SYSTEM, "value": patient.mrn}],
                "name": [{"family": patient.last_name, "given": [patient.first_name]}],
                "birthDate": patient.birth_date.to_string(),
                "telecom": [{"system": "phone", "value": patient.phone}],
                "address": [{"line": [patient.address], "postalCode": patient.zip}],
            });
            serde_json::to_writer(&mut patient_file, &resource)?;
            patient_file.write_all(b"\n")?;
        }
    }
    requests.flush()?;
    patient_file.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_world_writes_byte_identical_exports() {
        let spec = WorldSpec {
            seed: 11,
            scale: Scale::Small,
            as_of: chrono::NaiveDate::from_ymd_opt(2026, 10, 15).unwrap(),
        };
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        let a = write_exports(&crate::generate(spec), first.path()).unwrap();
        let b = write_exports(&crate::generate(spec), second.path()).unwrap();
        for (x, y) in [
            (&a.generic_csv, &b.generic_csv),
            (&a.service_requests_ndjson, &b.service_requests_ndjson),
            (&a.patients_ndjson, &b.patients_ndjson),
        ] {
            let bytes = std::fs::read(x).unwrap();
            assert!(!bytes.is_empty());
            assert_eq!(bytes, std::fs::read(y).unwrap(), "{}", x.display());
        }
        let csv = std::fs::read_to_string(&a.generic_csv).unwrap();
        assert!(csv.starts_with(&GENERIC_HEADER.join(",")));
        let world = crate::generate(spec);
        let inbound = world
            .referrals
            .iter()
            .filter(|r| r.direction == Direction::In)
            .count();
        let mut reader = csv::Reader::from_path(&a.generic_csv).unwrap();
        assert_eq!(reader.records().count(), inbound);
        let lines = std::fs::read_to_string(&a.service_requests_ndjson)
            .unwrap()
            .lines()
            .count();
        assert_eq!(lines, world.referrals.len());
    }
}
