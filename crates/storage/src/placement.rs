//! Placement: named regions (storage roots) and the path of a database inside one.
//!
//! A tenant's path is derived **only** from its UUID and its region —
//! `<root>/tenants/<first two hex chars>/<uuid>.db` — never from a slug or other user input,
//! so a path can neither escape its root nor be reused (UUIDs are never reused).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::{Error, Result};

/// A validated region name (`[a-z0-9-]{1,32}`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct RegionName(String);

impl RegionName {
    /// Validates a region name.
    pub fn parse(name: &str) -> Result<Self> {
        let ok = !name.is_empty()
            && name.len() <= 32
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok { Ok(Self(name.to_owned())) } else { Err(Error::InvalidRegionName(name.to_owned())) }
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RegionName {
    type Error = Error;

    fn try_from(stored: String) -> Result<Self> {
        Self::parse(&stored)
    }
}

impl fmt::Display for RegionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The configured regions and their storage roots.
#[derive(Clone, Debug)]
pub struct Placement {
    roots: BTreeMap<RegionName, PathBuf>,
}

impl Placement {
    /// Builds a placement from `(name, root)` pairs.
    pub fn new(roots: impl IntoIterator<Item = (RegionName, PathBuf)>) -> Self {
        Self { roots: roots.into_iter().collect() }
    }

    /// The storage root of a region.
    pub fn root(&self, region: &str) -> Result<&Path> {
        self.roots
            .iter()
            .find(|(name, _)| name.as_str() == region)
            .map(|(_, root)| root.as_path())
            .ok_or_else(|| Error::UnknownRegion(region.to_owned(), self.names().join(", ")))
    }

    /// Names of all configured regions, sorted.
    pub fn names(&self) -> Vec<String> {
        self.roots.keys().map(|r| r.to_string()).collect()
    }

    /// Path of the database with this id in this region.
    pub fn database_path(&self, region: &str, id: Uuid) -> Result<PathBuf> {
        let root = self.root(region)?;
        Ok(database_path_under(root, id))
    }
}

impl Placement {
    /// The bytes of every tenant file under the regions' roots (databases, their WAL and
    /// side files): what a server of a cluster reports as the size of its tenants. A stat
    /// per file, no file opened; files that vanish meanwhile count nothing.
    pub fn stored_bytes(&self) -> u64 {
        let entries = |dir: &Path| std::fs::read_dir(dir).into_iter().flatten().flatten();
        self.roots
            .values()
            .flat_map(|root| entries(&root.join("tenants")))
            .flat_map(|shard| entries(&shard.path()))
            .filter_map(|file| file.metadata().ok())
            .filter(std::fs::Metadata::is_file)
            .map(|m| m.len())
            .sum()
    }
}

/// `<root>/tenants/<first two hex chars of uuid>/<uuid>.db`.
pub fn database_path_under(root: &Path, id: Uuid) -> PathBuf {
    let hex = id.simple().to_string();
    root.join("tenants").join(&hex[..2]).join(format!("{}.db", id.hyphenated()))
}

impl PartialEq<str> for RegionName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for RegionName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_is_derived_from_uuid_only() {
        let id = Uuid::parse_str("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b").unwrap();
        let placement = Placement::new([(RegionName::parse("local").unwrap(), PathBuf::from("/srv/silo"))]);
        let path = placement.database_path("local", id).unwrap();
        assert_eq!(path, PathBuf::from("/srv/silo/tenants/01/0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b.db"));
    }

    #[test]
    fn unknown_region_names_the_configured_ones() {
        let placement = Placement::new([(RegionName::parse("local").unwrap(), PathBuf::from("/x"))]);
        let err = placement.database_path("eu", Uuid::now_v7()).unwrap_err();
        assert_eq!(err.to_string(), "unknown region `eu` (configured regions: local)");
    }

    #[test]
    fn stored_bytes_count_the_tenant_files_of_every_region() {
        let (eu, us) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let placement = Placement::new([
            (RegionName::parse("eu").unwrap(), eu.path().to_owned()),
            (RegionName::parse("us").unwrap(), us.path().to_owned()),
        ]);
        assert_eq!(placement.stored_bytes(), 0, "no tenants directory yet");
        for (region, len) in [("eu", 1000), ("eu", 24), ("us", 7)] {
            let path = placement.database_path(region, Uuid::now_v7()).unwrap();
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, vec![0u8; len]).unwrap();
        }
        std::fs::write(eu.path().join("control.db"), [0u8; 500]).unwrap();
        assert_eq!(placement.stored_bytes(), 1031, "tenant files only");
    }

    #[test]
    fn region_names_are_validated() {
        for bad in ["", "EU", "a/b", "..", &"x".repeat(33)] {
            assert!(RegionName::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(RegionName::parse("eu-west-1").is_ok());
    }
}
