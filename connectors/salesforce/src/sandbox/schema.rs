//! The sandbox's object model: which sObjects exist, their fields, and what `describe` says about
//! them.
//!
//! Everything here is static metadata. Records live in [`super::store`]; this module must not hold
//! data. Field tables start with the same seven system fields on every object (see
//! [`system`]), so stores can address them by position.

use serde_json::{Value as Json, json};

/// The sObject types the sandbox serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectType {
    User,
    Account,
    Contact,
    Opportunity,
    Task,
    Event,
}

/// Positions of the system fields every object starts with.
pub mod system {
    pub const ID: usize = 0;
    pub const IS_DELETED: usize = 1;
    pub const CREATED_DATE: usize = 2;
    pub const CREATED_BY_ID: usize = 3;
    pub const LAST_MODIFIED_DATE: usize = 4;
    pub const LAST_MODIFIED_BY_ID: usize = 5;
    pub const SYSTEM_MODSTAMP: usize = 6;
}

impl ObjectType {
    pub const ALL: [ObjectType; 6] = [
        ObjectType::User,
        ObjectType::Account,
        ObjectType::Contact,
        ObjectType::Opportunity,
        ObjectType::Task,
        ObjectType::Event,
    ];

    /// The API name, e.g. `Account`.
    pub fn name(self) -> &'static str {
        match self {
            ObjectType::User => "User",
            ObjectType::Account => "Account",
            ObjectType::Contact => "Contact",
            ObjectType::Opportunity => "Opportunity",
            ObjectType::Task => "Task",
            ObjectType::Event => "Event",
        }
    }

    pub fn label_plural(self) -> &'static str {
        match self {
            ObjectType::User => "Users",
            ObjectType::Account => "Accounts",
            ObjectType::Contact => "Contacts",
            ObjectType::Opportunity => "Opportunities",
            ObjectType::Task => "Tasks",
            ObjectType::Event => "Events",
        }
    }

    /// The real three-character id prefix.
    pub fn key_prefix(self) -> &'static str {
        match self {
            ObjectType::User => "005",
            ObjectType::Account => "001",
            ObjectType::Contact => "003",
            ObjectType::Opportunity => "006",
            ObjectType::Task => "00T",
            ObjectType::Event => "00U",
        }
    }

    /// Position in [`ObjectType::ALL`], used to index per-object arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Case-insensitive lookup by API name.
    pub fn from_name(name: &str) -> Option<ObjectType> {
        ObjectType::ALL
            .into_iter()
            .find(|object| object.name().eq_ignore_ascii_case(name))
    }

    pub fn from_id_prefix(id: &str) -> Option<ObjectType> {
        let prefix = id.get(..3)?;
        ObjectType::ALL
            .into_iter()
            .find(|object| object.key_prefix() == prefix)
    }

    /// Users are seeded from the world and read-only in the sandbox.
    pub fn writable(self) -> bool {
        self != ObjectType::User
    }

    pub fn fields(self) -> &'static [FieldDef] {
        match self {
            ObjectType::User => USER_FIELDS,
            ObjectType::Account => ACCOUNT_FIELDS,
            ObjectType::Contact => CONTACT_FIELDS,
            ObjectType::Opportunity => OPPORTUNITY_FIELDS,
            ObjectType::Task => TASK_FIELDS,
            ObjectType::Event => EVENT_FIELDS,
        }
    }

    pub fn field(self, index: usize) -> &'static FieldDef {
        &self.fields()[index]
    }

    /// Case-insensitive field lookup.
    pub fn field_index(self, name: &str) -> Option<usize> {
        self.fields()
            .iter()
            .position(|field| field.name.eq_ignore_ascii_case(name))
    }

    /// The reference field whose relationship is called `name` (`Owner`, `Referral_Source__r`).
    pub fn relationship_index(self, name: &str) -> Option<usize> {
        self.fields().iter().position(|field| {
            field
                .relationship_name
                .is_some_and(|relationship| relationship.eq_ignore_ascii_case(name))
        })
    }

    /// Index of the field called `Name` (every object has one, the activities excepted).
    pub fn name_field(self) -> Option<usize> {
        self.field_index("Name")
    }
}

