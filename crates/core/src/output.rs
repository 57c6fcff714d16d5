//! Outputs that are never lost: a result (a file or a folder of frames) and its JSON record are
//! written under names unique to this run beside their destination, then committed together.
//!
//! Names beside the destination `OUT` (record `OUT.json`), for one commit `T` (`pid-random`):
//! - `.OUT.T.new`, `.OUT.json.T.new`: the staged result and record, written in full first;
//! - `.OUT.T.commit`: created once both are complete; from then on the commit rolls forward;
//! - `.OUT.T.old`, `.OUT.json.T.old`: the previous output, moved aside, deleted last.
//!
//! Rolling forward moves each destination aside and the staged copy in, then deletes the
//! asides and the marker; every step is idempotent. A run killed at any point leaves the whole
//! old output (no marker yet), or a marker from which [`recover`] (run by every later commit
//! of the same destination, under a lock on its folder) completes the new one. Staged copies
//! of dead runs without a marker are deleted; those of live runs are left alone, so two runs
//! writing one destination never touch each other's files, and the last to commit wins.
//!
//! Only what we wrote is ever deleted: an existing folder is replaced only when its record
//! lists every entry in it, an existing file only when our record lies beside it, and an
//! output that is, holds or lies inside an input is refused.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;

use crate::{Error, Result};

/// The record beside `output`: `clip.y4m` -> `clip.y4m.json`, `frames/` -> `frames.json`.
pub fn record_path(output: &Path) -> PathBuf {
    let mut name = output.file_name().unwrap_or_default().to_os_string();
    name.push(".json");
    output.with_file_name(name)
}

/// The record field listing the files of a folder output, the only ones a later run deletes.
pub const FILES_FIELD: &str = "files";

/// What an output is on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    File,
    Folder,
}

/// A destination checked before any work: where a result and its record will be committed.
pub struct Destination {
    path: PathBuf,
    record: PathBuf,
    shape: Shape,
    token: String,
    committed: bool,
}

fn failed(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    Error::Output(format!("cannot {what} {}: {e}", path.display()))
}

/// `path` resolved through links, also when its last component does not exist yet.
fn resolved(path: &Path) -> Option<PathBuf> {
    if let Ok(path) = path.canonicalize() {
        return Some(path);
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.canonicalize().ok()?,
        _ => std::env::current_dir().ok()?,
    };
    Some(parent.join(path.file_name()?))
}

fn overlaps(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `.NAME.TOKEN.SUFFIX` beside `path`.
fn sibling(path: &Path, token: &str, suffix: &str) -> PathBuf {
    path.with_file_name(format!(".{}.{token}.{suffix}", file_name(path)))
}

/// A token unique to this commit: two runs, or two commits of one run, never share one. (Names
/// are made here, not by `tempfile`: recovery after a crash reads the writer's pid from them.)
fn new_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let unique = rand::random::<u32>() ^ (COUNTER.fetch_add(1, Ordering::Relaxed) as u32);
    format!("{}-{unique:08x}", std::process::id())
}

/// The token and suffix of `name` when it is `.BASE.PID-HEX.SUFFIX` for `base`.
fn parse_sibling<'a>(name: &'a str, base: &str) -> Option<(&'a str, u32, &'a str)> {
    let rest = name
        .strip_prefix('.')?
        .strip_prefix(base)?
        .strip_prefix('.')?;
    let (token, suffix) = rest.split_once('.')?;
    let (pid, hex) = token.split_once('-')?;
    let pid = pid.parse().ok()?;
    (hex.len() == 8 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some((token, pid, suffix))
}

/// Whether process `pid` may still be running: unknown counts as running, so that nothing a
/// live run is writing is ever deleted.
fn may_be_running(pid: u32) -> bool {
    pid == std::process::id()
        || !Path::new("/proc/self").exists()
        || Path::new("/proc").join(pid.to_string()).exists()
}

fn remove(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// Flushes a folder's entries (renames, creations) to disk; best effort where unsupported.
fn sync_dir(dir: &Path) {
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
}

/// Flushes a staged result to disk before it is committed.
fn sync_tree(path: &Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            sync_tree(&entry?.path())?;
        }
        sync_dir(path);
        Ok(())
    } else {
        File::open(path)?.sync_all()
    }
}

