//! The dependency rule of `ARCHITECTURE.md`, checked on the real manifests (`cargo metadata`):
//! a Silo crate depends only on Silo crates below it, `silo-core` on none, and only the
//! HTTP server, the application and its drivers use actix-web.

use std::collections::BTreeMap;

/// Silo's library crates from the bottom up; each may depend only on those before it.
const LAYERS: &[&str] = &[
    "silo-core",
    "silo-storage",
    "silo-jobs",
    "silo-tenancy",
    "silo-backups",
    "silo-workspace",
    "silo-accounts",
    "silo-billing",
    "silo-server",
    "silo-web",
];
/// Drivers on top: they may use any crate, and no crate may use them.
const DRIVERS: &[&str] = &["silo-bench", "silo-e2e"];

/// Each workspace package's normal and build dependencies (dev-dependencies only serve tests).
fn workspace_dependencies() -> BTreeMap<String, Vec<String>> {
    declared_dependencies()
        .into_iter()
        .map(|(name, _, dependencies)| {
            let built = dependencies.into_iter().filter(|(_, kind)| kind != "dev").map(|(d, _)| d).collect();
            (name, built)
        })
        .collect()
}

/// The rule's violations in `packages`.
fn violations(packages: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let mut found = Vec::new();
    for (name, dependencies) in packages {
        let layer = LAYERS.iter().position(|l| l == name);
        if layer.is_none() && !DRIVERS.contains(&name.as_str()) {
            found.push(format!(
                "{name} is neither a layer nor a driver: place it in tests/tests/architecture.rs"
            ));
        }
        for dependency in dependencies {
            if DRIVERS.contains(&dependency.as_str()) {
                found.push(format!("{name} depends on the driver {dependency}"));
            }
            if let (Some(layer), Some(other)) = (layer, LAYERS.iter().position(|l| l == dependency))
                && other >= layer
            {
                found.push(format!("{name} depends on {dependency}, which is not below it"));
            }
            if dependency.starts_with("actix") && layer.is_some_and(|l| l < LAYERS.len() - 2) {
                found.push(format!("{name} depends on {dependency}: HTTP belongs to silo-server"));
            }
        }
    }
    found
}

#[test]
fn crates_depend_only_on_crates_below_them() {
    let packages = workspace_dependencies();
    for name in LAYERS.iter().chain(DRIVERS) {
        assert!(packages.contains_key(*name), "{name} is not in the workspace: {:?}", packages.keys());
    }
    assert_eq!(violations(&packages), Vec::<String>::new());
}

#[test]
fn the_rule_catches_upward_and_http_dependencies() {
    let mut packages = workspace_dependencies();
    packages.get_mut("silo-storage").unwrap().push("silo-tenancy".to_owned());
    packages.get_mut("silo-tenancy").unwrap().push("actix-web".to_owned());
    packages.get_mut("silo-billing").unwrap().push("silo-e2e".to_owned());
    let found = violations(&packages);
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(found[0].contains("silo-billing depends on the driver silo-e2e"), "{found:?}");
    assert!(found[1].contains("silo-storage depends on silo-tenancy"), "{found:?}");
    assert!(found[2].contains("silo-tenancy depends on actix-web"), "{found:?}");
}

