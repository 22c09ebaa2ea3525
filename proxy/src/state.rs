//! Persists the last accepted config, and the mesh certificate with its key,
//! so a restarted proxy serves traffic (over mTLS too) even while its
//! control plane is down. Writes are atomic: a temporary file in the same
//! directory, flushed, then renamed over the old one.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use gitmesh_proxy_config::ProxyConfig;

use crate::error::ProxyError;

const FILE: &str = "proxy-config.json";
/// The mesh certificate chain and its private key, in one PEM file (so the
/// two cannot get out of step), readable by the owner only.
const IDENTITY_FILE: &str = "mesh-identity.pem";

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
        self.write(FILE, &config.to_canonical_json(), false)
    }

    /// Writes the mesh certificate chain and its key atomically, the file
    /// readable by the owner only.
    pub fn save_identity(&self, chain_pem: &[u8], key_pem: &[u8]) -> std::io::Result<()> {
        let mut pem = chain_pem.to_vec();
        if !pem.ends_with(b"\n") {
            pem.push(b'\n');
        }
        pem.extend_from_slice(key_pem);
        self.write(IDENTITY_FILE, &pem, true)
    }

    /// The saved certificate chain and key (one PEM text holding both), if
    /// any.
    pub fn load_identity(&self) -> std::io::Result<Option<Vec<u8>>> {
        match fs::read(self.dir.join(IDENTITY_FILE)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn write(&self, name: &str, bytes: &[u8], private: bool) -> std::io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        #[cfg(not(unix))]
        let _ = private;
        let mut f = options.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, self.dir.join(name))?;
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

    #[test]
    fn the_identity_is_saved_private_in_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        assert!(state.load_identity().unwrap().is_none());
        state.save_identity(b"CHAIN", b"KEY\n").unwrap();
        assert_eq!(state.load_identity().unwrap().unwrap(), b"CHAIN\nKEY\n");
        state.save_identity(b"CHAIN2\n", b"KEY2\n").unwrap();
        assert_eq!(state.load_identity().unwrap().unwrap(), b"CHAIN2\nKEY2\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(IDENTITY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