/// A field's data type, as `describe` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Id,
    Reference,
    String,
    TextArea,
    Email,
    Phone,
    Url,
    Picklist,
    MultiPicklist,
    Boolean,
    Date,
    DateTime,
    Int,
    Double,
}

impl FieldType {
    pub fn describe_name(self) -> &'static str {
        match self {
            FieldType::Id => "id",
            FieldType::Reference => "reference",
            FieldType::String => "string",
            FieldType::TextArea => "textarea",
            FieldType::Email => "email",
            FieldType::Phone => "phone",
            FieldType::Url => "url",
            FieldType::Picklist => "picklist",
            FieldType::MultiPicklist => "multipicklist",
            FieldType::Boolean => "boolean",
            FieldType::Date => "date",
            FieldType::DateTime => "datetime",
            FieldType::Int => "int",
            FieldType::Double => "double",
        }
    }

    /// The SOAP type `describe` reports.
    fn soap_type(self) -> &'static str {
        match self {
            FieldType::Id | FieldType::Reference => "tns:ID",
            FieldType::Boolean => "xsd:boolean",
            FieldType::Date => "xsd:date",
            FieldType::DateTime => "xsd:dateTime",
            FieldType::Int => "xsd:int",
            FieldType::Double => "xsd:double",
            _ => "xsd:string",
        }
    }

    /// Values held as text (ids, strings, picklists).
    pub fn is_textual(self) -> bool {
        !matches!(
            self,
            FieldType::Boolean
                | FieldType::Date
                | FieldType::DateTime
                | FieldType::Int
                | FieldType::Double
        )
    }

    /// The name SOQL type errors use ("must be of type dateTime").
    pub fn soql_name(self) -> &'static str {
        match self {
            FieldType::Boolean => "boolean",
            FieldType::Date => "date",
            FieldType::DateTime => "dateTime",
            FieldType::Int | FieldType::Double => "number",
            FieldType::Id | FieldType::Reference => "id",
            _ => "string",
        }
    }
}

/// One field of an sObject.
#[derive(Debug, Clone, Copy)]
pub struct FieldDef {
    pub name: &'static str,
    pub label: &'static str,
    pub field_type: FieldType,
    /// Maximum length in characters for textual fields (0 otherwise).
    pub length: u32,
    pub nillable: bool,
    pub createable: bool,
    pub updateable: bool,
    /// Set by the server when the client leaves it out (`OwnerId`, `Status`).
    pub defaulted_on_create: bool,
    pub external_id: bool,
    pub unique: bool,
    pub reference_to: &'static [ObjectType],
    pub relationship_name: Option<&'static str>,
    pub picklist_values: &'static [&'static str],
    /// A restricted picklist refuses values outside `picklist_values`.
    pub restricted_picklist: bool,
    pub default_value: Option<&'static str>,
}

impl FieldDef {
    const fn new(name: &'static str, label: &'static str, field_type: FieldType) -> FieldDef {
        FieldDef {
            name,
            label,
            field_type,
            length: 0,
            nillable: true,
            createable: true,
            updateable: true,
            defaulted_on_create: false,
            external_id: false,
            unique: false,
            reference_to: &[],
            relationship_name: None,
            picklist_values: &[],
            restricted_picklist: false,
            default_value: None,
        }
    }

    const fn text(
        name: &'static str,
        label: &'static str,
        field_type: FieldType,
        length: u32,
    ) -> FieldDef {
        FieldDef {
            length,
            ..FieldDef::new(name, label, field_type)
        }
    }

    const fn reference(
        name: &'static str,
        label: &'static str,
        reference_to: &'static [ObjectType],
        relationship_name: &'static str,
    ) -> FieldDef {
        FieldDef {
            length: 18,
            reference_to,
            relationship_name: Some(relationship_name),
            ..FieldDef::new(name, label, FieldType::Reference)
        }
    }

