//! Out of file descriptors is the machine's state, not the tenant's: opening a tenant then
//! fails with `Error::Overloaded` (503 and `Retry-After` over HTTP) naming the cause, the file
//! is not quarantined, and the same open works once descriptors are free again.
//!
//! A test binary of its own: it lowers the process's open-file limit.

mod common;

use std::time::Duration;

use rlimit::Resource;
use silo_tenancy::Error;

#[tokio::test]
async fn running_out_of_descriptors_is_named_and_recovers() {
    let f = common::fixture().await;
    let tenant = f.create("descriptors").await;
    f.tenancy.cache().clear().await;
    assert!(f.tenancy.cache().wait_all_closed(Duration::from_secs(5)).await);

    let (soft, hard) = rlimit::getrlimit(Resource::NOFILE).unwrap();
    let open = silo_tenancy::limits::open_fds();
    rlimit::setrlimit(Resource::NOFILE, open + 4, hard).unwrap();
    // Take whatever is left, so SQLite's open(2) fails with EMFILE.
    let hogs: Vec<_> = std::iter::from_fn(|| std::fs::File::open("/dev/null").ok()).take(64).collect();
    let refused = f.tenancy.db(tenant.id).await;
    drop(hogs);
    rlimit::setrlimit(Resource::NOFILE, soft, hard).unwrap();

    let error = refused.expect_err("no descriptor was free");
    assert!(matches!(error.root(), Error::Overloaded(_)), "{error:?}");
    assert!(error.to_string().contains("out of file descriptors"), "{error}");
    let row = f.tenancy.tenant(&silo_core::TenantRef::Id(tenant.id)).await.unwrap();
    assert_eq!(row.migration_error, None, "not quarantined");
    f.tenancy.db(tenant.id).await.expect("opens again once descriptors are free");
}
