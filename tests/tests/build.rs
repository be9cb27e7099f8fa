//! Build invariants: one SQLite in the binary, and it is recent enough.

#[test]
fn the_build_links_exactly_one_libsqlite3_sys() {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock")).unwrap();
    let copies = lock.lines().filter(|l| *l == "name = \"libsqlite3-sys\"").count();
    assert_eq!(copies, 1, "sqlx and rusqlite must share one libsqlite3-sys (one bundled SQLite)");
}

#[tokio::test]
async fn the_linked_sqlite_has_the_wal_reset_fix() {
    let version = silo_storage::sqlite::linked_version().await.unwrap();
    silo_storage::sqlite::check_version(&version).unwrap();
}
