//! The one settings loader: defaults, then the TOML file, then `SILO_…` environment variables.
//! Each layer's settings type is its own (the fleet's in `silo-tenancy`, the process's in
//! `silo-web`, which flattens the others); this is how any of them is read.

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Settings that could not be read: a missing file, bad TOML, a value of the wrong type.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(pub String);

/// Loads settings of type `T`: its defaults, then the TOML file (when given — it must exist —
/// or `silo.toml` in the working directory when present), then `SILO_…` environment variables
/// (`__` nests: `SILO_CACHE__CAPACITY` is `cache.capacity`); `SILO_MASTER_KEY` becomes
/// `backup.master_key`.
pub fn load<T: Serialize + DeserializeOwned + Default>(
    config_file: Option<&Path>,
) -> Result<T, SettingsError> {
    let mut figment = Figment::from(Serialized::defaults(T::default()));
    match config_file {
        Some(path) if !path.exists() => {
            return Err(SettingsError(format!("config file {} does not exist", path.display())));
        }
        Some(path) => figment = figment.merge(Toml::file_exact(path)),
        None if Path::new("silo.toml").exists() => figment = figment.merge(Toml::file_exact("silo.toml")),
        None => {}
    }
    // `SILO_LOG`, `SILO_LOG_FORMAT` and `SILO_CONFIG` configure the process, not settings;
    // `SILO_MASTER_KEY` is the key itself, kept under its well-known name.
    let env = Env::prefixed("SILO_").split("__").ignore(&["log", "log_format", "config", "master_key"]);
    figment = figment.merge(env);
    if let Ok(key) = std::env::var("SILO_MASTER_KEY")
        && !key.trim().is_empty()
    {
        figment = figment.merge(Serialized::default("backup.master_key", key.trim()));
    }
    figment.extract().map_err(|e| SettingsError(e.to_string()))
}
