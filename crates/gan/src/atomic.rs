//! Atomic file writes: write `path.tmp`, flush it to disk, then rename it over `path`.
//!
//! A reader (or a crash halfway through a save) then sees either the old file or the new
//! one, never a half-written mix. The rename is atomic on POSIX file systems when both
//! names are in the same directory, which they are here.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// The temporary name used while writing `path`: the same name with `.tmp` appended.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(".tmp");
    PathBuf::from(name)
}

/// Writes `path` atomically: `fill` writes the contents into a buffered `path.tmp`,
/// which is then synced and renamed over `path`.
///
/// On any error the temporary file is removed and `path` is left untouched. Errors name
/// the file they concern, so `fill` need not.
pub fn write_atomic<F>(path: &Path, fill: F) -> io::Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> io::Result<()>,
{
    let tmp = tmp_path(path);
    let result = write_then_rename(&tmp, path, fill);
    if result.is_err() {
        // Best effort: the original error matters more than a failed clean-up.
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes `bytes` to `path` atomically (see [`write_atomic`]).
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic(path, |w| w.write_all(bytes))
}

fn write_then_rename<F>(tmp: &Path, path: &Path, fill: F) -> io::Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> io::Result<()>,
{
    let file = File::create(tmp).map_err(|e| with_path(tmp, e))?;
    let mut writer = BufWriter::new(file);
    // Errors from `fill` name the file the caller asked for, not its temporary twin.
    fill(&mut writer).map_err(|e| with_path(path, e))?;

    let file = writer
        .into_inner()
        .map_err(|e| with_path(tmp, e.into_error()))?;
    file.sync_all().map_err(|e| with_path(tmp, e))?;
    drop(file);

    fs::rename(tmp, path).map_err(|e| with_path(path, e))
}

/// Wraps `err` so that its message starts with the path it concerns, keeping its kind.
pub fn with_path(path: &Path, err: io::Error) -> io::Error {
    io::Error::new(err.kind(), format!("{}: {err}", path.display()))
}

/// A fresh, empty folder under the system temp dir for one test, unique per process and
/// `name`. The test removes it when it passes; a failing test leaves it for inspection.
#[cfg(test)]
pub(crate) fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gan-test-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_file_and_leaves_no_tmp() {
        let dir = scratch_dir("atomic-ok");
        let path = dir.join("out.txt");

        write_bytes_atomic(&path, b"hello").unwrap();

        assert_eq!(fs::read(&path).unwrap(), b"hello");
        assert!(!tmp_path(&path).exists(), "temporary file left behind");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failed_fill_keeps_old_contents() {
        let dir = scratch_dir("atomic-fail");
        let path = dir.join("out.txt");
        fs::write(&path, b"old").unwrap();

        let err = write_atomic(&path, |w| {
            w.write_all(b"new, half")?;
            Err(io::Error::other("disk on fire"))
        })
        .unwrap_err();

        assert!(err.to_string().contains("disk on fire"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert!(!tmp_path(&path).exists(), "temporary file left behind");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn error_names_the_file() {
        let path = Path::new("/nonexistent-dir-for-gan-tests/out.txt");
        let err = write_bytes_atomic(path, b"x").unwrap_err();
        assert!(
            err.to_string().contains("nonexistent-dir-for-gan-tests"),
            "{err}"
        );
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn tmp_path_appends_suffix() {
        assert_eq!(tmp_path(Path::new("a/b.png")), PathBuf::from("a/b.png.tmp"));
    }
}
