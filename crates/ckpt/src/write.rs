//! Writing tempo checkpoints, and crash-safe file replacement.

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::format::{Encoder, CHECKSUM_KEY, FORMAT_VERSION, MAGIC, MAX_HEADER};
use crate::io::write_hashed;
use tempo_tensor::TensorData;

use crate::{CkptError, DTypeFiles, Object};

/// Writes `object` as a tempo checkpoint at `path`, atomically (see [`write_atomic`]).
pub fn save_object(path: impl AsRef<Path>, object: &Object) -> Result<(), CkptError> {
    write_atomic(path, |file| {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        write_tempo(&mut w, object)?;
        w.flush()?;
        Ok(())
    })
}

/// Writes `object` as a tempo checkpoint to `w` (which must be positioned at the start
/// of the checkpoint; it is left at its end).
///
/// One pass over the tensor data: the CRC-32 is computed while the bytes are written
/// (on a second thread for large tensors, which go to `w` in one call each, so that a
/// `BufWriter` passes them through without copying), then patched into the header.
pub fn write_tempo<W: Write + Seek>(w: &mut W, object: &Object) -> Result<(), CkptError> {
    write_tempo_with(w, object, Vec::new())
}

/// [`write_tempo`], with the tree's tensors replaced in traversal order by
/// `substitutes` (the tree holds placeholders for them).
pub(crate) fn write_tempo_with<W: Write + Seek>(
    w: &mut W,
    object: &Object,
    substitutes: Vec<&TensorData>,
) -> Result<(), CkptError> {
    let mut enc = Encoder::new(substitutes);
    let content = enc.encode(object, "", 0)?;
    let content = serde_json::to_string(&content)
        .map_err(|e| CkptError::malformed("content", "JSON", e.to_string()))?;
    if !enc.substitutes_used() {
        return Err(CkptError::malformed(
            "training state",
            "one placeholder per tensor",
            "fewer placeholders",
        ));
    }
    let mut tensors = enc.tensors;
    // Wider dtypes first, so that every tensor starts at a multiple of its element size.
    tensors.sort_by_key(|t| std::cmp::Reverse(t.tensor.dtype().size()));

    let quote = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut header = Vec::with_capacity(content.len() + 128 + 96 * tensors.len());
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(FORMAT_VERSION.to_string().as_bytes());
    header.extend_from_slice(b"\",");
    let checksum_at = header.len() + CHECKSUM_KEY.len();
    header.extend_from_slice(CHECKSUM_KEY);
    header.extend_from_slice(b"00000000\",\"content\":");
    header.extend_from_slice(quote(&content).as_bytes());
    header.push(b'}');
    let mut offset = 0u64;
    for t in &tensors {
        let end = offset + t.tensor.nbytes() as u64;
        let shape: Vec<String> = t.tensor.shape().iter().map(|d| d.to_string()).collect();
        header.extend_from_slice(
            format!(
                ",{}:{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{offset},{end}]}}",
                quote(&t.name),
                t.tensor.dtype().safetensors_name(),
                shape.join(",")
            )
            .as_bytes(),
        );
        offset = end;
    }
    header.push(b'}');
    // Pad with spaces so that the data starts at a multiple of 8, as safetensors does.
    while (header.len() + 8) % 8 != 0 {
        header.push(b' ');
    }
    if header.len() as u64 > MAX_HEADER {
        return Err(CkptError::TooLarge {
            what: "the checkpoint header",
            found: header.len() as u64,
            limit: MAX_HEADER,
        });
    }

    let start = w.stream_position()?;
    let mut hasher = crc32fast::Hasher::new();
    let len = (header.len() as u64).to_le_bytes();
    hasher.update(&len);
    hasher.update(&header);
    w.write_all(&len)?;
    w.write_all(&header)?;
    for t in &tensors {
        write_hashed(w, &t.tensor.le_bytes(), &mut hasher)?;
    }
    let crc = format!("{:08x}", hasher.finalize());
    let end = w.stream_position()?;
    w.seek(SeekFrom::Start(start + 8 + checksum_at as u64))?;
    w.write_all(crc.as_bytes())?;
    w.seek(SeekFrom::Start(end))?;
    Ok(())
}

