//! Reads a policy repo from a directory on disk.

use std::fs;
use std::path::Path;

use super::{Content, MAX_FILE_BYTES, SourceError, SourceFile, is_hidden};

/// Every file under `root` outside dot-folders, sorted by path. Symlinks are
/// not followed (a policy repo has no reason to point outside itself).
pub fn read_dir(root: &Path) -> Result<Vec<SourceFile>, SourceError> {
    let meta = fs::metadata(root).map_err(|source| SourceError::Io {
        path: root.display().to_string(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(SourceError::NotADirectory {
            path: root.display().to_string(),
        });
    }
    let mut files = Vec::new();
    walk(root, "", &mut files)?;
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<SourceFile>) -> Result<(), SourceError> {
    let io = |source| SourceError::Io {
        path: dir.display().to_string(),
        source,
    };
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_hidden(&name) {
            continue;
        }
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let kind = entry.file_type().map_err(io)?;
        if kind.is_dir() {
            walk(&entry.path(), &rel, out)?;
        } else if kind.is_file() {
            let path = entry.path();
            let read_err = |source| SourceError::Io {
                path: path.display().to_string(),
                source,
            };
            let len = entry.metadata().map_err(read_err)?.len();
            let content = if len > MAX_FILE_BYTES {
                Content::TooLarge(len)
            } else {
                Content::Bytes(fs::read(&path).map_err(read_err)?)
            };
            out.push(SourceFile { path: rel, content });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_files_skips_dot_folders_and_sorts() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("b/c")).unwrap();
        fs::create_dir_all(root.join(".github")).unwrap();
        fs::write(root.join("b/c/x.yaml"), "a: 1").unwrap();
        fs::write(root.join("a.yml"), "b: 2").unwrap();
        fs::write(root.join(".github/ci.yaml"), "c: 3").unwrap();
        fs::write(root.join(".hidden.yaml"), "d: 4").unwrap();
        let files = read_dir(root).unwrap();
        let paths: Vec<_> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["a.yml", "b/c/x.yaml"]);
        assert_eq!(files[0].content, Content::Bytes(b"b: 2".to_vec()));
    }

    #[test]
    fn refuses_a_missing_directory() {
        let err = read_dir(Path::new("/nonexistent/gitmesh")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/gitmesh"), "{err}");
    }
}
