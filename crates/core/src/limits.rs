//! Limits on every size, count and number a request or a media file declares, checked before
//! anything is allocated for it: a 100-byte file declaring 100000x100000 frames, or one flag
//! such as `--frames 18446744073709551615`, must be one clear error, never a panic, an abort on
//! a failed allocation or hours of work. Sizes are checked against fixed ranges and their byte
//! products (with checked arithmetic) against the memory budget: the least of the machine's
//! available memory, this process's cgroup headroom and `SORAGEN_MAX_MEMORY`; every surface
//! (CLI, OpenFX, GStreamer) checks against this one budget, with the model's need estimated by
//! [`crate::memory`].

use std::path::Path;

use crate::{Error, Result};

/// A value outside the range a [`Limit`] allows, in one line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{name} {value} is out of range: it must be from {min} to {max}")]
pub struct OutOfRange {
    pub name: &'static str,
    pub value: String,
    pub min: String,
    pub max: String,
}

/// A closed range a value must lie in, with the name errors give it.
#[derive(Clone, Copy, Debug)]
pub struct Limit<T> {
    pub name: &'static str,
    pub min: T,
    pub max: T,
}

impl<T: PartialOrd + std::fmt::Debug + Copy> Limit<T> {
    /// `value` if it lies in the range (a NaN never does), else a one-line error.
    pub fn check(&self, value: T) -> std::result::Result<T, OutOfRange> {
        if value >= self.min && value <= self.max {
            Ok(value)
        } else {
            Err(OutOfRange {
                name: self.name,
                value: format!("{value:?}"),
                min: format!("{:?}", self.min),
                max: format!("{:?}", self.max),
            })
        }
    }

    /// [`Self::check`] as a request error.
    pub fn request(&self, value: T) -> Result<T> {
        Ok(self.check(value)?)
    }
}

/// Frame width and height (16K).
pub const SIDE: Limit<usize> = Limit {
    name: "width/height",
    min: 1,
    max: 16384,
};
/// Frames of a clip, read or made (over an hour at 24 fps).
pub const FRAMES: Limit<usize> = Limit {
    name: "frame count",
    min: 1,
    max: 100_000,
};
/// Frames per second a source may state.
pub const FPS: Limit<f64> = Limit {
    name: "frame rate",
    min: 0.1,
    max: 1000.0,
};
pub const STEPS: Limit<usize> = Limit {
    name: "steps",
    min: 1,
    max: 10_000,
};
pub const GUIDANCE: Limit<f64> = Limit {
    name: "guidance",
    min: 0.0,
    max: 100.0,
};
pub const FLOW_SHIFT: Limit<f64> = Limit {
    name: "flow shift",
    min: 0.01,
    max: 100.0,
};
/// Pixels of the model's working size (a 1080p frame).
pub const WORKING_PIXELS: Limit<usize> = Limit {
    name: "working pixels",
    min: 1,
    max: 1920 * 1088,
};
pub const WINDOW_FRAMES: Limit<usize> = Limit {
    name: "window frames",
    min: 1,
    max: 1001,
};
pub const CONTEXT_FRAMES: Limit<usize> = Limit {
    name: "context frames",
    min: 0,
    max: 500,
};
/// Mask dilation and feathering, in pixels.
pub const MASK_PIXELS: Limit<usize> = Limit {
    name: "mask dilation/feather",
    min: 0,
    max: 1024,
};

/// The product of `factors` (a byte count), or an error when it overflows.
pub fn bytes(what: &str, factors: &[usize]) -> Result<u64> {
    factors
        .iter()
        .try_fold(1u64, |product, &f| product.checked_mul(f as u64))
        .ok_or_else(|| Error::Request(format!("{what} is too large to address")))
}

/// A frame size a file or request declares: each side in [`SIDE`], and its RGB bytes.
pub fn frame_size(what: &str, width: usize, height: usize) -> Result<u64> {
    if SIDE.check(width).is_err() || SIDE.check(height).is_err() {
        return Err(Error::Input(format!(
            "{what} declares {width}x{height} frames: width and height must be from {} to {}",
            SIDE.min, SIDE.max
        )));
    }
    bytes(what, &[width, height, 3])
}