/// The modules of `silo-server` (`crates/server/src`) and the sibling modules each one's code
/// refers to (`super::x` in a top-level file, `crate::x` anywhere; comments ignored). A module
/// directory (`api/`, `pages/`) counts as one module.
fn server_modules() -> BTreeMap<String, std::collections::BTreeSet<String>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/server/src");
    let mut sources: BTreeMap<String, String> = BTreeMap::new();
    for entry in std::fs::read_dir(&root).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            let mut text = String::new();
            for file in std::fs::read_dir(&path).unwrap() {
                let file = file.unwrap().path();
                // In a directory's files `super::` is the directory itself: only explicit paths count.
                let code = std::fs::read_to_string(&file).unwrap().replace("super::", "");
                text.push_str(&code);
            }
            sources.insert(name, text);
        } else if name != "lib" {
            sources.insert(name, std::fs::read_to_string(&path).unwrap());
        }
    }
    let names: Vec<String> = sources.keys().cloned().collect();
    sources
        .iter()
        .map(|(name, text)| {
            let code: String =
                text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
            let used = names
                .iter()
                .filter(|other| *other != name)
                .filter(|other| {
                    code.contains(&format!("super::{other}::"))
                        || code.contains(&format!("super::{other};"))
                        || code.contains(&format!("super::{{{other}"))
                        || code.contains(&format!("crate::{other}::"))
                })
                .cloned()
                .collect();
            (name.clone(), used)
        })
        .collect()
}

#[test]
fn the_web_server_modules_have_no_import_cycle() {
    let graph = server_modules();
    assert!(graph["sessions"].contains("request"), "the scan sees references: {graph:?}");
    // Depth-first search for a path back to the start.
    for start in graph.keys() {
        let mut stack = vec![vec![start.clone()]];
        while let Some(path) = stack.pop() {
            for next in &graph[path.last().unwrap()] {
                assert!(next != start, "import cycle: {} -> {start}", path.join(" -> "));
                if !path.contains(next) {
                    stack.push([path.clone(), vec![next.clone()]].concat());
                }
            }
        }
    }
}

/// The Rust sources under `dir` (relative to the workspace root), with their text.
fn sources(dir: &str) -> Vec<(std::path::PathBuf, String)> {
    sources_in(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir))
}

/// The Rust sources under `root` (a directory, or one file), with their text.
fn sources_in(root: &std::path::Path) -> Vec<(std::path::PathBuf, String)> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_owned()];
    while let Some(path) = pending.pop() {
        if path.is_dir() {
            pending.extend(std::fs::read_dir(&path).unwrap().map(|entry| entry.unwrap().path()));
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            found.push((path, text));
        }
    }
    found
}

/// What the web layer must not touch: the control plane's pools and SQL, and any tenant
/// connection. Handlers call a domain service instead. (Embedding the control plane's
/// migrations, which the application assembles, runs no SQL here.)
fn reaches_below_the_domain(code: &str) -> Option<&'static str> {
    let code = code.replace("sqlx::migrate!(", "").replace("sqlx::migrate::Migrator", "");
    [".control()", "sqlx::", "rusqlite::", ".call_blocking("].into_iter().find(|needle| code.contains(needle))
}

#[test]
fn the_web_layer_calls_domain_services_not_sql() {
    let mut files = sources("apps/web/src");
    files.extend(sources("crates/server/src"));
    assert!(files.len() > 20, "the scan sees the web sources: {}", files.len());
    let offending: Vec<String> = files
        .iter()
        .filter_map(|(path, code)| {
            reaches_below_the_domain(code).map(|n| format!("{} uses {n}", path.display()))
        })
        .collect();
    assert_eq!(offending, Vec::<String>::new());
    // The check itself sees a violation.
    assert_eq!(reaches_below_the_domain("state.tenancy().control().search(&q)"), Some(".control()"));
}

/// A workspace package: its name, its directory, and its dependencies as (name, kind):
/// `normal`, `build` or `dev`.
type Declared = (String, std::path::PathBuf, Vec<(String, String)>);

/// Each workspace package with its declared dependencies.
fn declared_dependencies() -> Vec<Declared> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let output = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline", "--manifest-path", manifest])
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|package| {
            let dir = std::path::Path::new(package["manifest_path"].as_str().unwrap()).parent().unwrap();
            let dependencies = package["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| {
                    let name = d["rename"].as_str().or(d["name"].as_str()).unwrap().to_owned();
                    (name, d["kind"].as_str().unwrap_or("normal").to_owned())
                })
                .collect();
            (package["name"].as_str().unwrap().to_owned(), dir.to_owned(), dependencies)
        })
        .collect()
}

