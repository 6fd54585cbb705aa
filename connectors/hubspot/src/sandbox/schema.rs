//! What the sandbox's CRM looks like before any record exists: the object types it serves, the
//! properties each type starts with (HubSpot's own ones that refbridge reads or writes, plus the
//! custom properties the synthetic world needs), and HubSpot's association type ids.
//!
//! This module is pure data and lookups; it holds no records and does no I/O. Deliberately absent:
//! `refbridge_key` on tasks — a client must declare it through the properties API, as on a real portal.

use std::fmt;

/// The CRM object types the sandbox serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum ObjectType {
    Companies,
    Contacts,
    Deals,
    Tasks,
    Calls,
    Meetings,
    Emails,
    Notes,
}

impl ObjectType {
    pub(crate) const ALL: [ObjectType; 8] = [
        ObjectType::Companies,
        ObjectType::Contacts,
        ObjectType::Deals,
        ObjectType::Tasks,
        ObjectType::Calls,
        ObjectType::Meetings,
        ObjectType::Emails,
        ObjectType::Notes,
    ];

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The path spelling: `companies`, `contacts`, …
    pub(crate) fn plural(self) -> &'static str {
        match self {
            ObjectType::Companies => "companies",
            ObjectType::Contacts => "contacts",
            ObjectType::Deals => "deals",
            ObjectType::Tasks => "tasks",
            ObjectType::Calls => "calls",
            ObjectType::Meetings => "meetings",
            ObjectType::Emails => "emails",
            ObjectType::Notes => "notes",
        }
    }

    pub(crate) fn singular(self) -> &'static str {
        match self {
            ObjectType::Companies => "company",
            ObjectType::Contacts => "contact",
            ObjectType::Deals => "deal",
            ObjectType::Tasks => "task",
            ObjectType::Calls => "call",
            ObjectType::Meetings => "meeting",
            ObjectType::Emails => "email",
            ObjectType::Notes => "note",
        }
    }

    /// HubSpot's object type id (`0-1` is contacts).
    pub(crate) fn type_id(self) -> &'static str {
        match self {
            ObjectType::Contacts => "0-1",
            ObjectType::Companies => "0-2",
            ObjectType::Deals => "0-3",
            ObjectType::Tasks => "0-27",
            ObjectType::Notes => "0-46",
            ObjectType::Meetings => "0-47",
            ObjectType::Calls => "0-48",
            ObjectType::Emails => "0-49",
        }
    }

    /// Accepts the plural, the singular and the type id, as HubSpot does.
    pub(crate) fn parse(text: &str) -> Option<ObjectType> {
        let lower = text.trim().to_ascii_lowercase();
        ObjectType::ALL
            .into_iter()
            .find(|t| lower == t.plural() || lower == t.singular() || lower == t.type_id())
    }

    /// Ids of seeded and created records of this type start above this base, so that an id of one
    /// type never names a record of another.
    pub(crate) fn id_base(self) -> u64 {
        (self.index() as u64 + 1) * 1_000_000_000 + 1_000_000
    }

    /// The calculated property that holds the creation time.
    pub(crate) fn created_property(self) -> &'static str {
        match self {
            ObjectType::Companies | ObjectType::Contacts | ObjectType::Deals => "createdate",
            _ => "hs_createdate",
        }
    }

    /// The calculated property that holds the last modification time (`lastmodifieddate` on contacts).
    pub(crate) fn modified_property(self) -> &'static str {
        match self {
            ObjectType::Contacts => "lastmodifieddate",
            _ => "hs_lastmodifieddate",
        }
    }

    /// What a read returns when the request names no properties.
    pub(crate) fn default_properties(self) -> &'static [&'static str] {
        match self {
            ObjectType::Companies => &[
                "createdate",
                "domain",
                "hs_lastmodifieddate",
                "hs_object_id",
                "name",
            ],
            ObjectType::Contacts => &[
                "createdate",
                "email",
                "firstname",
                "hs_object_id",
                "lastmodifieddate",
                "lastname",
            ],
            ObjectType::Deals => &[
                "amount",
                "closedate",
                "createdate",
                "dealname",
                "dealstage",
                "hs_lastmodifieddate",
                "hs_object_id",
                "pipeline",
            ],
            _ => &["hs_createdate", "hs_lastmodifieddate", "hs_object_id"],
        }
    }

    /// Free-text `query` in a search looks at these.
    pub(crate) fn searchable_properties(self) -> &'static [&'static str] {
        match self {
            ObjectType::Companies => &["name", "domain", "website", "phone"],
            ObjectType::Contacts => &["firstname", "lastname", "email", "phone", "company"],
            ObjectType::Deals => &["dealname", "inquiry_id"],
            ObjectType::Tasks => &["hs_task_subject", "hs_task_body"],
            ObjectType::Calls => &["hs_call_title", "hs_call_body"],
            ObjectType::Meetings => &["hs_meeting_title", "hs_meeting_body"],
            ObjectType::Emails => &["hs_email_subject", "hs_email_text"],
            ObjectType::Notes => &["hs_note_body"],
        }
    }

    /// Engagements require `hs_timestamp` on create.
    pub(crate) fn is_engagement(self) -> bool {
        !matches!(
            self,
            ObjectType::Companies | ObjectType::Contacts | ObjectType::Deals
        )
    }

    /// `CONTACT`, as in "Could not get some CONTACT objects".
    pub(crate) fn upper_singular(self) -> String {
        self.singular().to_ascii_uppercase()
    }
}

