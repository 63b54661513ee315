//! The fast path of [`super::decode`]: a reader made for the fields that
//! `ReviewIn<ObjectLite>` keeps. serde_json reads a review through serde's generic
//! visitors and scans each string 8 bytes at a time; most of a review is fields that
//! nothing reads, which this reader passes over with a scan of 16 bytes at a time
//! (`json_text::plain_len`), still checking that they are valid JSON.
//!
//! It reads only the plain form. Whatever it does not handle (an escape in a string
//! it keeps, a duplicate field, a value of another type, nesting deeper than
//! [`MAX_SKIP_DEPTH`], anything that is not JSON) makes it give up with `None`, and
//! `decode` reads the body with serde_json, whose answer and error messages stand.
//! Where it answers, the answer is serde_json's: tests and the `admission` fuzz
//! target compare the two.

use std::borrow::Cow;

use crate::json_text::plain_len;

use super::{
    ContainerLite, GroupVersionKind, ImageVolumeSource, LocalObjectReference, MetadataLite,
    ObjectLite, OwnerReference, RequestIn, ReviewIn, SpecLite, TemplateLite, UserInfo, VolumeLite,
};

/// Containers nested deeper than this inside a skipped value: left to serde_json.
const MAX_SKIP_DEPTH: u32 = 100;

/// The review in `text`, or `None` where serde_json is to read it.
pub(super) fn review(text: &str) -> Option<ReviewIn<'_, ObjectLite<'_>>> {
    let mut r = Reader { text, pos: 0 };
    let (mut api_version, mut kind, mut request) = (None, None, None);
    r.members(|r, key| match key {
        "apiVersion" => set(&mut api_version, r.optional_string()?),
        "kind" => set(&mut kind, r.optional_string()?),
        "request" => set(&mut request, r.or_null(request_in)?),
        _ => r.skip_value(),
    })?;
    r.skip_whitespace();
    if r.pos != text.len() {
        return None;
    }
    Some(ReviewIn {
        api_version: api_version.flatten(),
        kind: kind.flatten(),
        request: request.flatten(),
    })
}

fn request_in<'a>(r: &mut Reader<'a>) -> Option<RequestIn<'a, ObjectLite<'a>>> {
    let (mut uid, mut kind, mut sub_resource, mut name, mut namespace) =
        (None, None, None, None, None);
    let (mut operation, mut user_info, mut object, mut old_object, mut dry_run) =
        (None, None, None, None, None);
    r.members(|r, key| match key {
        "uid" => set(&mut uid, r.string()?),
        "kind" => set(
            &mut kind,
            GroupVersionKind {
                kind: one_string(r, "kind")?,
            },
        ),
        "subResource" => set(&mut sub_resource, r.optional_string()?),
        "name" => set(&mut name, r.optional_string()?),
        "namespace" => set(&mut namespace, r.optional_string()?),
        "operation" => set(&mut operation, r.string()?),
        "userInfo" => set(
            &mut user_info,
            UserInfo {
                username: one_string(r, "username")?,
            },
        ),
        "object" => set(&mut object, r.or_null(object_lite)?),
        "oldObject" => set(&mut old_object, old_object_lite(r)?),
        "dryRun" => set(&mut dry_run, r.optional_bool()?),
        _ => r.skip_value(),
    })?;
    Some(RequestIn {
        // Required, as serde's derive has it.
        uid: uid?,
        kind: kind.unwrap_or_default(),
        sub_resource: sub_resource.flatten(),
        name: name.flatten(),
        namespace: namespace.flatten(),
        operation: operation.unwrap_or_default(),
        user_info: user_info.unwrap_or_default(),
        object: object.flatten(),
        old_object: old_object.flatten(),
        dry_run: dry_run.flatten(),
    })
}

/// An `oldObject` that is a string (`""` or `"None"` on some CREATEs), a number or a
/// boolean is absent: serde_json's second pass, for bodies its first cannot type,
/// reads it so. (An array is an object to serde's derive, in field order.)
fn old_object_lite<'a>(r: &mut Reader<'a>) -> Option<Option<ObjectLite<'a>>> {
    match r.next_token()? {
        b'{' => object_lite(r).map(Some),
        b'[' => None,
        _ => r.skip_value().map(|()| None),
    }
}

fn object_lite<'a>(r: &mut Reader<'a>) -> Option<ObjectLite<'a>> {
    let (mut metadata, mut spec) = (None, None);
    r.members(|r, key| match key {
        // `null` reads as absent (`object_or_default`).
        "metadata" => set(&mut metadata, r.or_null(metadata_lite)?.unwrap_or_default()),
        "spec" => set(&mut spec, r.or_null(spec_lite)?.unwrap_or_default()),
        _ => r.skip_value(),
    })?;
    Some(ObjectLite {
        metadata: metadata.unwrap_or_default(),
        spec: spec.unwrap_or_default(),
    })
}

