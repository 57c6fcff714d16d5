//! Outputs: checked before any work, written under a staging name, committed with their record.

use std::path::Path;

use soragen_core::output::{Destination, Shape};
use soragen_core::vace::Observer;
use soragen_core::video::{Sink, Video, write_frames_dir, write_y4m};
use soragen_core::{Error, Result};

use crate::container;
use crate::progress::Terminal;

/// Frames as `output` asks: a video file, a `.y4m` file (8-bit), else a folder of images at the
/// clip's depth (PNG, or OpenEXR for half and float clips).
pub(crate) fn write_frames(video: &Video, output: &Path, staging: &Path) -> Result<()> {
    if container::is_container(output) {
        return container::write(video, output, staging);
    }
    match Sink::for_path(output) {
        Sink::Y4m(_) => write_y4m(video, staging),
        _ => write_frames_dir(video, staging),
    }
}

/// Task outputs are frames: refuses an output path that asks for anything else.
pub(crate) fn frames_only(output: &Path) -> Result<()> {
    match Sink::for_path(output) {
        Sink::Safetensors(_) => Err(Error::Output(format!(
            "{}: write frames as a folder of images or a .y4m file",
            output.display()
        ))),
        _ => Ok(()),
    }
}

/// Checks the output before any work is done (see `soragen_core::output`): it must not touch
/// `inputs`, and may replace only what soragen wrote.
pub(crate) fn prepare_output(output: &Path, inputs: &[&Path]) -> Result<Destination> {
    let folder =
        matches!(Sink::for_path(output), Sink::Folder(_)) && !container::is_container(output);
    Destination::prepare(
        output,
        if folder { Shape::Folder } else { Shape::File },
        inputs,
    )
}

/// Writes the output under its staging name with `write`, then commits it with its record,
/// unless a stop was requested first. A stop during the commit lets it finish, then ends the
/// run as stopped.
pub(crate) fn commit_output(
    destination: Destination,
    record: serde_json::Value,
    terminal: &Terminal,
    write: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    if terminal.cancelled() {
        return Err(Error::Cancelled);
    }
    write(&destination.staged())?;
    let output = destination.path().to_path_buf();
    destination.commit(record, || terminal.begin_commit())?;
    if terminal.stopped_while_committing() {
        eprintln!(
            "soragen: stopped, after writing {} in full",
            output.display()
        );
        std::process::exit(130);
    }
    Ok(())
}