    const fn picklist(
        name: &'static str,
        label: &'static str,
        values: &'static [&'static str],
        restricted: bool,
    ) -> FieldDef {
        FieldDef {
            length: 255,
            picklist_values: values,
            restricted_picklist: restricted,
            ..FieldDef::new(name, label, FieldType::Picklist)
        }
    }

    /// Not nillable and no server default: a create must set it.
    const fn required(self) -> FieldDef {
        FieldDef {
            nillable: false,
            ..self
        }
    }

    /// Computed or system-maintained.
    const fn read_only(self) -> FieldDef {
        FieldDef {
            createable: false,
            updateable: false,
            ..self
        }
    }

    const fn create_only(self) -> FieldDef {
        FieldDef {
            updateable: false,
            ..self
        }
    }

    /// Not nillable, but the server fills it in when left out.
    const fn defaulted(self, default_value: Option<&'static str>) -> FieldDef {
        FieldDef {
            nillable: false,
            defaulted_on_create: true,
            default_value,
            ..self
        }
    }

    /// A unique external id (case-insensitive, like Salesforce's default).
    const fn external_unique(self) -> FieldDef {
        FieldDef {
            external_id: true,
            unique: true,
            ..self
        }
    }

    pub fn custom(&self) -> bool {
        self.name.ends_with("__c")
    }

    /// A create must carry a value for this field.
    pub fn required_on_create(&self) -> bool {
        !self.nillable && !self.defaulted_on_create && self.createable
    }

    /// What `describe` says about the field. `dynamic_values` are the values seen in the data, for
    /// open picklists without a fixed list.
    pub fn describe(&self, dynamic_values: Option<&[String]>) -> Json {
        let mut values: Vec<Json> = self
            .picklist_values
            .iter()
            .map(|value| picklist_entry(value, self.default_value == Some(*value)))
            .collect();
        if let Some(dynamic) = dynamic_values {
            values.extend(dynamic.iter().map(|value| picklist_entry(value, false)));
        }
        let sortable = !(self.field_type == FieldType::TextArea && self.length > 255)
            && self.field_type != FieldType::MultiPicklist;
        json!({
            "name": self.name,
            "label": self.label,
            "type": self.field_type.describe_name(),
            "soapType": self.field_type.soap_type(),
            "length": self.length,
            "byteLength": self.length * 3,
            "precision": 0,
            "scale": 0,
            "digits": if self.field_type == FieldType::Int { 9 } else { 0 },
            "custom": self.custom(),
            "externalId": self.external_id,
            "unique": self.unique,
            "caseSensitive": false,
            "nillable": self.nillable,
            "createable": self.createable,
            "updateable": self.updateable,
            "defaultedOnCreate": self.defaulted_on_create || self.name == "Id" || !self.createable && !self.nillable,
            "defaultValue": self.default_value,
            "calculated": false,
            "autoNumber": false,
            "filterable": self.field_type != FieldType::TextArea || self.length <= 255,
            "sortable": sortable,
            "groupable": sortable && !matches!(self.field_type, FieldType::DateTime | FieldType::Double),
            "idLookup": self.field_type == FieldType::Id || self.external_id || self.name == "Username",
            "nameField": self.name == "Name",
            "referenceTo": self.reference_to.iter().map(|object| object.name()).collect::<Vec<_>>(),
            "relationshipName": self.relationship_name,
            "polymorphicForeignKey": self.reference_to.len() > 1,
            "cascadeDelete": false,
            "restrictedPicklist": self.restricted_picklist,
            "picklistValues": values,
            "dependentPicklist": false,
            "htmlFormatted": false,
            "permissionable": self.custom() && self.nillable,
        })
    }
}

fn picklist_entry(value: &str, default: bool) -> Json {
    json!({"active": true, "defaultValue": default, "label": value, "validFor": null, "value": value})
}