/// Whether `code` names the crate `dependency` (as a path, an import or in a derive).
fn names_crate(code: &str, dependency: &str) -> bool {
    let ident = dependency.replace('-', "_");
    code.match_indices(&format!("{ident}::")).any(|(at, _)| {
        // A whole identifier: `rand::` is not `rand_distr::` or `brand::`.
        code[..at].chars().next_back().is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
    })
}

/// Dependencies declared for what they switch on, not for code that names them.
const FEATURE_ONLY: &[(&str, &str, &str)] = &[
    // The S3 client's HTTPS stack on ring instead of aws-lc-rs (see the workspace Cargo.toml).
    ("silo-storage", "aws-smithy-http-client", "normal"),
];

/// The dependencies no code of their package names: `(package, dependency, kind)`.
fn unused_dependencies() -> Vec<String> {
    let mut unused = Vec::new();
    for (package, dir, dependencies) in declared_dependencies() {
        let code = |under: &[&str]| -> String {
            under
                .iter()
                .filter(|d| dir.join(d).exists())
                .flat_map(|d| sources_in(&dir.join(d)))
                .map(|(_, text)| text)
                .collect()
        };
        // A dependency of the build is named by the code that is built (its sources without
        // their `#[cfg(test)]` modules); one the tests alone use belongs in dev-dependencies.
        let built: String = ["src", "build.rs"]
            .iter()
            .filter(|d| dir.join(d).exists())
            .flat_map(|d| sources_in(&dir.join(d)))
            .map(|(_, text)| without_test_modules(&text))
            .collect();
        let seen = code(&["src", "build.rs", "tests", "benches"]);
        for (dependency, kind) in dependencies {
            let exempt = FEATURE_ONLY.iter().any(|&(p, d, k)| p == package && d == dependency && k == kind);
            // A driver's (the benches', the end-to-end tests') normal dependencies serve its tests.
            let named = if kind == "dev" || DRIVERS.contains(&package.as_str()) { &seen } else { &built };
            if !exempt && !names_crate(named, &dependency) {
                unused.push(format!("{package} declares {dependency} ({kind}) but no code of it names it"));
            }
        }
    }
    unused
}

/// A source file without its `#[cfg(test)] mod …` blocks (each from the attribute to the
/// first closing brace at the start of a line).
fn without_test_modules(text: &str) -> String {
    let mut rest = text;
    let mut kept = String::with_capacity(text.len());
    while let Some(at) = rest.find("#[cfg(test)]\nmod ") {
        kept.push_str(&rest[..at]);
        rest = match rest[at..].find("\n}") {
            Some(end) => &rest[at + end + 2..],
            None => "",
        };
    }
    kept.push_str(rest);
    kept
}

#[test]
fn every_declared_dependency_is_used() {
    assert_eq!(unused_dependencies(), Vec::<String>::new());
    // The check itself tells names apart.
    assert!(names_crate("use rand::RngCore;", "rand"));
    assert!(!names_crate("use rand_distr::Zipf; let brand::x;", "rand"));
    assert!(names_crate("#[derive(utoipa::ToSchema)]", "utoipa"));
    assert!(names_crate("aws_sdk_s3::Client", "aws-sdk-s3"));
    let tested = "fn f() {}\n#[cfg(test)]\nmod tests {\n    use rand::x;\n}\nfn g() { sha2::x }";
    assert!(!names_crate(&without_test_modules(tested), "rand"));
    assert!(names_crate(&without_test_modules(tested), "sha2"));
}

/// `migrations/control/owners.toml`: each control-plane table's owning crate, and the crates
/// each migration file names.
struct Owners {
    tables: BTreeMap<String, String>,
    files: BTreeMap<String, Vec<String>>,
}

