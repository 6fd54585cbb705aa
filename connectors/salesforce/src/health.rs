//! The connect-time check behind `refbridge check-config --connect`: can we log in, does the API
//! version exist, do the mapped objects and fields exist (describe), is the task external-id
//! field a unique external id, is the queue owner an active user.
//!
//! Each problem is one line that names the config key to fix. This module only reads (versions,
//! describe, one query); it must never write to the org.

use serde::Deserialize;

use crate::http::{ApiRequest, SalesforceClient};
use crate::pull::required_fields;
use crate::soql;

#[derive(Debug, Deserialize)]
struct Version {
    version: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Describe {
    fields: Vec<FieldDescribe>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FieldDescribe {
    name: String,
    #[serde(default)]
    external_id: bool,
    #[serde(default)]
    unique: bool,
}

impl SalesforceClient {
    /// Every problem found, one clear line each; empty means the connector is ready.
    pub async fn healthcheck(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let config = self.config();

        match self
            .get_json::<Vec<Version>>(ApiRequest {
                authenticated: false,
                ..ApiRequest::get("/services/data/".to_string())
            })
            .await
        {
            Ok(versions) => {
                if !versions
                    .iter()
                    .any(|version| version.version == config.api_version)
                {
                    let newest = versions
                        .last()
                        .map(|version| version.version.as_str())
                        .unwrap_or("none");
                    problems.push(format!(
                        "api_version {} is not offered by {} (newest: {newest}); set connectors.salesforce.api_version",
                        config.api_version, config.instance_url
                    ));
                }
            }
            Err(error) => {
                problems.push(format!(
                    "cannot reach {} (connectors.salesforce.instance_url): {error}",
                    config.instance_url
                ));
                return problems;
            }
        }

        if let Err(error) = self.inner_session_check().await {
            problems.push(format!("login failed: {error}"));
            return problems;
        }

        let external_id = &config.mapping.task.external_id;
        for (object, fields) in required_fields(config) {
            let request = ApiRequest::get(self.data_path(&format!("sobjects/{object}/describe")));
            let describe = match self.get_json::<Describe>(request).await {
                Ok(describe) => describe,
                Err(error) => {
                    problems.push(format!(
                        "object {object} cannot be described (connectors.salesforce.mapping.objects): {error}"
                    ));
                    continue;
                }
            };
            let find = |name: &str| {
                describe
                    .fields
                    .iter()
                    .find(|field| field.name.eq_ignore_ascii_case(name))
            };
            for field in &fields {
                if find(field).is_none() {
                    problems.push(format!(
                        "field {object}.{field} does not exist or is not visible to the integration user (connectors.salesforce.mapping)"
                    ));
                }
            }
            if object.eq_ignore_ascii_case(&config.mapping.objects.tasks)
                && let Some(field) = find(external_id)
                && !(field.external_id && field.unique)
            {
                problems.push(format!(
                    "field {object}.{external_id} (connectors.salesforce.mapping.task.external_id) must be an External ID marked Unique, so that a repeated push updates instead of duplicating"
                ));
            }
        }

        if let Some(queue) = &config.queue_owner_id {
            match self.owner_problem(queue).await {
                Ok(None) => {}
                Ok(Some(problem)) => problems.push(problem),
                Err(error) => problems.push(format!(
                    "queue_owner_id {queue} could not be checked: {error}"
                )),
            }
        }
        problems
    }

    async fn inner_session_check(&self) -> Result<(), crate::error::SalesforceError> {
        self.get_json::<serde_json::Value>(ApiRequest::get(self.data_path("limits")))
            .await
            .map(|_| ())
    }

    /// A queue owner must be an active user or a queue (`00G…`).
    async fn owner_problem(
        &self,
        queue: &str,
    ) -> Result<Option<String>, crate::error::SalesforceError> {
        if queue.starts_with("00G") {
            return Ok(None);
        }
        let text = soql::lookup_query(
            &self.config().mapping.objects.owners,
            &["Id", "IsActive"],
            "Id",
            queue,
        )
        .map_err(|error| crate::error::SalesforceError::Config(error.to_string()))?;
        let mut request = ApiRequest::get(self.data_path("query"));
        request.query.push(("q", text));
        let answer: serde_json::Value = self.get_json(request).await?;
        let record = answer
            .get("records")
            .and_then(|records| records.get(0))
            .cloned();
        Ok(match record {
            None => Some(format!(
                "queue_owner_id {queue} is no user of this org; set connectors.salesforce.queue_owner_id"
            )),
            Some(record) if record.get("IsActive") == Some(&serde_json::Value::Bool(false)) => {
                Some(format!(
                    "queue_owner_id {queue} is an inactive user; set connectors.salesforce.queue_owner_id to an active user or a queue"
                ))
            }
            Some(_) => None,
        })
    }
}