/// What `GET /sobjects/{Type}/describe` answers (less the per-field list, added by the caller).
pub fn describe_object(object: ObjectType, version: &str, fields: Vec<Json>) -> Json {
    let mut summary = describe_global_entry(object, version);
    if let Some(map) = summary.as_object_mut() {
        map.insert("fields".to_string(), Json::Array(fields));
        map.insert("childRelationships".to_string(), json!([]));
        map.insert(
            "recordTypeInfos".to_string(),
            json!([{
                "active": true, "available": true, "defaultRecordTypeMapping": true, "master": true,
                "name": "Master", "developerName": "Master", "recordTypeId": "012000000000000AAA",
                "urls": {"layout": format!("/services/data/v{version}/sobjects/{}/describe/layouts/012000000000000AAA", object.name())}
            }]),
        );
        map.insert(
            "supportedScopes".to_string(),
            json!([{"label": "All", "name": "everything"}]),
        );
        map.insert("namedLayoutInfos".to_string(), json!([]));
        map.insert("networkScopeFieldName".to_string(), Json::Null);
        map.insert("actionOverrides".to_string(), json!([]));
    }
    summary
}

/// The entry of `GET /sobjects` (describeGlobal) for one object.
pub fn describe_global_entry(object: ObjectType, version: &str) -> Json {
    let base = format!("/services/data/v{version}/sobjects/{}", object.name());
    let writable = object.writable();
    json!({
        "name": object.name(),
        "label": object.name(),
        "labelPlural": object.label_plural(),
        "keyPrefix": object.key_prefix(),
        "custom": false,
        "customSetting": false,
        "activateable": false,
        "createable": writable,
        "updateable": writable,
        "deletable": writable,
        "undeletable": writable,
        "queryable": true,
        "retrieveable": true,
        "searchable": true,
        "replicateable": true,
        "triggerable": true,
        "layoutable": true,
        "mergeable": object == ObjectType::Account || object == ObjectType::Contact,
        "feedEnabled": false,
        "deprecatedAndHidden": false,
        "hasSubtypes": false,
        "isSubtype": false,
        "urls": {
            "sobject": base,
            "describe": format!("{base}/describe"),
            "rowTemplate": format!("{base}/{{ID}}"),
        },
    })
}

const fn id_field(label: &'static str) -> FieldDef {
    FieldDef {
        nillable: false,
        length: 18,
        ..FieldDef::new("Id", label, FieldType::Id).read_only()
    }
}

const fn system_fields(id_label: &'static str) -> [FieldDef; 7] {
    [
        id_field(id_label),
        FieldDef::new("IsDeleted", "Deleted", FieldType::Boolean)
            .read_only()
            .required(),
        FieldDef::new("CreatedDate", "Created Date", FieldType::DateTime)
            .read_only()
            .required(),
        FieldDef::reference(
            "CreatedById",
            "Created By ID",
            &[ObjectType::User],
            "CreatedBy",
        )
        .read_only()
        .required(),
        FieldDef::new(
            "LastModifiedDate",
            "Last Modified Date",
            FieldType::DateTime,
        )
        .read_only()
        .required(),
        FieldDef::reference(
            "LastModifiedById",
            "Last Modified By ID",
            &[ObjectType::User],
            "LastModifiedBy",
        )
        .read_only()
        .required(),
        FieldDef::new("SystemModstamp", "System Modstamp", FieldType::DateTime)
            .read_only()
            .required(),
    ]
}

/// Set by a merge on the records that lost it (deleted, pointing at the survivor); the sandbox
/// has no merge call, so it stays empty.
const fn master_record_field(object: ObjectType) -> FieldDef {
    let reference_to: &'static [ObjectType] = match object {
        ObjectType::Contact => &[ObjectType::Contact],
        _ => &[ObjectType::Account],
    };
    FieldDef::reference(
        "MasterRecordId",
        "Master Record ID",
        reference_to,
        "MasterRecord",
    )
    .read_only()
}

const fn owner_field(label: &'static str) -> FieldDef {
    FieldDef::reference("OwnerId", label, &[ObjectType::User], "Owner").defaulted(None)
}

/// The kinds of referral partner (`refbridge_synthetic::SourceType::as_str`).
pub const SOURCE_TYPES: &[&str] = &[
    "hospital",
    "physician",
    "therapist",
    "detox",
    "treatment_program",
    "school",
    "employer",
    "court",
    "community",
];

