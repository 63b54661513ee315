//! Namespace policies from a file: `kubectl get ns -o yaml` output (a List), or
//! multi-document YAML of Namespaces.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use super::file_error::NamespacesFileError;

use super::{Annotations, NamespaceError, NamespaceSource};

#[derive(Debug, Default)]
pub struct FileNamespaces {
    by_name: HashMap<String, Annotations, crate::FastHashState>,
}

#[derive(Deserialize)]
struct Doc {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: Option<Meta>,
    #[serde(default)]
    items: Vec<Doc>,
}

#[derive(Deserialize)]
struct Meta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

impl FileNamespaces {
    pub fn load(path: &Path) -> Result<FileNamespaces, NamespacesFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| NamespacesFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        FileNamespaces::parse(&text).map_err(|e| NamespacesFileError::InFile {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    pub fn parse(text: &str) -> Result<FileNamespaces, NamespacesFileError> {
        let mut out = FileNamespaces::default();
        // Empty documents are skipped; a parse error names its line.
        let documents: Vec<Doc> =
            serde_saphyr::from_multiple(text).map_err(NamespacesFileError::Yaml)?;
        for (i, doc) in documents.into_iter().enumerate() {
            out.add(doc).map_err(|e| NamespacesFileError::Document {
                number: i + 1,
                source: Box::new(e),
            })?;
        }
        Ok(out)
    }

    fn add(&mut self, doc: Doc) -> Result<(), NamespacesFileError> {
        match doc.kind.as_str() {
            "Namespace" => {
                let meta = doc.metadata.ok_or(NamespacesFileError::NoMetadata)?;
                if meta.name.is_empty() {
                    return Err(NamespacesFileError::NoName);
                }
                self.by_name
                    .insert(meta.name, Arc::new(meta.annotations.unwrap_or_default()));
                Ok(())
            }
            "List" | "NamespaceList" => doc.items.into_iter().try_for_each(|item| self.add(item)),
            other => Err(NamespacesFileError::WrongKind(other.to_string())),
        }
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

#[async_trait]
impl NamespaceSource for FileNamespaces {
    async fn annotations(&self, name: &str) -> Result<Option<Annotations>, NamespaceError> {
        Ok(self.by_name.get(name).cloned())
    }

    fn is_ready(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn list_and_multi_document() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- kind: Namespace\n  metadata:\n    name: a\n    annotations: {vulngate.io/max-high: \"2\"}\n---\nkind: Namespace\nmetadata: {name: b}\n---\n";
        let ns = FileNamespaces::parse(text).unwrap();
        assert_eq!(ns.len(), 2);
        let a = ns.annotations("a").await.unwrap().unwrap();
        assert_eq!(a.get("vulngate.io/max-high").map(String::as_str), Some("2"));
        assert!(ns.annotations("b").await.unwrap().unwrap().is_empty());
        assert!(ns.annotations("c").await.unwrap().is_none());
        assert!(FileNamespaces::parse("kind: Pod\nmetadata: {name: x}\n").is_err());
    }
}
