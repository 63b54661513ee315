//! AdmissionReview bodies as the apiserver (or anyone reaching the port) sends them:
//! decode, find the pod spec of every kind, list images, encode the answer. The
//! decoder's fast path must answer what serde_json alone answers (image volumes included).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vulngate::admission::{self, PodSpecPath, Response};

const PATHS: [PodSpecPath; 3] = [
    PodSpecPath::Pod,
    PodSpecPath::Template,
    PodSpecPath::CronJob,
];

fuzz_target!(|data: &[u8]| {
    let decoded = admission::decode(data);
    assert_eq!(
        format!("{decoded:?}"),
        format!("{:?}", admission::decode_with_serde_json(data)),
        "the fast path and serde_json read this body differently"
    );
    let Ok(request) = decoded else {
        return;
    };
    assert!(!request.uid.is_empty(), "decode accepted an empty uid");
    let _ = PodSpecPath::for_kind(&request.kind.kind);
    let mut images = 0usize;
    for object in [
        request.object.as_ref().ok().and_then(Option::as_ref),
        request.old_object.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        for path in PATHS {
            if let Some(spec) = path.pod_spec(object) {
                images += spec.images().len();
            }
        }
    }
    // The answer always carries the request's uid and version, whatever the input held.
    let response = Response {
        allowed: images % 2 == 0,
        message: Some(format!("{} images", images)),
        ..Response::default()
    };
    let out = admission::encode(request.api_version, &request.uid, &response);
    let value: serde_json::Value = serde_json::from_slice(&out).expect("encode wrote invalid JSON");
    assert_eq!(
        value["response"]["uid"].as_str(),
        Some(request.uid.as_ref())
    );
    assert_eq!(
        value["apiVersion"].as_str(),
        Some(request.api_version)
    );
});
