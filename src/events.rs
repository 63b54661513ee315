//! Kubernetes Events for decisions a human should see: a break-glass that let
//! violations through (on the Namespace), and a controller-created pod allowed
//! over its limits (on its owning workload), and a running Pod that the background
//! audit finds over its limits (on the Pod). Published in the background: a review
//! never waits for the apiserver to take an Event.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
}

/// The object an Event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Regarding {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub namespace: Option<String>,
    pub name: String,
    /// Ties the Event to this incarnation of the object (`kubectl describe` matches it).
    pub uid: Option<String>,
}

impl Events {
    pub fn new(client: kube::Client) -> Events {
        let reporter = Reporter {
            controller: "vulngate".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Events {
            recorder: Recorder::new(client, reporter),
        }
    }

    /// Publishes a Warning event about an admission decision; failures are logged,
    /// never returned.
    pub fn warn(&self, regarding: Regarding, reason: &'static str, note: String) {
        self.publish(regarding, reason, "Admit", note);
    }

    /// Publishes a Warning event from the background audit of running pods.
    pub(crate) fn audit_warn(&self, regarding: Regarding, reason: &'static str, note: String) {
        self.publish(regarding, reason, "Audit", note);
    }

    fn publish(
        &self,
        regarding: Regarding,
        reason: &'static str,
        action: &'static str,
        note: String,
    ) {
        let recorder = self.recorder.clone();
        tokio::spawn(async move {
            let reference = ObjectReference {
                api_version: Some(regarding.api_version.into()),
                kind: Some(regarding.kind.into()),
                namespace: regarding.namespace.clone(),
                name: Some(regarding.name.clone()),
                uid: regarding.uid.clone(),
                ..ObjectReference::default()
            };
            let event = Event {
                type_: EventType::Warning,
                reason: reason.into(),
                // The API takes at most 1 kB of note.
                note: Some(crate::domain::text::clip(&note, 900).into_owned()),
                action: action.into(),
                secondary: None,
            };
            if let Err(e) = recorder.publish(&event, &reference).await {
                tracing::warn!(error = %e, kind = regarding.kind, name = %regarding.name, "could not publish an Event");
            }
        });
    }
}