impl fmt::Display for ObjectType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.plural())
    }
}

/// HubSpot's property data types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PropertyKind {
    String,
    Number,
    Date,
    Datetime,
    Enumeration,
    Bool,
}

impl PropertyKind {
    pub(crate) fn parse(text: &str) -> Option<PropertyKind> {
        match text {
            "string" => Some(PropertyKind::String),
            "number" => Some(PropertyKind::Number),
            "date" => Some(PropertyKind::Date),
            "datetime" => Some(PropertyKind::Datetime),
            "enumeration" => Some(PropertyKind::Enumeration),
            "bool" => Some(PropertyKind::Bool),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PropertyKind::String => "string",
            PropertyKind::Number => "number",
            PropertyKind::Date => "date",
            PropertyKind::Datetime => "datetime",
            PropertyKind::Enumeration => "enumeration",
            PropertyKind::Bool => "bool",
        }
    }
}

/// The field types a client may give when creating a property (HubSpot's list).
pub(crate) const FIELD_TYPES: [&str; 12] = [
    "textarea",
    "text",
    "date",
    "file",
    "number",
    "select",
    "radio",
    "checkbox",
    "booleancheckbox",
    "calculation_equation",
    "html",
    "phonenumber",
];

/// Properties whose value the CRM computes from the record itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Calculated {
    ObjectId,
    CreatedAt,
    ModifiedAt,
}

/// One option of an enumeration property.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OptionDef {
    pub label: String,
    pub value: String,
}

/// One property definition.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PropertyDef {
    pub name: String,
    pub label: String,
    pub kind: PropertyKind,
    pub field_type: String,
    pub group_name: String,
    pub description: String,
    pub has_unique_value: bool,
    pub options: Vec<OptionDef>,
    /// Options come from elsewhere (owners), not from `options`.
    pub external_options: bool,
    pub hubspot_defined: bool,
    pub calculated: Option<Calculated>,
    pub display_order: i64,
    pub created_ms: i64,
}

impl PropertyDef {
    pub(crate) fn new(
        name: &str,
        label: &str,
        kind: PropertyKind,
        field_type: &str,
        group_name: &str,
    ) -> PropertyDef {
        PropertyDef {
            name: name.to_string(),
            label: label.to_string(),
            kind,
            field_type: field_type.to_string(),
            group_name: group_name.to_string(),
            description: String::new(),
            has_unique_value: false,
            options: Vec::new(),
            external_options: false,
            hubspot_defined: true,
            calculated: None,
            display_order: -1,
            created_ms: 0,
        }
    }

    pub(crate) fn is_multi_select(&self) -> bool {
        self.kind == PropertyKind::Enumeration && self.field_type == "checkbox"
    }

    fn with_options<S: AsRef<str>>(mut self, values: &[(S, S)]) -> PropertyDef {
        self.options = values
            .iter()
            .map(|(value, label)| OptionDef {
                label: label.as_ref().to_string(),
                value: value.as_ref().to_string(),
            })
            .collect();
        self
    }

    fn calculated(mut self, calculated: Calculated) -> PropertyDef {
        self.calculated = Some(calculated);
        self
    }

    fn custom(mut self) -> PropertyDef {
        self.hubspot_defined = false;
        self
    }
}

/// Option lists that depend on the world (payers, levels of care, stages).
#[derive(Debug, Clone, Default)]
pub(crate) struct WorldOptions {
    pub payers: Vec<String>,
    pub levels_of_care: Vec<String>,
    pub source_types: Vec<String>,
    pub stages: Vec<(String, String)>,
}

