//! The connect-time check behind `refbridge check-config --connect`: does the token work, do the
//! mapped object types and properties exist, does the admissions pipeline have the mapped stages,
//! is the task key a property with unique values, is the queue owner an owner. And the one write
//! it may do when asked: [`HubspotClient::create_task_key_property`].
//!
//! Each problem is one line that names the config key to fix. [`HubspotClient::healthcheck`] only
//! reads (owners, properties, pipelines); it must never write to the portal.

use serde::Deserialize;
use serde_json::json;

use crate::error::HubspotError;
use crate::http::{ApiRequest, HubspotClient};
use crate::pull::required_properties;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Property {
    name: String,
    #[serde(default)]
    has_unique_value: bool,
}

#[derive(Debug, Deserialize)]
struct Properties {
    #[serde(default)]
    results: Vec<Property>,
}

#[derive(Debug, Deserialize)]
struct Stage {
    id: String,
}

#[derive(Debug, Deserialize)]
struct Pipeline {
    id: String,
    #[serde(default)]
    stages: Vec<Stage>,
}

#[derive(Debug, Deserialize)]
struct Pipelines {
    #[serde(default)]
    results: Vec<Pipeline>,
}

impl HubspotClient {
    /// Every problem found, one clear line each; empty means the connector is ready.
    pub async fn healthcheck(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let config = self.config();
        let mut owners = ApiRequest::get("/crm/v3/owners".to_string());
        owners.query.push(("limit", "500".to_string()));
        let owners: serde_json::Value = match self.json(owners).await {
            Ok(owners) => owners,
            Err(error) => {
                problems.push(format!(
                    "cannot use the HubSpot API at {} (connectors.hubspot.base_url, connectors.hubspot.auth): {error}",
                    config.base_url
                ));
                return problems;
            }
        };

        let key = &config.mapping.task.key;
        let tasks = &config.mapping.objects.tasks;
        for (object_type, wanted) in required_properties(config) {
            let request = ApiRequest::get(format!("/crm/v3/properties/{object_type}"));
            let properties = match self.json::<Properties>(request).await {
                Ok(properties) => properties.results,
                Err(error) => {
                    problems.push(format!(
                        "object type {object_type} cannot be read (connectors.hubspot.mapping.objects): {error}"
                    ));
                    continue;
                }
            };
            for name in &wanted {
                if !properties.iter().any(|p| p.name == *name) {
                    problems.push(format!(
                        "property {object_type}.{name} does not exist or is not visible to the app (connectors.hubspot.mapping)"
                    ));
                }
            }
            if object_type == *tasks {
                match properties.iter().find(|p| p.name == *key) {
                    None => problems.push(format!(
                        "the task property {key} (connectors.hubspot.mapping.task.key) does not exist, so pushed tasks cannot be upserted by key; create it with `refbridge check-config --connect --create-task-key`, or in HubSpot: Settings → Properties → Task properties → \"{key}\", single-line text, \"Require unique values\" on"
                    )),
                    Some(property) if !property.has_unique_value => problems.push(format!(
                        "the task property {key} (connectors.hubspot.mapping.task.key) does not require unique values, so a repeated push could duplicate tasks; HubSpot cannot change that on an existing property: create a new unique one and set connectors.hubspot.mapping.task.key"
                    )),
                    Some(_) => self.remember_task_key(true),
                }
            }
        }

        let request = ApiRequest::get(format!(
            "/crm/v3/pipelines/{}",
            config.mapping.objects.referrals
        ));
        match self.json::<Pipelines>(request).await {
            Ok(pipelines) => {
                match pipelines
                    .results
                    .iter()
                    .find(|p| p.id == config.admissions_pipeline)
                {
                    None => problems.push(format!(
                        "deal pipeline {} does not exist (connectors.hubspot.admissions_pipeline; pipelines: {})",
                        config.admissions_pipeline,
                        pipelines
                            .results
                            .iter()
                            .map(|p| p.id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                    Some(pipeline) => {
                        for stage in config.mapping.stages.keys() {
                            if !pipeline.stages.iter().any(|s| s.id == *stage) {
                                problems.push(format!(
                                    "stage {stage} is not a stage of pipeline {} (connectors.hubspot.mapping.stages)",
                                    pipeline.id
                                ));
                            }
                        }
                    }
                }
            }
            Err(error) => problems.push(format!(
                "the deal pipelines cannot be read (connectors.hubspot.admissions_pipeline): {error}"
            )),
        }

        if let Some(queue) = &config.queue_owner_id {
            let known = owners
                .get("results")
                .and_then(|results| results.as_array())
                .is_some_and(|results| {
                    results
                        .iter()
                        .any(|owner| owner.get("id").and_then(|id| id.as_str()) == Some(queue))
                });
            if !known {
                problems.push(format!(
                    "queue_owner_id {queue} is no active owner of this portal; set connectors.hubspot.queue_owner_id"
                ));
            }
        }
        problems
    }

    /// Creates the task key property (single-line text, unique values), which batch upsert needs.
    /// An existing unique property of that name is fine; an existing non-unique one is a config
    /// error (HubSpot cannot make it unique afterwards).
    pub async fn create_task_key_property(&self) -> Result<(), HubspotError> {
        let config = self.config();
        let key = &config.mapping.task.key;
        let tasks = &config.mapping.objects.tasks;
        let request = ApiRequest::post(
            format!("/crm/v3/properties/{tasks}"),
            json!({
                "name": key,
                "label": "refbridge key",
                "type": "string",
                "fieldType": "text",
                "groupName": "taskinformation",
                "hasUniqueValue": true,
                "description": "The key refbridge pushes this task under (rule, partner, period). Do not edit.",
            }),
        );
        match self.send(&request).await {
            Ok(_) => {
                self.remember_task_key(true);
                tracing::info!(property = %key, "hubspot task key property created");
                Ok(())
            }
            Err(HubspotError::Rejected { status: 409, .. }) => {
                let request = ApiRequest::get(format!("/crm/v3/properties/{tasks}/{key}"));
                let property: Property = self.json(request).await?;
                if property.has_unique_value {
                    self.remember_task_key(true);
                    Ok(())
                } else {
                    Err(HubspotError::Config(format!(
                        "the task property {key} exists without unique values; choose another name in connectors.hubspot.mapping.task.key"
                    )))
                }
            }
            Err(error) => Err(error),
        }
    }
}