/// [`write_tempo`] into a new byte vector.
pub fn write_tempo_bytes(object: &Object) -> Result<Vec<u8>, CkptError> {
    let mut out = std::io::Cursor::new(Vec::new());
    write_tempo(&mut out, object)?;
    Ok(out.into_inner())
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `path` atomically: `write` fills a new temporary file in the same directory,
/// which is flushed to disk (`fsync`), renamed over `path`, and the directory is
/// flushed too. A crash at any point leaves either the old file or the new one, never
/// a torn one; on error the temporary file is removed and `path` is untouched.
///
/// While `write` runs, a second thread flushes the bytes already written each time
/// 32 MiB more are there, so that the disk works while the rest is being written and
/// the final `fsync` has only the tail left.
///
/// On Unix, a large file that the rename replaces is released (its cached pages and
/// disk blocks freed) by a background thread once this returns, instead of inside the
/// rename: for a checkpoint of hundreds of MB that takes tens of milliseconds.
pub fn write_atomic(
    path: impl AsRef<Path>,
    write: impl FnOnce(&mut File) -> Result<(), CkptError>,
) -> Result<(), CkptError> {
    write_atomic_checked(path.as_ref(), true, write, |_| Ok(()))
}

/// [`write_atomic`], with `verify` run on the finished, fsync'd temporary file before
/// it takes `path`'s name, and, unless `replace`, an error if `path` exists (checked
/// atomically where the file system has hard links). On any error, `verify`'s included,
/// the temporary file is removed and `path` is untouched.
pub(crate) fn write_atomic_checked(
    path: &Path,
    replace: bool,
    write: impl FnOnce(&mut File) -> Result<(), CkptError>,
    verify: impl FnOnce(&Path) -> Result<(), CkptError>,
) -> Result<(), CkptError> {
    let exists = |path: &Path| CkptError::Exists {
        path: path.to_path_buf(),
    };
    if !replace && fs::symlink_metadata(path).is_ok() {
        return Err(exists(path));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| CkptError::InvalidConfig {
        what: "checkpoint path",
        detail: format!("`{}` has no file name", path.display()),
    })?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .open(&tmp)
            .map_err(CkptError::io(&tmp))?;
        write_behind(&mut file, &tmp, WRITE_BEHIND_STEP, write)?;
        file.sync_all().map_err(CkptError::io(&tmp))?;
        drop(file);
        verify(&tmp)?;
        if !replace {
            // A hard link fails if `path` exists, atomically; where links are not
            // supported, check and rename.
            match fs::hard_link(&tmp, path) {
                Ok(()) => {
                    fs::remove_file(&tmp).map_err(CkptError::io(&tmp))?;
                    return sync_dir(&dir);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(exists(path))
                }
                Err(_) if fs::symlink_metadata(path).is_ok() => return Err(exists(path)),
                Err(_) => {}
            }
        }
        let replaced = hold(path);
        fs::rename(&tmp, path).map_err(CkptError::io(path))?;
        let synced = sync_dir(&dir);
        release_in_background(replaced);
        synced
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// While a checkpoint is written, the bytes already written are flushed to disk each
/// time this many more have been written.
const WRITE_BEHIND_STEP: u64 = 32 << 20;

/// Runs `write` on `file` while a second thread flushes what is already written to
/// disk (`fdatasync`) each time `step` more bytes are there, so that the disk works
/// while the rest is still being written and the final `fsync` has only the tail
/// left. An error of those flushes fails the write, as the final `fsync`'s would
/// (the kernel may report a write-back error only once per open file).
fn write_behind(
    file: &mut File,
    tmp: &Path,
    step: u64,
    write: impl FnOnce(&mut File) -> Result<(), CkptError>,
) -> Result<(), CkptError> {
    let Ok(flusher) = file.try_clone() else {
        return write(file);
    };
    let stop = AtomicBool::new(false);
    let (written, flushed) = std::thread::scope(|s| {
        let stop = &stop;
        let thread = std::thread::Builder::new().spawn_scoped(s, move || {
            let mut flushed = 0u64;
            while !stop.load(Ordering::Acquire) {
                let len = flusher.metadata()?.len();
                if len >= flushed.saturating_add(step) {
                    flusher.sync_data()?;
                    flushed = len;
                } else {
                    std::thread::park_timeout(std::time::Duration::from_millis(1));
                }
            }
            Ok(())
        });
        // Stops the flusher when `write` returns, and also if it panics (the scope
        // waits for the flusher before the panic goes on).
        let stopper = Stopper {
            stop,
            thread: thread.as_ref().ok().map(|t| t.thread().clone()),
        };
        let written = write(file);
        drop(stopper);
        // Without a second thread, the final fsync does all the flushing.
        let flushed = thread.map_or(Ok(()), |t| {
            t.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
        });
        (written, flushed)
    });
    written?;
    flushed.map_err(CkptError::io(tmp))
}

/// Tells the flusher of [`write_behind`] to stop, when dropped.
struct Stopper<'a> {
    stop: &'a AtomicBool,
    thread: Option<std::thread::Thread>,
}

impl Drop for Stopper<'_> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = &self.thread {
            t.unpark();
        }
    }
}

/// Files at least this large are released by a background thread when their name is
/// replaced or removed.
const RELEASE_LATER_MIN: u64 = 16 << 20;

/// A handle on the file at `path` if it is a large regular file. While the handle is
/// open, replacing or removing the name only unlinks it: the kernel frees the file's
/// pages and blocks when the last handle is closed, which [`release_in_background`]
/// does off the caller's path.
#[cfg(unix)]
fn hold(path: &Path) -> Option<File> {
    // Only regular files: opening a FIFO, say, could block.
    let meta = fs::symlink_metadata(path).ok()?;
    if !meta.file_type().is_file() || meta.len() < RELEASE_LATER_MIN {
        return None;
    }
    File::open(path).ok()
}

