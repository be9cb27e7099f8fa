//! Shared set-up of the tenancy integration tests: a real data directory in a temp dir.

#![allow(dead_code)]

use silo_tenancy::{CreateTenant, Settings, Tenancy, Tenant};

pub struct Fixture {
    pub tenancy: Tenancy,
    // Last: fields drop in order, so the fleet lets go of its files before they are deleted.
    pub dir: tempfile::TempDir,
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
    // The control plane on PostgreSQL when this test binary runs on it (`*_on_postgres`).
    settings.control.url = silo_core::db::testing::control_url().await.map(silo_core::Secret::new);
    settings.cache.lease_timeout_ms = 10_000;
    adjust(&mut settings);
    let tenancy = Tenancy::open(settings, schema()).await.unwrap();
    // As the application does: a purge must reach the backups, so it is refused without them.
    silo_backups::Backups::of(&tenancy);
    Fixture { dir, tenancy }
}

/// A fixture whose fleet runs on `clock` (tests move time by hand).
pub async fn fixture_on(clock: &silo_core::TestClock) -> Fixture {
    let clock = silo_core::ProcessClock::new(clock.shared());
    fixture_with(move |s| s.clock = clock).await
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