/// Opportunity stages: (label, closed, won).
pub const STAGES: &[(&str, bool, bool)] = &[
    ("Pending", false, false),
    ("Admitted", true, true),
    ("Not Admitted", true, false),
    ("Referred Out", true, false),
];

pub const TASK_STATUSES: &[&str] = &[
    "Not Started",
    "In Progress",
    "Completed",
    "Waiting on someone else",
    "Deferred",
];

const ACTIVITY_TYPES: &[&str] = &["Call", "Email", "Meeting", "Visit", "Other"];

static USER_FIELDS: &[FieldDef] = &{
    let s = system_fields("User ID");
    [
        s[0],
        s[1],
        s[2],
        s[3],
        s[4],
        s[5],
        s[6],
        FieldDef::text("Username", "Username", FieldType::String, 80).required(),
        FieldDef::text("FirstName", "First Name", FieldType::String, 40),
        FieldDef::text("LastName", "Last Name", FieldType::String, 80).required(),
        FieldDef::text("Name", "Full Name", FieldType::String, 121)
            .read_only()
            .required(),
        FieldDef::text("Email", "Email", FieldType::Email, 128).required(),
        FieldDef::text("Title", "Title", FieldType::String, 80),
        FieldDef::new("IsActive", "Active", FieldType::Boolean).defaulted(Some("true")),
    ]
};

static ACCOUNT_FIELDS: &[FieldDef] = &{
    let s = system_fields("Account ID");
    [
        s[0],
        s[1],
        s[2],
        s[3],
        s[4],
        s[5],
        s[6],
        FieldDef::text("Name", "Account Name", FieldType::String, 255).required(),
        FieldDef::picklist("Type", "Account Type", SOURCE_TYPES, false),
        FieldDef::reference(
            "ParentId",
            "Parent Account ID",
            &[ObjectType::Account],
            "Parent",
        ),
        FieldDef::text("Website", "Website", FieldType::Url, 255),
        FieldDef::text("Phone", "Account Phone", FieldType::Phone, 40),
        FieldDef::text("BillingStreet", "Billing Street", FieldType::TextArea, 255),
        FieldDef::text("BillingCity", "Billing City", FieldType::String, 40),
        FieldDef::text(
            "BillingState",
            "Billing State/Province",
            FieldType::String,
            80,
        ),
        FieldDef::text(
            "BillingPostalCode",
            "Billing Zip/Postal Code",
            FieldType::String,
            20,
        ),
        FieldDef::text("BillingCountry", "Billing Country", FieldType::String, 80),
        FieldDef::text(
            "Description",
            "Account Description",
            FieldType::TextArea,
            32000,
        ),
        owner_field("Owner ID"),
        FieldDef::text("NPI__c", "NPI", FieldType::String, 10),
        FieldDef::picklist(
            "Referral_Source_Type__c",
            "Referral Source Type",
            SOURCE_TYPES,
            false,
        ),
        FieldDef {
            field_type: FieldType::MultiPicklist,
            length: 4099,
            ..FieldDef::picklist("Payers_Accepted__c", "Payers Accepted", &[], false)
        },
        FieldDef {
            field_type: FieldType::MultiPicklist,
            length: 4099,
            ..FieldDef::picklist("Levels_Of_Care__c", "Levels Of Care", &[], false)
        },
        FieldDef::new(
            "Accepting_Referrals__c",
            "Accepting Referrals",
            FieldType::Boolean,
        )
        .defaulted(Some("false")),
        FieldDef::new("Preferred__c", "Preferred", FieldType::Boolean).defaulted(Some("false")),
        master_record_field(ObjectType::Account),
    ]
};

static CONTACT_FIELDS: &[FieldDef] = &{
    let s = system_fields("Contact ID");
    [
        s[0],
        s[1],
        s[2],
        s[3],
        s[4],
        s[5],
        s[6],
        FieldDef::reference("AccountId", "Account ID", &[ObjectType::Account], "Account"),
        FieldDef::text("FirstName", "First Name", FieldType::String, 40),
        FieldDef::text("LastName", "Last Name", FieldType::String, 80).required(),
        FieldDef::text("Name", "Full Name", FieldType::String, 121)
            .read_only()
            .required(),
        FieldDef::text("Title", "Title", FieldType::String, 128),
        FieldDef::text("Email", "Email", FieldType::Email, 80),
        FieldDef::text("Phone", "Business Phone", FieldType::Phone, 40),
        FieldDef::text(
            "Description",
            "Contact Description",
            FieldType::TextArea,
            32000,
        ),
        owner_field("Owner ID"),
        master_record_field(ObjectType::Contact),
    ]
};