fn owners() -> Owners {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations/control/owners.toml");
    let manifest: toml::Table = std::fs::read_to_string(path).unwrap().parse().unwrap();
    let tables = manifest["tables"]
        .as_table()
        .unwrap()
        .iter()
        .map(|(table, owner)| (table.clone(), owner.as_str().unwrap().to_owned()))
        .collect();
    let files = manifest["files"]
        .as_table()
        .unwrap()
        .iter()
        .map(|(file, owners)| {
            let owners = owners.as_array().unwrap().iter().map(|o| o.as_str().unwrap().to_owned()).collect();
            (file.clone(), owners)
        })
        .collect();
    Owners { tables, files }
}

/// The words of `text` (identifiers and keywords), in order.
fn words(text: &str) -> Vec<&str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| !w.is_empty()).collect()
}

/// The tables of `known` that a migration file creates or alters (its tables, indexes and
/// columns; a trigger's body writes through the table's owner's rules and is not counted).
fn tables_changed(sql: &str, known: &BTreeMap<String, String>) -> std::collections::BTreeSet<String> {
    let code: String =
        sql.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n");
    let words = words(&code);
    let mut found = std::collections::BTreeSet::new();
    for (i, pair) in words.windows(3).enumerate() {
        let table = match pair {
            ["CREATE" | "ALTER", "TABLE", t] => Some(*t),
            ["CREATE", "VIRTUAL", "TABLE"] => words.get(i + 3).copied(),
            ["CREATE", "INDEX" | "UNIQUE", _] => {
                words[i..].iter().position(|w| *w == "ON").map(|on| words[i + on + 1])
            }
            _ => None,
        };
        if let Some(table) = table.filter(|t| known.contains_key(*t)) {
            found.insert(table.to_owned());
        }
    }
    found
}

/// The control-plane tables that `code` (a crate's Rust source) names in SQL: after `FROM`,
/// `JOIN`, `INTO`, `UPDATE` or `TABLE`, or leading an erasure step's rows (`"<table> WHERE`).
/// Comment lines are left out.
fn tables_queried<'a>(
    code: &str,
    known: &'a BTreeMap<String, String>,
) -> std::collections::BTreeSet<&'a str> {
    let code: String =
        code.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
    let words = words(&code);
    let mut found = std::collections::BTreeSet::new();
    for pair in words.windows(2) {
        if matches!(pair[0], "FROM" | "JOIN" | "INTO" | "UPDATE" | "TABLE")
            && let Some((table, _)) = known.get_key_value(pair[1])
        {
            found.insert(table.as_str());
        }
    }
    for table in known.keys() {
        if code.contains(&format!("\"{table} WHERE ")) {
            found.insert(table.as_str());
        }
    }
    found
}

#[test]
fn every_control_table_has_one_owner_named_by_its_migration() {
    let owners = owners();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations/control");
    let mut migrations: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    migrations.sort();
    assert!(migrations.len() >= 13, "the scan sees the migrations: {migrations:?}");
    let mut created = std::collections::BTreeSet::new();
    for path in &migrations {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let sql = std::fs::read_to_string(path).unwrap();
        for pair in words(&sql).windows(3) {
            if let ["CREATE", "TABLE", table] = pair {
                created.insert(table.to_string());
            }
        }
        // A table rebuilt under a new name and renamed back (SQLite's way to change a
        // constraint) is the one table.
        for pair in words(&sql).windows(6) {
            if let ["ALTER", "TABLE", from, "RENAME", "TO", to] = pair {
                created.remove(*from);
                created.insert(to.to_string());
            }
        }
        let changed = tables_changed(&sql, &owners.tables);
        let mut expected: Vec<String> = changed.iter().map(|t| owners.tables[t].clone()).collect();
        expected.sort();
        expected.dedup();
        let mut named = owners
            .files
            .get(&name)
            .cloned()
            .unwrap_or_else(|| panic!("owners.toml names no owner of {name}"));
        named.sort();
        assert_eq!(named, expected, "{name} changes {changed:?}: owners.toml should name their owners");
    }
    let listed: std::collections::BTreeSet<String> = owners.tables.keys().cloned().collect();
    assert_eq!(created, listed, "owners.toml lists exactly the tables the migrations create");
    for owner in owners.tables.values() {
        assert!(LAYERS.contains(&owner.as_str()), "{owner} owns a table but is not a layer");
    }
}