/// An exclusive lock on the folder holding `path` while commits and recovery run there (where
/// the platform cannot lock folders, commits still never share names).
fn lock_folder(path: &Path) -> Option<File> {
    let folder = File::open(parent(path)).ok()?;
    folder.lock().ok()?;
    Some(folder)
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Tests that kill a run during a commit set this to a pause in milliseconds between its steps,
/// so that kills land inside every step.
pub const STEP_DELAY_ENV: &str = "SORAGEN_TEST_COMMIT_STEP_DELAY_MS";

fn pause_between_steps() {
    if let Some(ms) = std::env::var(STEP_DELAY_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// Completes commit `token` of `output`: moves each destination aside and its staged copy in,
/// then deletes the asides and the marker. Safe to repeat after a crash at any step.
fn roll_forward(output: &Path, record: &Path, token: &str) -> std::io::Result<()> {
    for piece in [output, record] {
        let (new, old) = (sibling(piece, token, "new"), sibling(piece, token, "old"));
        if exists(&new) {
            if exists(piece) && !exists(&old) {
                std::fs::rename(piece, &old)?;
                pause_between_steps();
            }
            std::fs::rename(&new, piece)?;
            pause_between_steps();
        }
    }
    sync_dir(parent(output));
    for piece in [output, record] {
        remove(&sibling(piece, token, "old"))?;
        pause_between_steps();
    }
    remove(&sibling(output, token, "commit"))?;
    sync_dir(parent(output));
    Ok(())
}

/// Finishes commits of `output` that a killed run left half done, and deletes what dead runs
/// staged without committing. Call with the folder locked.
fn recover_locked(output: &Path, record: &Path) -> std::io::Result<()> {
    let (base, record_base) = (file_name(output), file_name(record));
    let names: Vec<String> = std::fs::read_dir(parent(output))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    for name in &names {
        if let Some((token, _, "commit")) = parse_sibling(name, &base) {
            roll_forward(output, record, token)?;
        }
    }
    for name in &names {
        for (piece, piece_base) in [(output, &base), (record, &record_base)] {
            let Some((_, pid, suffix)) = parse_sibling(name, piece_base) else {
                continue;
            };
            if may_be_running(pid) {
                continue;
            }
            let path = parent(output).join(name);
            match suffix {
                "new" => remove(&path)?,
                // An aside without its marker: put it back if its place is empty.
                "old" if exists(&path) && !exists(piece) => std::fs::rename(&path, piece)?,
                _ => {}
            }
        }
    }
    Ok(())
}

/// Completes or cleans up after runs that were killed while writing `output` (see the module
/// documentation). Every [`Destination::prepare`] does this first.
pub fn recover(output: &Path) -> Result<()> {
    let record = record_path(output);
    let _lock = lock_folder(output);
    recover_locked(output, &record)
        .map_err(|e| failed(output, "recover an interrupted write of", e))
}

/// Names in a record's `files` list.
fn listed_files(record: &Value) -> Option<Vec<String>> {
    record
        .get(FILES_FIELD)?
        .as_array()?
        .iter()
        .map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// The record at `path` if it is one of ours (a JSON object naming its task), read bounded.
fn read_record(path: &Path) -> Option<Value> {
    let bytes = soragen_models::files::read_bounded(path, 64 << 20).ok()?;
    let record: Value = serde_json::from_slice(&bytes).ok()?;
    record.get("task")?.as_str()?;
    Some(record)
}

impl Destination {
    /// Checks a destination before any work is done: recovers an interrupted earlier write,
    /// refuses an output that is, holds or lies inside one of `inputs`, and one whose existing
    /// folder or record holds anything we did not write; then claims a staging name (so an
    /// unwritable folder fails now, not after the compute).
    pub fn prepare(path: &Path, shape: Shape, inputs: &[&Path]) -> Result<Self> {
        if path.file_name().is_none() {
            return Err(Error::Output(format!(
                "{}: name an output file or folder",
                path.display()
            )));
        }
        let record = record_path(path);
        std::fs::create_dir_all(parent(path)).map_err(|e| failed(parent(path), "create", e))?;
        recover(path)?;
        for input in inputs {
            let Some(input_at) = input.canonicalize().ok() else {
                continue;
            };
            for output in [path, &record] {
                if resolved(output).is_some_and(|o| overlaps(&o, &input_at)) {
                    return Err(Error::Output(format!(
                        "{} would overwrite the input {}: choose another output",
                        output.display(),
                        input.display()
                    )));
                }
            }
        }
        let existing_record = match std::fs::symlink_metadata(&record) {
            Ok(meta) if meta.is_file() => Some(read_record(&record).ok_or_else(|| {
                Error::Output(format!(
                    "{} exists and is not a soragen record: move it away",
                    record.display()
                ))
            })?),
            Ok(_) => {
                return Err(Error::Output(format!(
                    "{} exists and is not a file: move it away",
                    record.display()
                )));
            }
            Err(_) => None,
        };
        check_replaceable(path, shape, existing_record.as_ref())?;
        let destination = Self {
            path: path.to_path_buf(),
            record,
            shape,
            token: new_token(),
            committed: false,
        };
        let staged = destination.staged();
        let claimed = match shape {
            Shape::Folder => std::fs::create_dir(&staged),
            Shape::File => File::create_new(&staged).map(drop),
        };
        claimed.map_err(|e| failed(path, "write", e))?;
        Ok(destination)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the result is written before it is committed: an empty folder or file that
    /// [`Self::prepare`] created.
    pub fn staged(&self) -> PathBuf {
        sibling(&self.path, &self.token, "new")
    }

    /// Commits the staged result with `record` (a JSON object; for a folder its `files` are
    /// filled in). `begin` runs just before the point of no return: an error from it (a stop
    /// request) abandons the commit, leaving the previous output as it was.
    pub fn commit(mut self, mut record: Value, begin: impl FnOnce() -> Result<()>) -> Result<()> {
        let staged = self.staged();
        if self.shape == Shape::Folder {
            let mut files: Vec<String> = std::fs::read_dir(&staged)
                .map_err(|e| failed(&self.path, "write", e))?
                .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect();
            files.sort();
            record[FILES_FIELD] = Value::from(files);
        }
        let text = serde_json::to_string_pretty(&record)
            .map_err(|e| failed(&self.record, "write", e))?
            + "\n";
        let staged_record = sibling(&self.record, &self.token, "new");
        let write_record = || -> std::io::Result<()> {
            let mut file = File::create_new(&staged_record)?;
            std::io::Write::write_all(&mut file, text.as_bytes())?;
            file.sync_all()
        };
        write_record().map_err(|e| failed(&self.record, "write", e))?;
        sync_tree(&staged).map_err(|e| failed(&self.path, "write", e))?;
        pause_between_steps();
        begin()?;
        let _lock = lock_folder(&self.path);
        // Another run may have committed here since `prepare`: check its output again.
        let existing = read_record(&self.record);
        check_replaceable(&self.path, self.shape, existing.as_ref())?;
        let marker = sibling(&self.path, &self.token, "commit");
        pause_between_steps();
        File::create_new(&marker).map_err(|e| failed(&self.path, "write", e))?;
        sync_dir(parent(&self.path));
        pause_between_steps();
        self.committed = true;
        roll_forward(&self.path, &self.record, &self.token)
            .map_err(|e| failed(&self.path, "write", e))
    }
}

impl Drop for Destination {
    /// An uncommitted destination leaves nothing behind.
    fn drop(&mut self) {
        if !self.committed {
            let _ = remove(&self.staged());
            let _ = remove(&sibling(&self.record, &self.token, "new"));
        }
    }
}

/// Refuses to replace anything at `path` that we did not write: a folder must hold only the
/// files its record lists; a file needs our record beside it.
fn check_replaceable(path: &Path, shape: Shape, record: Option<&Value>) -> Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    let refuse = |why: String| {
        Err(Error::Output(format!(
            "{} exists and {why}",
            path.display()
        )))
    };
    match shape {
        _ if meta.file_type().is_symlink() => {
            refuse("is a symbolic link: give the real path".into())
        }
        Shape::File if meta.is_file() && record.is_some() => Ok(()),
        Shape::File if meta.is_file() => refuse(format!(
            "soragen did not write it (no record {} beside it): move it away or choose another output",
            file_name(&record_path(path))
        )),
        Shape::File => refuse("is not a file: choose another output".into()),
        Shape::Folder if !meta.is_dir() => refuse("is not a folder: choose another output".into()),
        Shape::Folder => {
            let ours = record.and_then(listed_files).unwrap_or_default();
            let entries = std::fs::read_dir(path).map_err(|e| failed(path, "read", e))?;
            for entry in entries {
                let entry = entry.map_err(|e| failed(path, "read", e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let regular = entry.file_type().is_ok_and(|t| t.is_file());
                if !regular || !ours.contains(&name) {
                    return refuse(format!(
                        "holds other files ({name}) than soragen wrote there: choose a new output folder"
                    ));
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("soragen-output-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn write_folder(destination: &Destination, frames: &[&str]) {
        for name in frames {
            std::fs::write(destination.staged().join(name), name).unwrap();
        }
    }

    fn record() -> Value {
        serde_json::json!({ "task": "test" })
    }

    #[test]
    fn a_folder_is_replaced_whole_with_its_record_and_nothing_is_left_beside_it() {
        let dir = scratch("replace");
        let out = dir.join("out");
        let first = Destination::prepare(&out, Shape::Folder, &[]).unwrap();
        write_folder(&first, &["00000.png", "00001.png", "00002.png"]);
        first.commit(record(), || Ok(())).unwrap();
        let second = Destination::prepare(&out, Shape::Folder, &[]).unwrap();
        write_folder(&second, &["00000.png"]);
        second.commit(record(), || Ok(())).unwrap();
        assert_eq!(names(&out), ["00000.png"]);
        assert_eq!(names(&dir), ["out", "out.json"]);
        let written: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("out.json")).unwrap()).unwrap();
        assert_eq!(written[FILES_FIELD], serde_json::json!(["00000.png"]));
    }

    #[test]
    fn only_files_the_record_lists_are_ever_replaced() {
        let dir = scratch("theirs");
        // An ffmpeg-named sequence we did not write, and a folder named like a frame.
        let out = dir.join("out");
        std::fs::create_dir_all(out.join("00007.png")).unwrap();
        std::fs::write(out.join("00007.png/mine.txt"), "mine").unwrap();
        let error = Destination::prepare(&out, Shape::Folder, &[])
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("holds other files (00007.png)"), "{error}");
        let sequence = dir.join("sequence");
        std::fs::create_dir_all(&sequence).unwrap();
        std::fs::write(sequence.join("00000.png"), "theirs").unwrap();
        assert!(Destination::prepare(&sequence, Shape::Folder, &[]).is_err());
        assert_eq!(
            std::fs::read_to_string(sequence.join("00000.png")).unwrap(),
            "theirs"
        );
        // A record that is not ours, or a folder where the record goes, is refused too.
        std::fs::create_dir_all(dir.join("late.y4m.json")).unwrap();
        let error = Destination::prepare(&dir.join("late.y4m"), Shape::File, &[])
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.contains("late.y4m.json exists and is not a file"),
            "{error}"
        );
        std::fs::write(dir.join("notes.json"), "{\"mine\": 1}").unwrap();
        assert!(Destination::prepare(&dir.join("notes"), Shape::File, &[]).is_err());
        // A file without our record beside it is the user's, even where a file may go.
        std::fs::write(dir.join("clip.mp4"), "theirs").unwrap();
        let error = Destination::prepare(&dir.join("clip.mp4"), Shape::File, &[])
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.contains("clip.mp4 exists and soragen did not write it (no record clip.mp4.json"),
            "{error}"
        );
        assert_eq!(
            names(&dir),
            ["clip.mp4", "late.y4m.json", "notes.json", "out", "sequence"]
        );
    }

    #[test]
    fn outputs_that_are_hold_or_lie_inside_an_input_are_refused() {
        let dir = scratch("inputs");
        let input = dir.join("shot");
        std::fs::create_dir_all(&input).unwrap();
        for output in [
            input.clone(),
            input.join("inner"),
            dir.clone(),
            dir.join("shot/../shot"),
        ] {
            let error = Destination::prepare(&output, Shape::Folder, &[&input])
                .err()
                .unwrap()
                .to_string();
            assert!(error.contains("would overwrite the input"), "{error}");
        }
        // The record beside the output may not be an input either.
        std::fs::write(dir.join("clip.json"), "{}").unwrap();
        let error = Destination::prepare(&dir.join("clip"), Shape::File, &[&dir.join("clip.json")])
            .err()
            .unwrap();
        assert!(
            error.to_string().contains("would overwrite the input"),
            "{error}"
        );
    }

    #[test]
    fn a_stop_before_the_commit_keeps_the_old_output_and_cleans_up() {
        let dir = scratch("stop");
        let out = dir.join("out.y4m");
        std::fs::write(&out, "old").unwrap();
        std::fs::write(record_path(&out), record().to_string()).unwrap();
        let destination = Destination::prepare(&out, Shape::File, &[]).unwrap();
        std::fs::write(destination.staged(), "new").unwrap();
        assert!(matches!(
            destination.commit(record(), || Err(Error::Cancelled)),
            Err(Error::Cancelled)
        ));
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "old");
        assert_eq!(names(&dir), ["out.y4m", "out.y4m.json"]);
    }

    #[test]
    fn recovery_rolls_a_marked_commit_forward_and_deletes_what_dead_runs_staged() {
        let dir = scratch("recover");
        let out = dir.join("out");
        let record = record_path(&out);
        // A dead run (pid 0 is never a user process) moved the old folder aside, then died.
        let token = "0-0000abcd";
        std::fs::create_dir_all(sibling(&out, token, "old")).unwrap();
        std::fs::write(sibling(&out, token, "old").join("00000.png"), "old").unwrap();
        std::fs::create_dir_all(sibling(&out, token, "new")).unwrap();
        std::fs::write(sibling(&out, token, "new").join("00000.png"), "new").unwrap();
        std::fs::write(sibling(&record, token, "new"), "{\"task\": \"new\"}").unwrap();
        std::fs::write(&record, "{\"task\": \"old\"}").unwrap();
        std::fs::write(sibling(&out, token, "commit"), "").unwrap();
        // Another dead run staged without committing.
        std::fs::create_dir_all(sibling(&out, "0-0000beef", "new")).unwrap();
        recover(&out).unwrap();
        assert_eq!(names(&dir), ["out", "out.json"]);
        assert_eq!(
            std::fs::read_to_string(out.join("00000.png")).unwrap(),
            "new"
        );
        assert_eq!(
            std::fs::read_to_string(&record).unwrap(),
            "{\"task\": \"new\"}"
        );
        // Without a marker, an aside whose place is empty is put back.
        std::fs::rename(&out, sibling(&out, token, "old")).unwrap();
        recover(&out).unwrap();
        assert_eq!(names(&dir), ["out", "out.json"]);
    }

    #[test]
    fn two_destinations_of_one_output_never_share_a_staging_name() {
        let dir = scratch("twice");
        let out = dir.join("out.y4m");
        let a = Destination::prepare(&out, Shape::File, &[]).unwrap();
        let b = Destination::prepare(&out, Shape::File, &[]).unwrap();
        assert_ne!(a.staged(), b.staged());
        std::fs::write(a.staged(), "a").unwrap();
        std::fs::write(b.staged(), "b").unwrap();
        b.commit(record(), || Ok(())).unwrap();
        a.commit(record(), || Ok(())).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "a");
        assert_eq!(names(&dir), ["out.y4m", "out.y4m.json"]);
    }
}