static OPPORTUNITY_FIELDS: &[FieldDef] = &{
    let s = system_fields("Opportunity ID");
    const STAGE_LABELS: &[&str] = &["Pending", "Admitted", "Not Admitted", "Referred Out"];
    [
        s[0],
        s[1],
        s[2],
        s[3],
        s[4],
        s[5],
        s[6],
        FieldDef::text("Name", "Name", FieldType::String, 120).required(),
        FieldDef::reference("AccountId", "Account ID", &[ObjectType::Account], "Account"),
        FieldDef::reference("ContactId", "Contact ID", &[ObjectType::Contact], "Contact"),
        FieldDef::picklist("StageName", "Stage", STAGE_LABELS, true).required(),
        FieldDef::new("CloseDate", "Close Date", FieldType::Date).required(),
        FieldDef::new("IsClosed", "Closed", FieldType::Boolean)
            .read_only()
            .required(),
        FieldDef::new("IsWon", "Won", FieldType::Boolean)
            .read_only()
            .required(),
        FieldDef::text("Description", "Description", FieldType::TextArea, 32000),
        owner_field("Owner ID"),
        FieldDef::text("Inquiry_Id__c", "Inquiry Id", FieldType::String, 40).external_unique(),
        FieldDef::picklist("Direction__c", "Direction", &["Inbound", "Outbound"], true),
        FieldDef::text(
            "Disposition_Reason__c",
            "Disposition Reason",
            FieldType::String,
            255,
        ),
        FieldDef::text("Payer__c", "Payer", FieldType::String, 255),
        FieldDef::text("Plan_Type__c", "Plan Type", FieldType::String, 80),
        FieldDef::text("Level_Of_Care__c", "Level Of Care", FieldType::String, 80),
        FieldDef::new("Admit_Date__c", "Admit Date", FieldType::Date),
        FieldDef::reference(
            "Referral_Source__c",
            "Referral Source",
            &[ObjectType::Account],
            "Referral_Source__r",
        ),
        FieldDef::reference(
            "Referred_Out_To__c",
            "Referred Out To",
            &[ObjectType::Account],
            "Referred_Out_To__r",
        ),
        FieldDef::text(
            "Parent_Inquiry_Id__c",
            "Parent Inquiry Id",
            FieldType::String,
            40,
        ),
    ]
};

static TASK_FIELDS: &[FieldDef] = &{
    let s = system_fields("Activity ID");
    [
        s[0],
        s[1],
        s[2],
        s[3],
        s[4],
        s[5],
        s[6],
        FieldDef::text("Subject", "Subject", FieldType::String, 255),
        FieldDef::text("Description", "Description", FieldType::TextArea, 32000),
        FieldDef::picklist("Status", "Status", TASK_STATUSES, true).defaulted(Some("Not Started")),
        FieldDef::picklist("Priority", "Priority", &["High", "Normal", "Low"], true)
            .defaulted(Some("Normal")),
        FieldDef::new("ActivityDate", "Due Date Only", FieldType::Date),
        owner_field("Assigned To ID"),
        FieldDef::reference("WhoId", "Name ID", &[ObjectType::Contact], "Who"),
        FieldDef::reference(
            "WhatId",
            "Related To ID",
            &[ObjectType::Account, ObjectType::Opportunity],
            "What",
        ),
        FieldDef::picklist("Type", "Type", ACTIVITY_TYPES, false),
        FieldDef::picklist(
            "TaskSubtype",
            "Task Subtype",
            &["Task", "Email", "Call"],
            true,
        )
        .create_only()
        .defaulted(Some("Task")),
        FieldDef::new("IsClosed", "Closed", FieldType::Boolean)
            .read_only()
            .required(),
        FieldDef::new(
            "CompletedDateTime",
            "Completed Date/Time",
            FieldType::DateTime,
        )
        .read_only(),
        FieldDef::text("Refbridge_Key__c", "Refbridge Key", FieldType::String, 255)
            .external_unique(),
    ]
};