/// What one run may use now, and what limits it.
#[derive(Clone, Debug, PartialEq)]
pub struct Budget {
    pub bytes: u64,
    pub limited_by: &'static str,
}

/// Environment variable capping the memory one run may take: bytes, or a number with K, M, G
/// or T (powers of 1024), e.g. `16G`.
pub const MAX_MEMORY_ENV: &str = "SORAGEN_MAX_MEMORY";

/// A size such as `16G`, `512M` or `1048576` (powers of 1024; a trailing `B` or `iB` allowed).
pub fn parse_size(text: &str) -> Option<u64> {
    parse_size::Config::new()
        .with_binary()
        .parse_size(text.trim())
        .ok()
}

fn read(path: &Path) -> Option<String> {
    let bytes = soragen_models::files::read_bounded(path, 1 << 20).ok()?;
    String::from_utf8(bytes).ok()
}

/// The memory the OS says is available to new allocations (Linux `MemAvailable`; on Windows
/// and macOS their own measure), if it says.
fn mem_available() -> Option<u64> {
    let mut system = sysinfo::System::new();
    system.refresh_memory_specifics(sysinfo::MemoryRefreshKind::nothing().with_ram());
    Some(system.available_memory()).filter(|bytes| *bytes > 0)
}

/// Headroom under a cgroup limit from its limit and usage files' contents (`max`, or a limit
/// too large to be one, means none).
fn cgroup_headroom(limit: &str, usage: &str) -> Option<u64> {
    let limit: u64 = limit.trim().parse().ok().filter(|l| *l < 1 << 60)?;
    let usage: u64 = usage.trim().parse().ok()?;
    Some(limit.saturating_sub(usage))
}

/// The least headroom under the memory limits of this process's cgroups (v2: its own group and
/// every parent; v1: the memory controller's group). Read here: sysinfo's `cgroup_limits` reads
/// only the root group's files, which miss a process's own group (systemd units, containers).
fn cgroup_available() -> Option<u64> {
    let groups = read(Path::new("/proc/self/cgroup"))?;
    let headroom = |dir: &Path, limit: &str, usage: &str| {
        cgroup_headroom(
            &read(&dir.join(limit)).unwrap_or_default(),
            &read(&dir.join(usage)).unwrap_or_default(),
        )
    };
    let mut least: Option<u64> = None;
    for line in groups.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let path = path.trim_start_matches('/');
        let mut found = Vec::new();
        if id == "0" && controllers.is_empty() {
            let mut dir = Path::new("/sys/fs/cgroup").join(path);
            loop {
                found.push(headroom(&dir, "memory.max", "memory.current"));
                if !dir.pop() || dir == Path::new("/sys/fs") {
                    break;
                }
            }
        } else if controllers.split(',').any(|c| c == "memory") {
            // Inside a cgroup namespace the group's own folder is the mount's root.
            let root = Path::new("/sys/fs/cgroup/memory");
            let dir = [root.join(path), root.to_path_buf()]
                .into_iter()
                .find(|d| d.join("memory.limit_in_bytes").is_file());
            if let Some(dir) = dir {
                found.push(headroom(
                    &dir,
                    "memory.limit_in_bytes",
                    "memory.usage_in_bytes",
                ));
            }
        }
        for h in found.into_iter().flatten() {
            least = Some(least.map_or(h, |l| l.min(h)));
        }
    }
    least
}

/// The memory one run may take now; None when nothing says (no /proc, no variable).
pub fn budget() -> Result<Option<Budget>> {
    let mut budgets = Vec::new();
    if let Ok(text) = std::env::var(MAX_MEMORY_ENV) {
        let bytes = parse_size(&text).ok_or_else(|| {
            Error::Request(format!("{MAX_MEMORY_ENV}={text} is not a size (e.g. 16G)"))
        })?;
        budgets.push(Budget {
            bytes,
            limited_by: MAX_MEMORY_ENV,
        });
    }
    if let Some(bytes) = mem_available() {
        budgets.push(Budget {
            bytes,
            limited_by: "the memory available on this machine",
        });
    }
    if let Some(bytes) = cgroup_available() {
        budgets.push(Budget {
            bytes,
            limited_by: "this process's memory limit (cgroup)",
        });
    }
    Ok(budgets.into_iter().min_by_key(|b| b.bytes))
}