fn metadata_lite<'a>(r: &mut Reader<'a>) -> Option<MetadataLite<'a>> {
    let (mut name, mut namespace, mut owner_references) = (None, None, None);
    r.members(|r, key| match key {
        "name" => set(&mut name, r.optional_string()?),
        "namespace" => set(&mut namespace, r.optional_string()?),
        "ownerReferences" => set(&mut owner_references, r.array(owner_reference)?),
        _ => r.skip_value(),
    })?;
    Some(MetadataLite {
        name: name.flatten(),
        namespace: namespace.flatten(),
        owner_references: owner_references.unwrap_or_default(),
    })
}

fn owner_reference<'a>(r: &mut Reader<'a>) -> Option<OwnerReference<'a>> {
    let (mut kind, mut name, mut controller) = (None, None, None);
    r.members(|r, key| match key {
        "kind" => set(&mut kind, r.string()?),
        "name" => set(&mut name, r.string()?),
        "controller" => set(&mut controller, r.optional_bool()?),
        _ => r.skip_value(),
    })?;
    Some(OwnerReference {
        kind: kind.unwrap_or_default(),
        name: name.unwrap_or_default(),
        controller: controller.flatten(),
    })
}

fn spec_lite<'a>(r: &mut Reader<'a>) -> Option<SpecLite<'a>> {
    let (mut containers, mut init_containers, mut ephemeral_containers) = (None, None, None);
    let (mut volumes, mut image_pull_secrets, mut service_account_name) = (None, None, None);
    let (mut template, mut job_template) = (None, None);
    r.members(|r, key| match key {
        "containers" => set(&mut containers, r.array(container)?),
        "initContainers" => set(&mut init_containers, r.array(container)?),
        "ephemeralContainers" => set(&mut ephemeral_containers, r.array(container)?),
        "volumes" => set(&mut volumes, r.array(volume)?),
        "imagePullSecrets" => set(
            &mut image_pull_secrets,
            r.array(|r| {
                Some(LocalObjectReference {
                    name: one_string(r, "name")?,
                })
            })?,
        ),
        "serviceAccountName" => set(&mut service_account_name, r.optional_string()?),
        "template" => set(&mut template, r.or_null(template_lite)?),
        "jobTemplate" => set(&mut job_template, r.or_null(template_lite)?),
        _ => r.skip_value(),
    })?;
    Some(SpecLite {
        containers: containers.unwrap_or_default(),
        init_containers: init_containers.unwrap_or_default(),
        ephemeral_containers: ephemeral_containers.unwrap_or_default(),
        volumes: volumes.unwrap_or_default(),
        image_pull_secrets: image_pull_secrets.unwrap_or_default(),
        service_account_name: service_account_name.flatten(),
        template: template.flatten().map(Box::new),
        job_template: job_template.flatten().map(Box::new),
    })
}

fn template_lite<'a>(r: &mut Reader<'a>) -> Option<TemplateLite<'a>> {
    let mut spec = None;
    r.members(|r, key| match key {
        "spec" => set(&mut spec, r.or_null(spec_lite)?.unwrap_or_default()),
        _ => r.skip_value(),
    })?;
    Some(TemplateLite {
        spec: spec.unwrap_or_default(),
    })
}

fn container<'a>(r: &mut Reader<'a>) -> Option<ContainerLite<'a>> {
    let (mut name, mut image) = (None, None);
    r.members(|r, key| match key {
        "name" => set(&mut name, r.string()?),
        "image" => set(&mut image, r.optional_string()?),
        _ => r.skip_value(),
    })?;
    Some(ContainerLite {
        name: name.unwrap_or_default(),
        image: image.flatten(),
    })
}

fn volume<'a>(r: &mut Reader<'a>) -> Option<VolumeLite<'a>> {
    let (mut name, mut image) = (None, None);
    r.members(|r, key| match key {
        "name" => set(&mut name, r.string()?),
        "image" => set(
            &mut image,
            r.or_null(|r| {
                let mut reference = None;
                r.members(|r, key| match key {
                    "reference" => set(&mut reference, r.optional_string()?),
                    _ => r.skip_value(),
                })?;
                Some(ImageVolumeSource {
                    reference: reference.flatten(),
                })
            })?,
        ),
        _ => r.skip_value(),
    })?;
    Some(VolumeLite {
        name: name.unwrap_or_default(),
        image: image.flatten(),
    })
}

/// An object of which one string field is kept (empty when absent).
fn one_string<'a>(r: &mut Reader<'a>, field: &str) -> Option<Cow<'a, str>> {
    let mut value = None;
    r.members(|r, key| {
        if key == field {
            set(&mut value, r.string()?)
        } else {
            r.skip_value()
        }
    })?;
    Some(value.unwrap_or_default())
}

/// A field's value, once: serde's derive rejects a duplicate field.
fn set<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value);
    Some(())
}

