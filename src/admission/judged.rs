//! What of a review is judged: the kinds that carry a pod spec, CREATE and UPDATE,
//! the ephemeralcontainers subresource, the images an UPDATE adds or changes, and the
//! built-in controller that created a Pod. Read from the wire format alone; the
//! decision on what is judged is made elsewhere.

use std::collections::HashSet;

use super::{ContainerImage, ObjectLite, PodSpecPath, Request, SpecLite};

/// Where a review stands before any image is looked at.
#[derive(Debug)]
pub(crate) enum Scope<'r, 'a> {
    /// Allowed without judging; the reason goes to the audit annotations.
    NotJudged(String),
    /// Denied: the review names a pod-carrying object that cannot be judged.
    Unreadable(String),
    Judged(JudgedPod<'r, 'a>),
}

/// The pod of a review, and the containers of it to judge.
#[derive(Debug)]
pub(crate) struct JudgedPod<'r, 'a> {
    pub kind: &'r str,
    pub namespace: &'r str,
    pub name: Option<&'r str>,
    /// Where the pod's pull credentials come from.
    pub spec: &'r SpecLite<'a>,
    /// Every container of a CREATE; those an UPDATE adds or changes.
    pub containers: Vec<ContainerImage<'r>>,
    /// The built-in controller that created a Pod (CREATE of a Pod only).
    pub controller: Option<ControllerOwner>,
}

/// A Pod's owning workload, when a built-in controller created the Pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ControllerOwner {
    pub controller: &'static str,
    pub kind: &'static str,
    pub api_version: &'static str,
    pub name: String,
}

/// What of `request` is judged. `is_exempt` names the namespaces never judged; it is
/// asked before the pod spec is looked for, so an exempt namespace's odd objects pass.
pub(crate) fn scope<'r, 'a>(
    request: &'r Request<'a>,
    is_exempt: impl Fn(&str) -> bool,
) -> Scope<'r, 'a> {
    let kind = request.kind.kind.as_ref();
    let Some(path) = PodSpecPath::for_kind(kind) else {
        return Scope::NotJudged(format!("kind {kind:?} carries no pod spec"));
    };
    match request.operation.as_ref() {
        "CREATE" | "UPDATE" => {}
        other => return Scope::NotJudged(format!("operation {other} is not judged")),
    }
    if let Some(sub) = &request.sub_resource {
        if !(kind == "Pod" && sub == "ephemeralcontainers") {
            return Scope::NotJudged(format!("subresource {sub} is not judged"));
        }
    }
    let object = match &request.object {
        Ok(Some(o)) => o,
        Ok(None) => return Scope::Unreadable(format!("{kind} review has no object to judge")),
        Err(e) => return Scope::Unreadable(format!("vulngate could not read this {kind}: {e}")),
    };
    let namespace = request
        .namespace
        .as_deref()
        .or(object.metadata.namespace.as_deref())
        .unwrap_or("default");
    if is_exempt(namespace) {
        return Scope::NotJudged(format!("namespace {namespace} is exempt"));
    }
    let Some(spec) = path.pod_spec(object) else {
        return Scope::Unreadable(format!("{kind} has no pod template to judge"));
    };
    let mut containers = spec.images();
    if request.operation == "UPDATE" {
        if let Some(old_spec) = request.old_object.as_ref().and_then(|o| path.pod_spec(o)) {
            let old: HashSet<(&str, &str), crate::FastHashState> = old_spec
                .images()
                .into_iter()
                .map(|c| (c.name, c.image))
                .collect();
            containers.retain(|c| !old.contains(&(c.name, c.image)));
        }
        if containers.is_empty() {
            return Scope::NotJudged("the update adds or changes no image".into());
        }
    }
    Scope::Judged(JudgedPod {
        kind,
        namespace,
        name: request.name.as_deref().or(object.metadata.name.as_deref()),
        spec,
        containers,
        controller: (kind == "Pod" && request.operation == "CREATE")
            .then(|| controller_of(request, object))
            .flatten(),
    })
}

