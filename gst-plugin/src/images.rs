//! Still images the elements take by path: the `reference` property of both elements
//! (reference images, `tasks::TaskInputs::references`) and soragensrc's `image` (the still it
//! animates). They are read when the element starts (READY -> PAUSED), so an unreadable file is
//! an error on the bus there, not a silent run without it.

use std::path::PathBuf;

use gst::glib;
use gst::prelude::*;
use soragen_core::video::Video;

/// Separates the paths of the `reference` property: a character gst-launch users can type
/// without quoting rules of GStreamer's own (unlike `gst::Array`'s `<"a", "b">`).
pub const SEPARATOR: char = ';';

/// The `reference` property: one or more PNG paths separated by `;`.
pub fn reference_property() -> glib::ParamSpec {
    glib::ParamSpecString::builder("reference")
        .nick("Reference images")
        .blurb(
            "PNG images of a subject (any size, e.g. on white) that every generated window keeps \
             the look of; several separated by ';', e.g. \"face.png;coat.png\"",
        )
        .mutable_ready()
        .build()
}

/// The paths in a `reference` value (empty parts ignored: "a.png;" is one path).
pub fn parse_paths(value: Option<&str>) -> Vec<PathBuf> {
    value
        .unwrap_or_default()
        .split(SEPARATOR)
        .map(str::trim)
        .filter(|path| !path.is_empty())
        .map(PathBuf::from)
        .collect()
}

/// The property value for `paths` (None for none).
pub fn join_paths(paths: &[PathBuf]) -> Option<String> {
    (!paths.is_empty()).then(|| {
        paths
            .iter()
            .map(|path| path.display().to_string())
            .collect::<Vec<_>>()
            .join(&SEPARATOR.to_string())
    })
}

/// Reads each image as a one-frame clip; the first that cannot be read is the error (for the
/// bus), naming the property and the file.
pub fn read(property: &str, paths: &[PathBuf]) -> Result<Vec<Video>, gst::ErrorMessage> {
    paths
        .iter()
        .map(|path| {
            Video::read_image(path).map_err(|e| {
                gst::error_msg!(
                    gst::ResourceError::OpenRead,
                    ("{property}: cannot read {}: {e}", path.display())
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_on_semicolons_and_join_back() {
        let paths = parse_paths(Some(" a.png; dir/b c.png ;;"));
        assert_eq!(
            paths,
            [PathBuf::from("a.png"), PathBuf::from("dir/b c.png")]
        );
        assert_eq!(join_paths(&paths).as_deref(), Some("a.png;dir/b c.png"));
        assert!(parse_paths(None).is_empty());
        assert_eq!(join_paths(&[]), None);
    }
}
