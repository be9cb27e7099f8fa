//! Shared set-up of the accounts integration tests: a real data directory in a temp dir.

#![allow(dead_code)]

use silo_accounts::{Accounts, AccountsSettings};
use silo_tenancy::{CreateTenant, Settings, Tenancy, Tenant};

pub struct Fixture {
    pub tenancy: Tenancy,
    pub accounts: Accounts,
    // Last: fields drop in order, so the fleet lets go of its files before they are deleted.
    pub dir: tempfile::TempDir,
}

pub async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::for_data_dir(dir.path());
    // The control plane on PostgreSQL when this test binary runs on it (`*_on_postgres`).
    settings.control.url = silo_core::db::testing::control_url().await.map(silo_core::Secret::new);
    let tenancy = Tenancy::open(settings, schema()).await.unwrap();
    // As the application does: purges and erasures must reach the backups.
    silo_backups::Backups::of(&tenancy);
    let accounts = Accounts::new(tenancy.clone(), AccountsSettings::default());
    Fixture { dir, tenancy, accounts }
}

impl Fixture {
    pub async fn create(&self, slug: &str) -> Tenant {
        self.tenancy.tenants().create(CreateTenant::with_slug(slug), "test").await.unwrap()
    }
}

/// The control plane's migrations, as the application assembles them (`silo_web::schema`).
static CONTROL_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/control");
static CONTROL_POSTGRES_MIGRATIONS: sqlx::migrate::Migrator =
    sqlx::migrate!("../../migrations/control-postgres");

/// What the fleet opens with: the control plane's migrations and the product's tenant schema.
pub fn schema() -> silo_tenancy::Schema {
    silo_tenancy::Schema {
        control: &CONTROL_MIGRATIONS,
        control_postgres: &CONTROL_POSTGRES_MIGRATIONS,
        tenant: silo_workspace::schema(),
    }
}