fn text(name: &str, label: &str, group: &str) -> PropertyDef {
    PropertyDef::new(name, label, PropertyKind::String, "text", group)
}

fn textarea(name: &str, label: &str, group: &str) -> PropertyDef {
    PropertyDef::new(name, label, PropertyKind::String, "textarea", group)
}

fn datetime(name: &str, label: &str, group: &str) -> PropertyDef {
    PropertyDef::new(name, label, PropertyKind::Datetime, "date", group)
}

fn boolean(name: &str, label: &str, group: &str) -> PropertyDef {
    PropertyDef::new(name, label, PropertyKind::Bool, "booleancheckbox", group)
        .with_options(&[("true", "True"), ("false", "False")])
}

fn select(name: &str, label: &str, group: &str, values: &[(&str, &str)]) -> PropertyDef {
    PropertyDef::new(name, label, PropertyKind::Enumeration, "select", group).with_options(values)
}

fn checkbox(name: &str, label: &str, group: &str, values: &[String]) -> PropertyDef {
    let pairs: Vec<(&str, &str)> = values.iter().map(|v| (v.as_str(), v.as_str())).collect();
    PropertyDef::new(name, label, PropertyKind::Enumeration, "checkbox", group).with_options(&pairs)
}

/// The properties an object type starts with.
pub(crate) fn initial_properties(
    object_type: ObjectType,
    world: &WorldOptions,
) -> Vec<PropertyDef> {
    let info = format!("{}information", object_type.singular());
    let info = info.as_str();
    let mut defs = vec![
        PropertyDef::new(
            "hs_object_id",
            "Record ID",
            PropertyKind::Number,
            "number",
            info,
        )
        .calculated(Calculated::ObjectId),
        datetime(object_type.created_property(), "Create Date", info)
            .calculated(Calculated::CreatedAt),
        datetime(object_type.modified_property(), "Last Modified Date", info)
            .calculated(Calculated::ModifiedAt),
        {
            let mut owner = PropertyDef::new(
                "hubspot_owner_id",
                "Owner",
                PropertyKind::Enumeration,
                "select",
                info,
            );
            owner.external_options = true;
            owner
        },
    ];
    match object_type {
        ObjectType::Companies => {
            defs.extend([
                text("name", "Company name", info),
                text("domain", "Company Domain Name", info),
                text("website", "Website URL", info),
                PropertyDef::new(
                    "phone",
                    "Phone Number",
                    PropertyKind::String,
                    "phonenumber",
                    info,
                ),
                text("address", "Street Address", info),
                text("city", "City", info),
                text("state", "State/Region", info),
                text("zip", "Postal Code", info),
                text("country", "Country/Region", info),
                textarea("description", "Description", info),
            ]);
            let source_types: Vec<(&str, &str)> = world
                .source_types
                .iter()
                .map(|s| (s.as_str(), s.as_str()))
                .collect();
            defs.extend([
                text("npi", "NPI", "referral_partner").custom(),
                select(
                    "referral_source_type",
                    "Referral source type",
                    "referral_partner",
                    &source_types,
                )
                .custom(),
                checkbox(
                    "payers_accepted",
                    "Payers accepted",
                    "referral_partner",
                    &world.payers,
                )
                .custom(),
                checkbox(
                    "levels_of_care",
                    "Levels of care",
                    "referral_partner",
                    &world.levels_of_care,
                )
                .custom(),
                boolean(
                    "accepting_referrals",
                    "Accepting referrals",
                    "referral_partner",
                )
                .custom(),
                boolean("preferred", "Preferred partner", "referral_partner").custom(),
            ]);
        }
        ObjectType::Contacts => defs.extend([
            text("firstname", "First Name", info),
            text("lastname", "Last Name", info),
            text("email", "Email", info),
            PropertyDef::new(
                "phone",
                "Phone Number",
                PropertyKind::String,
                "phonenumber",
                info,
            ),
            text("jobtitle", "Job Title", info),
            text("company", "Company Name", info),
            PropertyDef::new(
                "associatedcompanyid",
                "Primary Associated Company ID",
                PropertyKind::Number,
                "number",
                info,
            ),
        ]),
        ObjectType::Deals => {
            let stages: Vec<(&str, &str)> = world
                .stages
                .iter()
                .map(|(id, label)| (id.as_str(), label.as_str()))
                .collect();
            let mut inquiry_id = text("inquiry_id", "Inquiry ID", "referral").custom();
            inquiry_id.has_unique_value = true;
            defs.extend([
                text("dealname", "Deal Name", info),
                PropertyDef::new(
                    "dealstage",
                    "Deal Stage",
                    PropertyKind::Enumeration,
                    "radio",
                    info,
                )
                .with_options(&stages),
                select(
                    "pipeline",
                    "Pipeline",
                    info,
                    &[("admissions", "Admissions")],
                ),
                datetime("closedate", "Close Date", info),
                PropertyDef::new("amount", "Amount", PropertyKind::Number, "number", info),
                inquiry_id,
                select(
                    "referral_direction",
                    "Referral direction",
                    "referral",
                    &[("in", "Inbound"), ("out", "Outbound")],
                )
                .custom(),
                text("disposition_reason", "Disposition reason", "referral").custom(),
                text("payer", "Payer", "referral").custom(),
                text("plan_type", "Plan type", "referral").custom(),
                text("level_of_care", "Level of care", "referral").custom(),
                PropertyDef::new(
                    "admit_date",
                    "Admit date",
                    PropertyKind::Date,
                    "date",
                    "referral",
                )
                .custom(),
                text("parent_inquiry_id", "Parent inquiry ID", "referral").custom(),
            ]);
        }
        ObjectType::Tasks => defs.extend([
            datetime("hs_timestamp", "Due date", info),
            text("hs_task_subject", "Task Title", info),
            textarea("hs_task_body", "Task notes", info),
            select(
                "hs_task_status",
                "Task Status",
                info,
                &[
                    ("NOT_STARTED", "Not started"),
                    ("IN_PROGRESS", "In progress"),
                    ("WAITING", "Waiting"),
                    ("COMPLETED", "Completed"),
                    ("DEFERRED", "Deferred"),
                ],
            ),
            select(
                "hs_task_priority",
                "Priority",
                info,
                &[
                    ("NONE", "None"),
                    ("LOW", "Low"),
                    ("MEDIUM", "Medium"),
                    ("HIGH", "High"),
                ],
            ),
            select(
                "hs_task_type",
                "Task Type",
                info,
                &[("TODO", "To-do"), ("CALL", "Call"), ("EMAIL", "Email")],
            ),
            datetime("hs_task_completion_date", "Completed at", info),
        ]),
        ObjectType::Calls => defs.extend([
            datetime("hs_timestamp", "Activity date", info),
            text("hs_call_title", "Call Title", info),
            textarea("hs_call_body", "Call notes", info),
            select(
                "hs_call_direction",
                "Call direction",
                info,
                &[("INBOUND", "Inbound"), ("OUTBOUND", "Outbound")],
            ),
            text("hs_call_status", "Call status", info),
            PropertyDef::new(
                "hs_call_duration",
                "Call duration",
                PropertyKind::Number,
                "number",
                info,
            ),
        ]),
        ObjectType::Meetings => defs.extend([
            datetime("hs_timestamp", "Activity date", info),
            text("hs_meeting_title", "Meeting name", info),
            textarea("hs_meeting_body", "Meeting description", info),
            datetime("hs_meeting_start_time", "Start time", info),
            datetime("hs_meeting_end_time", "End time", info),
            text("hs_meeting_location", "Location", info),
            select(
                "hs_meeting_outcome",
                "Meeting outcome",
                info,
                &[
                    ("SCHEDULED", "Scheduled"),
                    ("COMPLETED", "Completed"),
                    ("RESCHEDULED", "Rescheduled"),
                    ("NO_SHOW", "No show"),
                    ("CANCELED", "Canceled"),
                ],
            ),
            select(
                "hs_activity_type",
                "Call and meeting type",
                info,
                &[("Meeting", "Meeting"), ("Visit", "Visit")],
            ),
        ]),
        ObjectType::Emails => defs.extend([
            datetime("hs_timestamp", "Activity date", info),
            text("hs_email_subject", "Email subject", info),
            textarea("hs_email_text", "Email body", info),
            select(
                "hs_email_direction",
                "Email direction",
                info,
                &[
                    ("EMAIL", "Logged email"),
                    ("INCOMING_EMAIL", "Incoming email"),
                    ("FORWARDED_EMAIL", "Forwarded email"),
                ],
            ),
            text("hs_email_status", "Email send status", info),
        ]),
        ObjectType::Notes => defs.extend([
            datetime("hs_timestamp", "Activity date", info),
            textarea("hs_note_body", "Note body", info),
        ]),
    }
    for (order, def) in defs.iter_mut().enumerate() {
        def.display_order = order as i64;
    }
    defs
}

