//! The serving certificate in each TLS mode (helm, cert-manager, existingSecret) and the client CA.

use super::*;

#[test]
fn helm_tls_mode_makes_a_certificate_for_the_service() {
    let docs = render(&[
        "-f",
        chart_dir()
            .join("ci/helm-tls-values.yaml")
            .to_str()
            .unwrap(),
    ]);
    let docs = installed(&docs);
    let secret = one(&docs, "Secret");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    let dir = tempfile::tempdir().unwrap();
    for key in ["tls.crt", "tls.key", "ca.crt"] {
        let pem = base64::engine::general_purpose::STANDARD
            .decode(secret["data"][key].as_str().unwrap())
            .unwrap();
        std::fs::write(dir.path().join(key), pem).unwrap();
    }
    let openssl = Path::new("openssl");
    let d = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
    let verify = run(openssl, &["verify", "-CAfile", &d("ca.crt"), &d("tls.crt")]);
    assert!(
        verify.ok && verify.stdout.contains("OK"),
        "certificate chains to ca.crt: {}{}",
        verify.stdout,
        verify.stderr
    );
    let host = run(
        openssl,
        &[
            "x509",
            "-in",
            &d("tls.crt"),
            "-noout",
            "-checkhost",
            "vulngate.vulngate.svc",
        ],
    );
    assert!(
        host.stdout.contains("does match"),
        "certificate names the Service: {}",
        host.stdout
    );
    let key_pub = run(openssl, &["pkey", "-in", &d("tls.key"), "-pubout"]);
    let crt_pub = run(
        openssl,
        &["x509", "-in", &d("tls.crt"), "-noout", "-pubkey"],
    );
    assert!(
        key_pub.ok && key_pub.stdout == crt_pub.stdout,
        "tls.key belongs to tls.crt"
    );
}

#[test]
fn a_client_ca_configmap_is_mounted_and_named_in_the_config() {
    let docs = render(&[]);
    assert_eq!(
        config_of(&docs).1.tls.client_ca_file,
        None,
        "off by default"
    );
    let docs = render(&[
        "--set",
        "tls.clientCA.configMap=apiserver-client-ca",
        "--set",
        "tls.clientCA.key=bundle.pem",
    ]);
    let (text, config) = config_of(&docs);
    let file = config.tls.client_ca_file.expect("tls.clientCAFile set");
    assert_eq!(
        file,
        Path::new("/etc/vulngate/client-ca/bundle.pem"),
        "{text}"
    );
    let deploy = one(&docs, "Deployment");
    let (mount, volume) = mount_for(deploy, &file).expect("the client CA is mounted");
    assert_eq!(volume["configMap"]["name"], "apiserver-client-ca");
    // A subPath mount would never see the ConfigMap change.
    assert!(mount["subPath"].is_null(), "{mount:?}");
}

#[test]
fn existing_secret_mode_needs_its_name_and_ca() {
    let out = helm_template(&["--set", "tls.mode=existingSecret"]);
    assert!(
        !out.ok && out.stderr.contains("tls.existingSecret.name"),
        "{}",
        out.stderr
    );
    let out = helm_template(&[
        "--set",
        "tls.mode=existingSecret",
        "--set",
        "tls.existingSecret.name=x",
    ]);
    assert!(
        !out.ok && out.stderr.contains("tls.existingSecret.caBundle"),
        "{}",
        out.stderr
    );
}

#[test]
fn cert_manager_mode_signs_the_serving_certificate_with_a_stable_ca() {
    let docs = installed(&render(&[]));
    let certs = all(&docs, "Certificate");
    let issuers = all(&docs, "Issuer");
    let by_name = |list: &[&Value], name: &Value| -> Value {
        list.iter()
            .find(|x| &x["metadata"]["name"] == name)
            .map(|x| (*x).clone())
            .unwrap_or(Value::Null)
    };
    let vwc = one(&docs, "ValidatingWebhookConfiguration");
    let inject = vwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
        .as_str()
        .unwrap();
    let serving = by_name(&certs, &Value::from(inject.split_once('/').unwrap().1));
    assert!(
        !serving.is_null(),
        "inject-ca-from names a rendered Certificate"
    );
    assert!(serving["spec"]["isCA"].is_null() || serving["spec"]["isCA"] == false);
    assert!(str_list(&serving["spec"]["usages"]).contains(&"server auth".to_string()));
    // serving <- CA Issuer (kind Issuer, same namespace) <- CA Certificate (isCA) <- self-signed Issuer.
    assert_eq!(serving["spec"]["issuerRef"]["kind"], "Issuer");
    let ca_issuer = by_name(&issuers, &serving["spec"]["issuerRef"]["name"]);
    let ca_secret = ca_issuer["spec"]["ca"]["secretName"].clone();
    assert!(
        !ca_secret.is_null(),
        "the serving certificate's Issuer is a CA Issuer"
    );
    let ca_cert = certs
        .iter()
        .find(|c| c["spec"]["secretName"] == ca_secret)
        .expect("a Certificate makes the CA");
    assert_eq!(ca_cert["spec"]["isCA"], true);
    let root_issuer = by_name(&issuers, &ca_cert["spec"]["issuerRef"]["name"]);
    assert!(
        root_issuer["spec"]["selfSigned"].is_object(),
        "the CA is self-signed"
    );
    // The CA outlives many renewals of the serving certificate.
    let hours = |v: &Value| {
        v.as_str()
            .unwrap()
            .trim_end_matches('h')
            .parse::<u64>()
            .unwrap()
    };
    assert!(hours(&ca_cert["spec"]["duration"]) >= 4 * hours(&serving["spec"]["duration"]));
    assert!(hours(&serving["spec"]["renewBefore"]) < hours(&serving["spec"]["duration"]));

    // With an issuerRef of your own, the chart makes no Issuer of its own.
    let docs = installed(&render(&[
        "-f",
        chart_dir()
            .join("ci/certmanager-issuer-values.yaml")
            .to_str()
            .unwrap(),
    ]));
    assert!(all(&docs, "Issuer").is_empty());
    let cert = one(&docs, "Certificate");
    assert_eq!(cert["spec"]["issuerRef"]["kind"], "ClusterIssuer");
    assert_eq!(cert["spec"]["issuerRef"]["name"], "cluster-ca");
}
