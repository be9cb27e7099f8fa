//! Shared set-up of the accounts integration tests: a real data directory in a temp dir.

#![allow(dead_code)]

use silo_accounts::{Accounts, AccountsSettings};
use silo_tenancy::{CreateTenant, Settings, Tenancy, Tenant};

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub tenancy: Tenancy,
    pub accounts: Accounts,
}

pub async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let tenancy = Tenancy::open(Settings::for_data_dir(dir.path()), silo_workspace::schema()).await.unwrap();
    let accounts = Accounts::new(tenancy.clone(), AccountsSettings::default());
    Fixture { dir, tenancy, accounts }
}

impl Fixture {
    pub async fn create(&self, slug: &str) -> Tenant {
        self.tenancy.tenants().create(CreateTenant::with_slug(slug), "test").await.unwrap()
    }
}