/// One HubSpot-defined association type, in one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AssociationType {
    pub from: ObjectType,
    pub to: ObjectType,
    pub id: u16,
    /// The type id of the same association seen from the other side.
    pub inverse: u16,
    pub label: Option<&'static str>,
}

use ObjectType::{Calls, Companies, Contacts, Deals, Emails, Meetings, Notes, Tasks};

/// HubSpot's association type ids (one direction each; the reverse is derived).
const ASSOCIATIONS_ONE_WAY: [(ObjectType, ObjectType, u16, u16, Option<&str>); 20] = [
    (Contacts, Companies, 279, 280, None),
    (Contacts, Companies, 1, 2, Some("Primary")),
    (Deals, Companies, 341, 342, None),
    (Deals, Companies, 5, 6, Some("Primary")),
    (Deals, Contacts, 3, 4, None),
    (Tasks, Contacts, 204, 203, None),
    (Tasks, Companies, 192, 191, None),
    (Tasks, Deals, 216, 215, None),
    (Notes, Contacts, 202, 201, None),
    (Notes, Companies, 190, 189, None),
    (Notes, Deals, 214, 213, None),
    (Calls, Contacts, 194, 193, None),
    (Calls, Companies, 182, 181, None),
    (Calls, Deals, 206, 205, None),
    (Meetings, Contacts, 200, 199, None),
    (Meetings, Companies, 188, 187, None),
    (Meetings, Deals, 212, 211, None),
    (Emails, Contacts, 198, 197, None),
    (Emails, Companies, 186, 185, None),
    (Emails, Deals, 210, 209, None),
];

