# Silo's everyday commands. Each is also written out in the README for people without `just`.

# Run Silo on its embedded defaults (./data, local backups, 127.0.0.1:8080).
run:
    cargo run --release -- serve

# Run every test.
test:
    cargo test --workspace

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Benchmarks (release build; figures print as tables).
bench:
    cargo run --release -p silo-bench -- cache
    cargo run --release -p silo-bench -- provision
    cargo run --release -p silo-bench -- migrate
    cargo run --release -p silo-bench -- http
    cargo run --release -p silo-bench -- backup
    cargo run --release -p silo-bench -- open
    cargo run --release -p silo-bench -- scheduler
    cargo run --release -p silo-bench -- fleet
    cargo run --release -p silo-bench -- soak
    cargo build --release -p silo-web && cargo run --release -p silo-bench -- login

# What CI runs.
ci:
    bash .ci/run