/// No release is deferred where an open file cannot be replaced or removed.
#[cfg(not(unix))]
fn hold(_path: &Path) -> Option<File> {
    None
}

/// Closes `held` on a background thread (or here, if no thread can be started).
fn release_in_background(held: Option<File>) {
    if let Some(file) = held {
        let _ = std::thread::Builder::new()
            .name("tempo-ckpt-release".into())
            .spawn(move || drop(file));
    }
}

/// Removes the file at `path`; a large one is released in the background (see
/// [`write_atomic`]).
pub(crate) fn remove_file(path: &Path) -> Result<(), CkptError> {
    let held = hold(path);
    fs::remove_file(path).map_err(CkptError::io(path))?;
    release_in_background(held);
    Ok(())
}

/// Flushes a directory's entries (the rename) to disk. Not possible on Windows, where
/// the rename itself is durable once `MoveFileEx` returns.
fn sync_dir(dir: &Path) -> Result<(), CkptError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(CkptError::io(dir))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ckpt.bin");
        write_atomic(&path, |f| Ok(f.write_all(b"old")?)).unwrap();
        let err = write_atomic(&path, |f| {
            f.write_all(b"half of the new")?;
            Err(CkptError::InvalidConfig {
                what: "test",
                detail: "simulated crash".into(),
            })
        });
        assert!(err.is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        write_atomic(&path, |f| Ok(f.write_all(b"new")?)).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
    }

    #[test]
    fn a_failed_verification_or_an_existing_file_leaves_everything_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.pt");
        let names = || -> Vec<_> {
            fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect()
        };
        let refuse = |tmp: &Path| {
            // The verifier sees the complete temporary file, not yet under its name.
            assert_eq!(fs::read(tmp).unwrap(), b"new");
            Err(CkptError::NotLossless {
                path: tmp.to_path_buf(),
                detail: "simulated".into(),
            })
        };
        // Nothing there: a refused file is not left behind.
        let err = write_atomic_checked(&path, true, |f| Ok(f.write_all(b"new")?), refuse);
        assert!(matches!(err, Err(CkptError::NotLossless { .. })));
        assert!(names().is_empty(), "{:?}", names());
        // An existing file survives a refused replacement ...
        fs::write(&path, b"old").unwrap();
        let err = write_atomic_checked(&path, true, |f| Ok(f.write_all(b"new")?), refuse);
        assert!(matches!(err, Err(CkptError::NotLossless { .. })));
        assert_eq!(fs::read(&path).unwrap(), b"old");
        // ... and is not replaced without `replace`, even by a verified file.
        let err = write_atomic_checked(&path, false, |f| Ok(f.write_all(b"new")?), |_| Ok(()));
        assert!(matches!(err, Err(CkptError::Exists { .. })), "{err:?}");
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(names().len(), 1, "{:?}", names());
        // A verified file takes a free name, or replaces when asked to.
        let other = dir.path().join("new.pt");
        write_atomic_checked(&other, false, |f| Ok(f.write_all(b"new")?), |_| Ok(())).unwrap();
        write_atomic_checked(&path, true, |f| Ok(f.write_all(b"new")?), |_| Ok(())).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(fs::read(&other).unwrap(), b"new");
        assert_eq!(names().len(), 2, "{:?}", names());
    }

    #[test]
    fn flushing_while_writing_keeps_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flushed.bin");
        let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut file = File::create(&path).unwrap();
        // Flushes every 4 KiB while the bytes go out in small writes, for about 20 ms.
        write_behind(&mut file, &path, 4096, |f| {
            for chunk in bytes.chunks(1000) {
                f.write_all(chunk)?;
                std::thread::sleep(std::time::Duration::from_micros(100));
            }
            Ok(())
        })
        .unwrap();
        drop(file);
        assert!(fs::read(&path).unwrap() == bytes);
        let mut file = File::create(&path).unwrap();
        let failed = write_behind(&mut file, &path, 4096, |_| {
            Err(CkptError::InvalidConfig {
                what: "test",
                detail: "simulated failure".into(),
            })
        });
        assert!(matches!(failed, Err(CkptError::InvalidConfig { .. })));
        // A panicking writer stops the flusher too: the panic comes out, no hang.
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            write_behind(&mut file, &path, 4096, |_| panic!("writer panicked"))
        }));
        assert!(panicked.is_err());
    }

    #[test]
    fn large_files_are_replaced_and_removed_like_small_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.bin");
        let big = vec![7u8; RELEASE_LATER_MIN as usize];
        write_atomic(&path, |f| Ok(f.write_all(&big)?)).unwrap();
        // Held open while the name is replaced; a reader of the old file keeps it.
        let mut reader = File::open(&path).unwrap();
        write_atomic(&path, |f| Ok(f.write_all(b"small")?)).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"small");
        let mut old = Vec::new();
        std::io::Read::read_to_end(&mut reader, &mut old).unwrap();
        assert!(old == big);
        write_atomic(&path, |f| Ok(f.write_all(&big)?)).unwrap();
        remove_file(&path).unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(matches!(remove_file(&path), Err(CkptError::Io { .. })));
    }
}