/// Every association type in both directions.
pub(crate) fn association_types() -> impl Iterator<Item = AssociationType> {
    ASSOCIATIONS_ONE_WAY
        .into_iter()
        .flat_map(|(from, to, id, inverse, label)| {
            [
                AssociationType {
                    from,
                    to,
                    id,
                    inverse,
                    label,
                },
                AssociationType {
                    from: to,
                    to: from,
                    id: inverse,
                    inverse: id,
                    label,
                },
            ]
        })
}

/// The HubSpot-defined type `id` from `from` to `to`, if there is one.
pub(crate) fn association_type(
    from: ObjectType,
    to: ObjectType,
    id: u16,
) -> Option<AssociationType> {
    association_types().find(|t| t.from == from && t.to == to && t.id == id)
}

/// The unlabeled (default) association type between two object types.
pub(crate) fn default_association_type(
    from: ObjectType,
    to: ObjectType,
) -> Option<AssociationType> {
    association_types().find(|t| t.from == from && t.to == to && t.label.is_none())
}

/// The v3 `type` name of an association (`contact_to_company`, `contact_to_company_unlabeled`).
pub(crate) fn association_type_name(kind: AssociationType) -> String {
    let base = format!("{}_to_{}", kind.from.singular(), kind.to.singular());
    let has_labeled =
        association_types().any(|t| t.from == kind.from && t.to == kind.to && t.label.is_some());
    if kind.label.is_none() && has_labeled {
        format!("{base}_unlabeled")
    } else {
        base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_types_parse_every_spelling_and_association_ids_match_hubspot() {
        assert_eq!(ObjectType::parse("contacts"), Some(ObjectType::Contacts));
        assert_eq!(ObjectType::parse("contact"), Some(ObjectType::Contacts));
        assert_eq!(ObjectType::parse("0-27"), Some(ObjectType::Tasks));
        assert_eq!(ObjectType::parse("widgets"), None);
        assert_eq!(
            association_type(Tasks, Contacts, 204).map(|t| t.inverse),
            Some(203)
        );
        assert_eq!(
            association_type(Companies, Notes, 189).map(|t| t.inverse),
            Some(190)
        );
        assert_eq!(
            default_association_type(Contacts, Companies).map(|t| t.id),
            Some(279)
        );
        assert_eq!(
            default_association_type(Companies, Calls).map(|t| t.id),
            Some(181)
        );
        assert_eq!(
            association_type_name(association_type(Contacts, Companies, 1).unwrap()),
            "contact_to_company"
        );
        assert_eq!(
            association_type_name(association_type(Contacts, Companies, 279).unwrap()),
            "contact_to_company_unlabeled"
        );
        let ids: std::collections::HashSet<u16> = ObjectType::ALL
            .iter()
            .map(|t| (t.id_base() / 1_000_000_000) as u16)
            .collect();
        assert_eq!(ids.len(), ObjectType::ALL.len());
    }
}