struct Reader<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// The first byte of the next token.
    fn next_token(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.peek()
    }

    /// Consumes `byte` as the next token.
    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.next_token()? == byte).then(|| self.pos += 1)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.pos.checked_add(word.len())?;
        (self.text.as_bytes().get(self.pos..end)? == word).then(|| self.pos = end)
    }

    /// An object's members: `member` reads the value of each key.
    fn members(&mut self, mut member: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.expect(b'{')?;
        if self.next_token()? == b'}' {
            self.pos += 1;
            return Some(());
        }
        loop {
            // A key with an escape could name a field once unescaped: serde_json's.
            let key = self.plain_string()?;
            self.expect(b':')?;
            member(self, key)?;
            match self.next_token()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn array<T>(&mut self, mut item: impl FnMut(&mut Self) -> Option<T>) -> Option<Vec<T>> {
        self.expect(b'[')?;
        let mut items = Vec::new();
        if self.next_token()? == b']' {
            self.pos += 1;
            return Some(items);
        }
        loop {
            items.push(item(self)?);
            match self.next_token()? {
                b',' => self.pos += 1,
                b']' => {
                    self.pos += 1;
                    return Some(items);
                }
                _ => return None,
            }
        }
    }

    /// `null` as `None`, anything else read by `value` (serde's `Option<T>`).
    fn or_null<T>(&mut self, value: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.next_token()? == b'n' {
            self.literal(b"null")?;
            return Some(None);
        }
        value(self).map(Some)
    }

    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.plain_string().map(Cow::Borrowed)
    }

    fn optional_string(&mut self) -> Option<Option<Cow<'a, str>>> {
        self.or_null(Self::string)
    }

    fn optional_bool(&mut self) -> Option<Option<bool>> {
        self.or_null(|r| match r.peek()? {
            b't' => r.literal(b"true").map(|()| true),
            b'f' => r.literal(b"false").map(|()| false),
            _ => None,
        })
    }

    /// A string without escapes, borrowed from the body.
    fn plain_string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let start = self.pos;
        let len = plain_len(self.text.as_bytes().get(start..)?);
        if self.text.as_bytes().get(start + len) != Some(&b'"') {
            return None;
        }
        self.pos = start + len + 1;
        // Both ends are at ASCII quotes, so on character boundaries.
        self.text.get(start..start + len)
    }

    /// The rest of a string whose opening quote has been read, checked as serde_json
    /// checks a string it ignores: no control characters, valid escapes.
    fn skip_string_rest(&mut self) -> Option<()> {
        loop {
            self.pos += plain_len(self.text.as_bytes().get(self.pos..)?);
            match self.peek()? {
                b'"' => {
                    self.pos += 1;
                    return Some(());
                }
                b'\\' => self.pos += 1,
                _ => return None,
            }
            match self.peek()? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.pos += 1,
                b'u' => {
                    let hex = self.text.as_bytes().get(self.pos + 1..self.pos + 5)?;
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return None;
                    }
                    self.pos += 5;
                }
                _ => return None,
            }
        }
    }

    /// A number, checked against JSON's grammar as serde_json checks one it ignores.
    fn skip_number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek()? {
            b'0' => {
                self.pos += 1;
                if self.peek().is_some_and(|b| b.is_ascii_digit()) {
                    return None;
                }
            }
            b'1'..=b'9' => self.skip_digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            self.digits()?;
        }
        Some(())
    }

    /// At least one digit.
    fn digits(&mut self) -> Option<()> {
        let start = self.pos;
        self.skip_digits();
        (self.pos > start).then_some(())
    }

    fn skip_digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
    }

    /// Any value, checked as serde_json checks a value it ignores. Iterative, with the
    /// open containers as bits (1 for an object), so nothing is allocated.
    fn skip_value(&mut self) -> Option<()> {
        let mut objects: u128 = 0;
        let mut depth = 0;
        loop {
            match self.next_token()? {
                open @ (b'{' | b'[') => {
                    self.pos += 1;
                    let close = if open == b'{' { b'}' } else { b']' };
                    if self.next_token()? == close {
                        self.pos += 1;
                    } else {
                        if depth == MAX_SKIP_DEPTH {
                            return None;
                        }
                        depth += 1;
                        objects = objects << 1 | u128::from(open == b'{');
                        if open == b'{' {
                            self.member_key()?;
                        }
                        continue;
                    }
                }
                b'"' => {
                    self.pos += 1;
                    self.skip_string_rest()?;
                }
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                b'-' | b'0'..=b'9' => self.skip_number()?,
                _ => return None,
            }
            // A value has ended: close the containers it ends, or go on after a comma.
            loop {
                if depth == 0 {
                    return Some(());
                }
                let in_object = objects & 1 == 1;
                match self.next_token()? {
                    b',' => {
                        self.pos += 1;
                        if in_object {
                            self.member_key()?;
                        }
                        break;
                    }
                    b'}' if in_object => {}
                    b']' if !in_object => {}
                    _ => return None,
                }
                self.pos += 1;
                objects >>= 1;
                depth -= 1;
            }
        }
    }

    /// A skipped object's key and its colon.
    fn member_key(&mut self) -> Option<()> {
        self.expect(b'"')?;
        self.skip_string_rest()?;
        self.expect(b':')
    }
}

#[cfg(test)]
mod tests;
