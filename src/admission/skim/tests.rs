//! The fast path against serde_json, on the fixtures and on damaged copies of them.

use super::super::{ContainerKind, decode, decode_with_serde_json};
use super::*;

/// What a body decodes to, the same way for both readers.
fn answer(body: &[u8]) -> String {
    format!("{:?}", decode(body))
}

fn assert_alike(body: &[u8]) {
    assert_eq!(
        answer(body),
        format!("{:?}", decode_with_serde_json(body)),
        "{}",
        String::from_utf8_lossy(body)
    );
}

fn fast(body: &str) -> bool {
    review(body).is_some()
}

fn shared_fixtures() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/admission");
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (clone ../shared beside the project)",
            dir.display()
        )
    });
    let mut fixtures: Vec<(String, String)> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    fixtures.sort();
    assert!(fixtures.len() >= 20, "{} fixtures", fixtures.len());
    fixtures
}

#[test]
fn image_volumes_are_read_alike_and_listed() {
    let body = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"operation":"CREATE","namespace":"n","object":{"spec":{"containers":[{"name":"c","image":"busybox"}],"volumes":[{"name":"cache","emptyDir":{}},{"name":"models","image":{"reference":"nginx:1.25","pullPolicy":"IfNotPresent"}},{"name":"nullref","image":{"reference":null}},{"name":"nosource","image":null}]}}}}"#;
    assert!(fast(body), "left to serde_json");
    assert_alike(body.as_bytes());
    let request = decode(body.as_bytes()).unwrap();
    let object = request.object.as_ref().unwrap().as_ref().unwrap();
    let images: Vec<_> = object
        .spec
        .images()
        .into_iter()
        .map(|c| (c.kind, c.name.to_string(), c.image.to_string()))
        .collect();
    assert_eq!(
        images,
        [
            (ContainerKind::Container, "c".into(), "busybox".into()),
            (
                ContainerKind::ImageVolume,
                "models".into(),
                "nginx:1.25".into()
            ),
            (ContainerKind::ImageVolume, "nullref".into(), String::new()),
        ]
    );
    // A damaged volume list reads alike on both paths.
    for damaged in [
        body.replace(r#""reference":"nginx:1.25""#, r#""reference":5"#),
        body.replace(r#"{"name":"cache","emptyDir":{}}"#, "7"),
    ] {
        assert_alike(damaged.as_bytes());
    }
}

#[test]
fn reads_every_shared_fixture_as_serde_json_does() {
    for (name, text) in shared_fixtures() {
        assert!(fast(&text), "{name}: left to serde_json");
        assert_alike(text.as_bytes());
    }
}

/// Each fixture with every byte deleted, and replaced by bytes that matter to JSON,
/// in turn: both readers answer the same, and the fast path still reads most.
#[test]
fn damaged_fixtures_read_alike() {
    const BYTES: &[u8] = b"\"\\{}[],:0e n\x01";
    let (mut cases, mut read_fast) = (0, 0);
    let chosen = [
        "cronjob-create-v1beta1-connaisseur.json",
        "pod-create-digest-only-connaisseur.json",
    ];
    for (_, text) in shared_fixtures()
        .into_iter()
        .filter(|(name, _)| chosen.contains(&name.as_str()))
    {
        let body = text.as_bytes();
        for at in 0..body.len() {
            let mut deleted = body.to_vec();
            deleted.remove(at);
            let replaced = BYTES.iter().map(|&b| {
                let mut v = body.to_vec();
                v[at] = b;
                v
            });
            for damaged in std::iter::once(deleted).chain(replaced) {
                assert_alike(&damaged);
                cases += 1;
                read_fast += usize::from(std::str::from_utf8(&damaged).is_ok_and(fast));
            }
        }
    }
    assert!(
        read_fast * 4 > cases,
        "{read_fast} of {cases} read by the fast path"
    );
}

#[test]
fn gives_up_where_serde_json_has_the_say() {
    let review = |request: &str| {
        format!(
            r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"u1","kind":{{"kind":"Pod"}},"operation":"CREATE",{request}}}}}"#
        )
    };
    let deep = format!("{}{}", "[".repeat(150), "]".repeat(150));
    let cases = [
        // Read by the fast path.
        (
            review(r#""object":null,"oldObject":null,"dryRun":null,"name":null"#),
            true,
        ),
        (review(r#""object":{"metadata":null,"spec":null}"#), true),
        (review(r#""object":{},"oldObject":"None""#), true),
        (review(r#""object":{},"oldObject":5"#), true),
        (review(r#""object":{},"oldObject":[{"spec":1}]"#), false),
        (review(r#""object":[{"name":"web"}]"#), false),
        (
            review(r#""object":{"spec":{"template":null,"jobTemplate":{"spec":null}}}"#),
            true,
        ),
        (
            review(
                r#""x":[1,-0,0.5,1e9,-2.5E-3,1E+2,true,false,null,{},[],"a\"\\\/\b\f\n\r\tb\u00e9"]"#,
            ),
            true,
        ),
        (review(&format!(r#""x":{}"#, &deep[50..250])), true),
        (
            format!(
                " \n\t\r{} \r\n",
                review(r#""dryRun" : true , "userInfo" : { "username" : "me" }"#)
            ),
            true,
        ),
        (
            review(
                r#""object":{"metadata":{"ownerReferences":[{"kind":"ReplicaSet","name":"r","controller":true}]}}"#,
            ),
            true,
        ),
        // Left to serde_json.
        (review(r#""namespace":"team\u002da""#), false),
        (review(r#""namespace":"a","namespace":"b""#), false),
        (review(r#""dryRun":false,"dryRun":false"#), false),
        (review(r#""na\u006de":"web""#), false),
        (review(r#""object":{"spec":{"containers":5}}"#), false),
        (review(r#""object":{"spec":{"containers":null}}"#), false),
        (review(r#""operation":null"#), false),
        (review(r#""userInfo":null"#), false),
        (review(r#""dryRun":"yes""#), false),
        (review(&format!(r#""x":{deep}"#)), false),
        (review(r#""x":01"#), false),
        (review(r#""x":1."#), false),
        (review(r#""x":1e"#), false),
        (review(r#""x":-"#), false),
        (review(r#""x":.5"#), false),
        (review(r#""x":+1"#), false),
        (review(r#""x":[1,]"#), false),
        (review(r#""x":{"a":1,}"#), false),
        (review(r#""x":{"a" 1}"#), false),
        (review(r#""x":{1:1}"#), false),
        (review(r#""x":"\x""#), false),
        (review(r#""x":"\u12G4""#), false),
        (review("\"x\":\"tab\there\""), false),
        (review(r#""x":nul"#), false),
        (review(r#""x":True"#), false),
        (format!("{} x", review(r#""dryRun":true"#)), false),
        (
            r#"["admission.k8s.io/v1","AdmissionReview",{"uid":"u"}]"#.to_string(),
            false,
        ),
        (
            r#"{"apiVersion":"admission.k8s.io/v1","request":{"kind":{"kind":"Pod"}}}"#.to_string(),
            false,
        ),
        ("\u{feff}{}".to_string(), false),
    ];
    for (body, read_fast) in &cases {
        assert_eq!(fast(body), *read_fast, "{body}");
        assert_alike(body.as_bytes());
    }
}
