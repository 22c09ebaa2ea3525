//! Persists the last accepted config so a restarted proxy serves traffic
//! even while its control plane is down. Writes are atomic: a temporary file
//! in the same directory, flushed, then renamed over the old one.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use gitmesh_proxy_config::ProxyConfig;

use crate::error::ProxyError;

const FILE: &str = "proxy-config.json";

/// The state directory of one proxy.
#[derive(Clone, Debug)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StateDir { dir: dir.into() }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    /// Writes `config` atomically.
    pub fn save(&self, config: &ProxyConfig) -> std::io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let tmp = self.dir.join(format!(".{FILE}.tmp"));
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&config.to_canonical_json())?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, self.config_path())?;
        if let Ok(d) = fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// The last saved config, if any. A file that no longer parses or
    /// validates is an error, not silently ignored.
    pub fn load(&self) -> Result<Option<ProxyConfig>, ProxyError> {
        let path = self.config_path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(ProxyError::ReadConfig { path, source }),
        };
        ProxyConfig::from_json(&bytes)
            .map(Some)
            .map_err(|invalid| ProxyError::InvalidConfig {
                path: Some(path),
                invalid,
            })
    }
}

/// Reads and validates a config file.
pub fn read_config(path: &Path) -> Result<ProxyConfig, ProxyError> {
    let bytes = fs::read(path).map_err(|source| ProxyError::ReadConfig {
        path: path.to_path_buf(),
        source,
    })?;
    ProxyConfig::from_json(&bytes).map_err(|invalid| ProxyError::InvalidConfig {
        path: Some(path.to_path_buf()),
        invalid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_then_load_round_trips_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("nested"));
        assert!(state.load().unwrap().is_none());
        let c = ProxyConfig::from_json(br#"{"version":"v7","service":"a"}"#).unwrap();
        state.save(&c).unwrap();
        assert_eq!(state.load().unwrap(), Some(c));
        let names: Vec<_> = fs::read_dir(dir.path().join("nested"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [FILE]);
    }
}