static EVENT_FIELDS: &[FieldDef] = &{
    let s = system_fields("Activity ID");
    [
        s[0],
        s[1],
        s[2],
        s[3],
        s[4],
        s[5],
        s[6],
        FieldDef::text("Subject", "Subject", FieldType::String, 255),
        FieldDef::text("Description", "Description", FieldType::TextArea, 32000),
        FieldDef::new("StartDateTime", "Start Date Time", FieldType::DateTime),
        FieldDef::new("EndDateTime", "End Date Time", FieldType::DateTime),
        FieldDef::new("ActivityDateTime", "Due Date Time", FieldType::DateTime),
        FieldDef::new("ActivityDate", "Due Date Only", FieldType::Date).read_only(),
        FieldDef::new("DurationInMinutes", "Duration", FieldType::Int),
        owner_field("Assigned To ID"),
        FieldDef::reference("WhoId", "Name ID", &[ObjectType::Contact], "Who"),
        FieldDef::reference(
            "WhatId",
            "Related To ID",
            &[ObjectType::Account, ObjectType::Opportunity],
            "What",
        ),
        FieldDef::picklist("Type", "Type", ACTIVITY_TYPES, false),
        FieldDef::text("Refbridge_Key__c", "Refbridge Key", FieldType::String, 255)
            .external_unique(),
    ]
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_object_starts_with_the_system_fields_and_resolves_names_case_insensitively() {
        for object in ObjectType::ALL {
            let names: Vec<&str> = object.fields()[..7]
                .iter()
                .map(|field| field.name)
                .collect();
            assert_eq!(
                names,
                [
                    "Id",
                    "IsDeleted",
                    "CreatedDate",
                    "CreatedById",
                    "LastModifiedDate",
                    "LastModifiedById",
                    "SystemModstamp"
                ]
            );
            assert_eq!(
                object.field_index("systemmodstamp"),
                Some(system::SYSTEM_MODSTAMP)
            );
            assert_eq!(
                ObjectType::from_name(&object.name().to_lowercase()),
                Some(object)
            );
            let mut seen = std::collections::HashSet::new();
            for field in object.fields() {
                assert!(
                    seen.insert(field.name.to_lowercase()),
                    "{} repeats {}",
                    object.name(),
                    field.name
                );
            }
        }
        assert_eq!(
            ObjectType::Task.relationship_index("what"),
            ObjectType::Task.field_index("WhatId")
        );
        assert_eq!(
            ObjectType::from_id_prefix("00TDn0000000001AAA"),
            Some(ObjectType::Task)
        );
        assert!(
            ObjectType::Task
                .field(ObjectType::Task.field_index("Refbridge_Key__c").unwrap())
                .external_id
        );
    }

    #[test]
    fn describe_reports_what_a_client_checks() {
        let status = ObjectType::Task.field(ObjectType::Task.field_index("Status").unwrap());
        let described = status.describe(None);
        assert_eq!(described["type"], "picklist");
        assert_eq!(
            described["picklistValues"].as_array().unwrap().len(),
            TASK_STATUSES.len()
        );
        assert_eq!(described["picklistValues"][0]["defaultValue"], true);
        let key = ObjectType::Task.field(ObjectType::Task.field_index("Refbridge_Key__c").unwrap());
        let described = key.describe(None);
        assert_eq!(described["externalId"], true);
        assert_eq!(described["unique"], true);
        assert_eq!(described["custom"], true);
        let what = ObjectType::Task
            .field(ObjectType::Task.field_index("WhatId").unwrap())
            .describe(None);
        assert_eq!(what["referenceTo"], json!(["Account", "Opportunity"]));
        assert_eq!(what["relationshipName"], "What");
    }
}
