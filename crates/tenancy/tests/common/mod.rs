//! Shared set-up of the tenancy integration tests: a real data directory in a temp dir.

#![allow(dead_code)]

use silo_tenancy::{CreateTenant, Settings, Tenancy, Tenant};

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub tenancy: Tenancy,
}

/// The product schema's version (what a new tenant file has).
pub fn latest() -> i64 {
    silo_tenancy::schema::latest_version(silo_workspace::migrations())
}

pub async fn fixture() -> Fixture {
    fixture_with(|_| {}).await
}

pub async fn fixture_with(adjust: impl FnOnce(&mut Settings)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::for_data_dir(dir.path());
    settings.cache.lease_timeout_ms = 10_000;
    adjust(&mut settings);
    let tenancy = Tenancy::open(settings, silo_workspace::schema()).await.unwrap();
    Fixture { dir, tenancy }
}

impl Fixture {
    pub async fn create(&self, slug: &str) -> Tenant {
        self.tenancy.tenants().create(CreateTenant::with_slug(slug), "test").await.unwrap()
    }

    /// Every file under the default region's `tenants/` directory.
    pub fn tenant_files(&self) -> Vec<std::path::PathBuf> {
        let root = self.dir.path().join("regions/local/tenants");
        let mut files = Vec::new();
        for shard in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            for file in std::fs::read_dir(shard.path()).into_iter().flatten().flatten() {
                files.push(file.path());
            }
        }
        files.sort();
        files
    }
}
