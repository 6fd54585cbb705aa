//! A journal of the API requests a sandbox received, kept only while someone asked for it.
//!
//! Both sandboxes expose it at `/__admin/journal`: `POST` starts a fresh journal, `GET` returns
//! it as JSON (`{"recording": bool, "requests": [{method, target, query_options, body_bytes}]}`),
//! `DELETE` stops recording and forgets it. The CRM pull benchmark uses it to prove that its bare
//! pager makes exactly the calls refbridge made. Off by default, so a sandbox that nobody asks
//! keeps nothing; it records the request line (path and query) and the body's size, never a body.

use std::sync::Mutex;

use serde::Serialize;

/// Entries kept at most; later requests are counted in `dropped` instead.
const MAX_ENTRIES: usize = 1_000_000;

/// One API request as it arrived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JournalEntry {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// Salesforce's `Sforce-Query-Options` header (the page size), when sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_options: Option<String>,
    pub body_bytes: u64,
}

#[derive(Debug, Default)]
struct Recording {
    entries: Vec<JournalEntry>,
    dropped: u64,
}

/// The journal; `None` inside while not recording.
#[derive(Debug, Default)]
pub struct RequestJournal {
    recording: Mutex<Option<Recording>>,
}

impl RequestJournal {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Recording>> {
        self.recording
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts a fresh journal (an older one is forgotten).
    pub fn start(&self) {
        *self.lock() = Some(Recording::default());
    }

    /// Stops recording and forgets what was recorded.
    pub fn stop(&self) {
        *self.lock() = None;
    }

    /// Records one request, when recording.
    pub fn record(&self, method: &str, target: &str, query_options: Option<&str>, body_bytes: u64) {
        let mut guard = self.lock();
        let Some(recording) = guard.as_mut() else {
            return;
        };
        if recording.entries.len() >= MAX_ENTRIES {
            recording.dropped += 1;
            return;
        }
        recording.entries.push(JournalEntry {
            method: method.to_string(),
            target: target.to_string(),
            query_options: query_options.map(str::to_string),
            body_bytes,
        });
    }

    /// The journal as the admin endpoint answers it.
    pub fn to_json(&self) -> serde_json::Value {
        match self.lock().as_ref() {
            Some(recording) => serde_json::json!({
                "recording": true,
                "dropped": recording.dropped,
                "requests": recording.entries,
            }),
            None => serde_json::json!({"recording": false, "dropped": 0, "requests": []}),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_started_journal_records_and_a_stopped_one_forgets() {
        let journal = RequestJournal::default();
        journal.record("GET", "/a?q=1", None, 0);
        assert_eq!(journal.to_json()["recording"], false);
        journal.start();
        journal.record("GET", "/a?q=1", Some("batchSize=2000"), 0);
        journal.record("POST", "/b", None, 12);
        let json = journal.to_json();
        assert_eq!(json["requests"].as_array().unwrap().len(), 2);
        assert_eq!(json["requests"][0]["query_options"], "batchSize=2000");
        assert_eq!(json["requests"][1]["body_bytes"], 12);
        journal.start();
        assert!(journal.to_json()["requests"].as_array().unwrap().is_empty());
        journal.record("GET", "/c", None, 0);
        journal.stop();
        assert_eq!(journal.to_json()["requests"], serde_json::json!([]));
    }
}