/// The built-in controller that created a Pod: the request comes from that
/// controller's service account AND the Pod names a matching controller owner.
/// An ownerReference alone, written by anyone, proves nothing.
fn controller_of(request: &Request<'_>, object: &ObjectLite<'_>) -> Option<ControllerOwner> {
    // (the controller's service account, the owner kind it creates pods for, its API version)
    const CONTROLLERS: [(&str, &str, &str); 5] = [
        ("replicaset-controller", "ReplicaSet", "apps/v1"),
        ("job-controller", "Job", "batch/v1"),
        ("statefulset-controller", "StatefulSet", "apps/v1"),
        ("daemon-set-controller", "DaemonSet", "apps/v1"),
        ("replication-controller", "ReplicationController", "v1"),
    ];
    let account = request
        .user_info
        .username
        .strip_prefix("system:serviceaccount:kube-system:")?;
    let (controller, kind, api_version) = CONTROLLERS.iter().find(|(sa, _, _)| *sa == account)?;
    let owner = object
        .metadata
        .owner_references
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == *kind)?;
    Some(ControllerOwner {
        controller,
        kind,
        api_version,
        name: owner.name.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::decode;

    fn review(operation: &str, kind: &str, extra: &str, object: &str) -> String {
        format!(
            r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"u1","kind":{{"kind":"{kind}"}},"operation":"{operation}","namespace":"team"{extra},"object":{object}}}}}"#
        )
    }

    const POD: &str = r#"{"metadata":{"name":"web","ownerReferences":[{"kind":"ReplicaSet","name":"web-1","controller":true}]},"spec":{"containers":[{"name":"a","image":"nginx:1"},{"name":"b","image":"redis:7"}]}}"#;

    fn not_judged(body: &str) -> Option<String> {
        let request = decode(body.as_bytes()).unwrap();
        match scope(&request, |ns| ns == "kube-system") {
            Scope::NotJudged(reason) => Some(reason),
            _ => None,
        }
    }

    #[test]
    fn kinds_operations_subresources_and_exempt_namespaces_are_not_judged() {
        let cases = [
            (
                review("CREATE", "ConfigMap", "", "{}"),
                "kind \"ConfigMap\" carries no pod spec",
            ),
            (
                review("DELETE", "Pod", "", POD),
                "operation DELETE is not judged",
            ),
            (
                review("CONNECT", "Pod", "", POD),
                "operation CONNECT is not judged",
            ),
            (
                review("UPDATE", "Pod", r#","subResource":"status""#, POD),
                "subresource status is not judged",
            ),
            (
                review(
                    "UPDATE",
                    "Deployment",
                    r#","subResource":"ephemeralcontainers""#,
                    POD,
                ),
                "subresource ephemeralcontainers is not judged",
            ),
            (
                review("CREATE", "Pod", "", POD).replace("\"team\"", "\"kube-system\""),
                "namespace kube-system is exempt",
            ),
        ];
        for (body, reason) in cases {
            assert_eq!(not_judged(&body).as_deref(), Some(reason), "{body}");
        }
        let ephemeral = review(
            "UPDATE",
            "Pod",
            r#","subResource":"ephemeralcontainers""#,
            POD,
        );
        assert_eq!(not_judged(&ephemeral), None);
    }

    #[test]
    fn objects_without_a_pod_spec_are_unreadable() {
        for (body, message) in [
            (
                review("CREATE", "Deployment", "", r#"{"spec":{}}"#),
                "Deployment has no pod template to judge",
            ),
            (
                review("CREATE", "Pod", "", "null"),
                "Pod review has no object to judge",
            ),
        ] {
            let request = decode(body.as_bytes()).unwrap();
            match scope(&request, |_| false) {
                Scope::Unreadable(m) => assert_eq!(m, message),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn an_update_judges_only_the_images_it_adds_or_changes() {
        let old = r#","oldObject":{"spec":{"containers":[{"name":"a","image":"nginx:1"},{"name":"b","image":"redis:6"}]}}"#;
        let body = review("UPDATE", "Pod", old, POD);
        let request = decode(body.as_bytes()).unwrap();
        let Scope::Judged(pod) = scope(&request, |_| false) else {
            panic!("judged")
        };
        let images: Vec<_> = pod.containers.iter().map(|c| (c.name, c.image)).collect();
        assert_eq!(images, [("b", "redis:7")]);

        let same = r#","oldObject":{"spec":{"containers":[{"name":"a","image":"nginx:1"},{"name":"b","image":"redis:7"}]}}"#;
        assert_eq!(
            not_judged(&review("UPDATE", "Pod", same, POD)).as_deref(),
            Some("the update adds or changes no image")
        );
    }

    #[test]
    fn a_controller_owner_counts_only_from_the_controllers_own_account() {
        let controller = |username: &str, operation: &str| {
            let user = format!(r#","userInfo":{{"username":"{username}"}}"#);
            let body = review(operation, "Pod", &user, POD);
            let request = decode(body.as_bytes()).unwrap();
            match scope(&request, |_| false) {
                Scope::Judged(pod) => pod.controller,
                other => panic!("{other:?}"),
            }
        };
        let owner = controller(
            "system:serviceaccount:kube-system:replicaset-controller",
            "CREATE",
        );
        assert_eq!(
            owner,
            Some(ControllerOwner {
                controller: "replicaset-controller",
                kind: "ReplicaSet",
                api_version: "apps/v1",
                name: "web-1".into(),
            })
        );
        // The owner kind must be the one that controller creates pods for.
        assert_eq!(
            controller("system:serviceaccount:kube-system:job-controller", "CREATE"),
            None
        );
        // Anyone else writing the same ownerReference is a user.
        assert_eq!(controller("alice", "CREATE"), None);
        assert_eq!(
            controller("system:serviceaccount:team:replicaset-controller", "CREATE"),
            None
        );
        // Only a new Pod is a controller's restart.
        assert_eq!(
            controller(
                "system:serviceaccount:kube-system:replicaset-controller",
                "UPDATE"
            ),
            None
        );
    }
}