/// Memory being taken step by step (frames as a file is read), refused once it passes the
/// budget, before each allocation.
pub struct Allowance {
    what: String,
    left: Option<Budget>,
}

impl Allowance {
    pub fn new(what: impl Into<String>) -> Result<Self> {
        Ok(Self {
            what: what.into(),
            left: budget()?,
        })
    }

    pub fn take(&mut self, need: u64) -> Result<()> {
        if let Some(budget) = &mut self.left {
            if need > budget.bytes {
                return Err(Error::Input(format!(
                    "not enough memory to read {}: {} allows {}",
                    self.what,
                    budget.limited_by,
                    gib(budget.bytes)
                )));
            }
            budget.bytes -= need;
        }
        Ok(())
    }
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// Refuses `need` bytes for `what` when they exceed the memory budget.
pub fn fits(what: &str, need: u64) -> Result<()> {
    check(what, need, budget()?.as_ref())
}

/// Refuses `need` bytes for `what` when they exceed `budget` (nothing known: no refusal).
pub fn check(what: &str, need: u64, budget: Option<&Budget>) -> Result<()> {
    match budget {
        Some(budget) if need > budget.bytes => Err(Error::Request(format!(
            "not enough memory: {what} needs about {} but {} allows {}",
            gib(need),
            budget.limited_by,
            gib(budget.bytes)
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_refuse_nan_infinities_and_huge_values_in_one_line() {
        for value in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e308, -1.0] {
            let message = GUIDANCE.check(value).unwrap_err().to_string();
            assert!(
                message.starts_with("guidance ") && !message.contains('\n'),
                "{message}"
            );
        }
        assert_eq!(GUIDANCE.check(5.0), Ok(5.0));
        assert!(FRAMES.check(usize::MAX).is_err());
        assert!(FLOW_SHIFT.check(0.0).is_err());
    }

    #[test]
    fn size_products_are_checked_and_sides_bounded() {
        assert!(bytes("x", &[usize::MAX, 3]).is_err());
        assert_eq!(bytes("x", &[4, 5, 3]).unwrap(), 60);
        assert!(frame_size("t.y4m", 4294967296, 4294967296).is_err());
        assert!(frame_size("t.y4m", 1, 1_000_000_000).is_err());
        assert_eq!(frame_size("t.y4m", 16, 16).unwrap(), 768);
    }

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("1048576"), Some(1 << 20));
        assert_eq!(parse_size("16G"), Some(16 << 30));
        assert_eq!(parse_size(" 512 MiB"), Some(512 << 20));
        assert_eq!(parse_size("1.5k"), Some(1536));
        assert_eq!(parse_size("2TB"), Some(2 << 40));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("-1G"), None);
        assert_eq!(parse_size(""), None);
    }

    #[test]
    fn available_memory_and_cgroup_headroom_are_read_from_their_files() {
        let available = mem_available().expect("the OS says what memory is available");
        let mut system = sysinfo::System::new();
        system.refresh_memory();
        assert!(available <= system.total_memory(), "{available}");
        assert_eq!(
            cgroup_headroom("8589934592\n", "4294967296\n"),
            Some(4 << 30)
        );
        assert_eq!(
            cgroup_headroom("max\n", "4294967296\n"),
            None,
            "v2: no limit"
        );
        assert_eq!(
            cgroup_headroom("9223372036854771712\n", "1"),
            None,
            "v1: no limit"
        );
        assert_eq!(
            cgroup_headroom("100", "200"),
            Some(0),
            "over the limit already"
        );
    }

    #[test]
    fn the_budget_refuses_what_does_not_fit_and_says_what_limits() {
        assert!(fits("a test", u64::MAX).is_err());
        assert!(fits("a test", 1).is_ok());
        let budget = Budget {
            bytes: 1 << 30,
            limited_by: MAX_MEMORY_ENV,
        };
        assert!(check("a test", 1 << 29, Some(&budget)).is_ok());
        assert!(
            check("a test", 1 << 40, None).is_ok(),
            "nothing known: no refusal"
        );
        let message = check("this generation", 3 << 30, Some(&budget))
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "not enough memory: this generation needs about 3.0 GiB but SORAGEN_MAX_MEMORY allows 1.0 GiB"
        );
    }
}