/// Statements in one crate's source that name a table another crate owns.
fn foreign_queries(owners: &Owners) -> Vec<String> {
    let mut found = Vec::new();
    for (package, dir, _) in declared_dependencies() {
        if !LAYERS.contains(&package.as_str()) {
            continue;
        }
        for (path, code) in sources_in(&dir.join("src")) {
            for table in tables_queried(&code, &owners.tables) {
                let owner = &owners.tables[table];
                if *owner != package {
                    found.push(format!("{} ({package}) queries {table}, which {owner} owns", path.display()));
                }
            }
        }
    }
    found.sort();
    found
}

#[test]
fn no_crate_queries_a_table_another_crate_owns() {
    let owners = owners();
    assert_eq!(foreign_queries(&owners), Vec::<String>::new());
    // The scan itself sees queries, joins, writes and erasure steps, and skips comments.
    let seen = tables_queried(
        "let a = \"SELECT * FROM invoices i JOIN tenants t ON t.id = i.tenant_id\";
         // DELETE FROM users
         let b = \"INSERT INTO jobs (id) VALUES (?)\"; let c = \"UPDATE memberships SET role = ?\";
         ErasureStep { table: \"outbox\", rows: \"outbox WHERE recipient = ?2\", set: None };",
        &owners.tables,
    );
    let seen: Vec<&str> = seen.into_iter().collect();
    assert_eq!(seen, ["invoices", "jobs", "memberships", "outbox", "tenants"]);
}

/// The lines of `code` (comments left out) that ask SQLite for the time.
fn asks_sqlite_for_now(code: &str) -> Vec<String> {
    code.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .filter(|l| {
            // A column's `DEFAULT CURRENT_TIMESTAMP` (the migrations table's, as sqlx defines
            // it) is not a statement asking for the time: the inserts bind it.
            let upper = l.to_ascii_uppercase().replace("DEFAULT CURRENT_", "");
            l.contains("'now'")
                || l.contains("now!(")
                || upper.contains("CURRENT_TIMESTAMP")
                || upper.contains("CURRENT_DATE")
                || upper.contains("CURRENT_TIME")
        })
        .map(|l| l.trim().to_owned())
        .collect()
}

/// "Now" comes from the process's clock (`ProcessClock`, a test's `TestClock`), bound as a
/// parameter: no library's SQL asks SQLite for the time — the control plane's nor the tenant
/// files' (`Turn::now`) — so a test moves time by hand and the statements carry over to
/// another database. (The migrations' column defaults and the `membership_history` trigger
/// still name SQLite's time; no statement relies on those defaults.)
#[test]
fn sql_takes_now_from_the_clock() {
    let mut found = Vec::new();
    for dir in [
        "crates/core/src",
        "crates/jobs/src",
        "crates/tenancy/src",
        "crates/backups/src",
        "crates/workspace/src",
        "crates/accounts/src",
        "crates/billing/src",
    ] {
        for (path, code) in sources(dir) {
            found.extend(asks_sqlite_for_now(&code).into_iter().map(|l| format!("{}: {l}", path.display())));
        }
    }
    assert_eq!(found, Vec::<String>::new());
    assert_eq!(asks_sqlite_for_now("let sql = \"SET at = strftime('%s', 'now')\";\n// 'now'").len(), 1);
    assert_eq!(asks_sqlite_for_now("\"INSERT INTO t VALUES (current_timestamp)\"").len(), 1);
}
