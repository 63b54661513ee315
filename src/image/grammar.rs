//! The reference grammar of github.com/distribution/reference, which containerd and
//! the kubelet read image names with, checked by hand. oci-spec checks it with one
//! large regular expression: every thread's first use of it took 20 ms (the
//! expression's matching state is built per thread, on demand), which the first
//! review on each worker thread waited for, and a new image name cost about 15 µs
//! after that. Here it is a few hundred nanoseconds.
//!
//! ```text
//! reference  := name [ ":" tag ] [ "@" digest ]
//! name       := [ domain "/" ] path ( "/" path )*
//! domain     := host-part ( "." host-part )* [ ":" [0-9]+ ]
//! host-part  := [a-zA-Z0-9] | [a-zA-Z0-9] [a-zA-Z0-9-]* [a-zA-Z0-9]
//! path       := [a-z0-9]+ ( separator [a-z0-9]+ )*
//! separator  := "." | "_" | "__" | "-"+
//! tag        := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
//! digest     := algorithm ":" [0-9a-fA-F]{32,}
//! algorithm  := component ( [-_+.] component )*,  component := [A-Za-z] [A-Za-z0-9]*
//! ```
//!
//! A tag is ASCII, as in Go's `\w`; oci-spec's Rust `\w` also takes other letters,
//! which no container runtime pulls.

/// A reference's parts as written, before normalization.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Written<'a> {
    pub name: &'a str,
    pub tag: Option<&'a str>,
    pub digest: Option<&'a str>,
}

/// The parts of `s`, or `None` when it is not a reference of the grammar.
pub fn split(s: &str) -> Option<Written<'_>> {
    // No part but the digest may hold an '@', and the digest holds none.
    let (rest, digest) = match s.split_once('@') {
        Some((rest, digest)) if is_digest(digest) => (rest, Some(digest)),
        Some(_) => return None,
        None => (s, None),
    };
    // A ':' is a port only in the domain, which a '/' follows.
    let (name, tag) = match rest.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
        _ => (rest, None),
    };
    if tag.is_some_and(|t| !is_tag(t)) || !is_name(name) {
        return None;
    }
    Some(Written { name, tag, digest })
}

fn is_name(name: &str) -> bool {
    let with_domain = name
        .split_once('/')
        .is_some_and(|(domain, path)| is_domain(domain) && is_path(path));
    with_domain || is_path(name)
}

fn is_path(path: &str) -> bool {
    path.split('/').all(is_path_component)
}

fn is_path_component(part: &str) -> bool {
    let bytes = part.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut at = 0;
    loop {
        let run = bytes
            .get(at..)
            .unwrap_or_default()
            .iter()
            .take_while(|b| alnum(b))
            .count();
        if run == 0 {
            return false;
        }
        at += run;
        let separator = match bytes.get(at..).unwrap_or_default() {
            [] => return true,
            [b'_', b'_', ..] => 2,
            [b'.' | b'_', ..] => 1,
            [b'-', ..] => bytes
                .get(at..)
                .unwrap_or_default()
                .iter()
                .take_while(|&&b| b == b'-')
                .count(),
            _ => return false,
        };
        at += separator;
    }
}

fn is_domain(domain: &str) -> bool {
    let (host, port) = match domain.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    port_ok && host.split('.').all(is_host_part)
}

fn is_host_part(part: &str) -> bool {
    let bytes = part.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        }
        _ => false,
    }
}

fn is_tag(tag: &str) -> bool {
    let word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    let bytes = tag.as_bytes();
    bytes.len() <= 128
        && bytes.first().is_some_and(word)
        && bytes.iter().all(|b| word(b) || matches!(b, b'.' | b'-'))
}

fn is_digest(digest: &str) -> bool {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return false;
    };
    let component = |c: &str| {
        let bytes = c.as_bytes();
        bytes.first().is_some_and(u8::is_ascii_alphabetic)
            && bytes.iter().all(u8::is_ascii_alphanumeric)
    };
    hex.len() >= 32
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
        && algorithm.split(['-', '_', '+', '.']).all(component)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_name_tag_and_digest() {
        let digest = format!("sha256:{}", "f".repeat(64));
        let cases = [
            ("busybox", ("busybox", None, None)),
            ("test.com:5000", ("test.com", Some("5000"), None)),
            ("test:5000/repo", ("test:5000/repo", None, None)),
            (
                "a/b__c.d-e---f:V1_x.y-z",
                ("a/b__c.d-e---f", Some("V1_x.y-z"), None),
            ),
        ];
        for (text, (name, tag, digest)) in cases {
            assert_eq!(split(text), Some(Written { name, tag, digest }), "{text}");
        }
        let text = format!("test:5000/repo:tag@{digest}");
        assert_eq!(
            split(&text),
            Some(Written {
                name: "test:5000/repo",
                tag: Some("tag"),
                digest: Some(&digest),
            })
        );
    }

    #[test]
    fn rejects_what_the_grammar_does_not_produce() {
        let tag129 = format!("a:{}", "t".repeat(129));
        for bad in [
            "",
            "a/",
            "/a",
            "a//b",
            "a..b",
            "a._b",
            "a___b",
            "a-",
            "-a",
            "A",
            "a:",
            "a:-x",
            "a:b:c",
            "a@sha256:abc",
            "a@:0123456789abcdef0123456789abcdef",
            "host-/a",
            "ho st/a",
            "host:/a",
            "host:5x/a",
            "a:b/c",
            "a@b@c",
            "tag:é",
            &tag129,
        ] {
            assert_eq!(split(bad), None, "{bad:?}");
        }
    }
}
