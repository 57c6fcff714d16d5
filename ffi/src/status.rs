use std::fmt;

use crate::sys::*;

/// An OpenFX status code other than "OK" when used as an error.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Status(pub OfxStatus);

impl Status {
    pub const OK: Status = Status(kOfxStatOK);
    pub const FAILED: Status = Status(kOfxStatFailed);
    pub const ERR_FATAL: Status = Status(kOfxStatErrFatal);
    pub const ERR_UNKNOWN: Status = Status(kOfxStatErrUnknown);
    pub const ERR_MISSING_HOST_FEATURE: Status = Status(kOfxStatErrMissingHostFeature);
    pub const ERR_UNSUPPORTED: Status = Status(kOfxStatErrUnsupported);
    pub const ERR_BAD_HANDLE: Status = Status(kOfxStatErrBadHandle);
    pub const ERR_BAD_INDEX: Status = Status(kOfxStatErrBadIndex);
    pub const ERR_VALUE: Status = Status(kOfxStatErrValue);
    pub const ERR_MEMORY: Status = Status(kOfxStatErrMemory);
    pub const ERR_IMAGE_FORMAT: Status = Status(kOfxStatErrImageFormat);
    pub const REPLY_YES: Status = Status(kOfxStatReplyYes);
    pub const REPLY_NO: Status = Status(kOfxStatReplyNo);
    pub const REPLY_DEFAULT: Status = Status(kOfxStatReplyDefault);
    pub const GPU_OUT_OF_MEMORY: Status = Status(kOfxStatGPUOutOfMemory);
    pub const GPU_RENDER_FAILED: Status = Status(kOfxStatGPURenderFailed);

    pub(crate) fn check(code: OfxStatus) -> Result<()> {
        if code == kOfxStatOK {
            Ok(())
        } else {
            Err(Status(code))
        }
    }
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            kOfxStatOK => "OK",
            kOfxStatFailed => "Failed",
            kOfxStatErrFatal => "ErrFatal",
            kOfxStatErrUnknown => "ErrUnknown",
            kOfxStatErrMissingHostFeature => "ErrMissingHostFeature",
            kOfxStatErrUnsupported => "ErrUnsupported",
            kOfxStatErrBadHandle => "ErrBadHandle",
            kOfxStatErrBadIndex => "ErrBadIndex",
            kOfxStatErrValue => "ErrValue",
            kOfxStatErrMemory => "ErrMemory",
            kOfxStatErrImageFormat => "ErrImageFormat",
            kOfxStatReplyYes => "ReplyYes",
            kOfxStatReplyNo => "ReplyNo",
            kOfxStatReplyDefault => "ReplyDefault",
            kOfxStatGPUOutOfMemory => "GPUOutOfMemory",
            kOfxStatGPURenderFailed => "GPURenderFailed",
            code => return write!(f, "Status({code})"),
        };
        f.write_str(name)
    }
}

pub type Result<T> = std::result::Result<T, Status>;

/// Setting an optional or newer property (the 1.5 GPU properties, hints, display ranges): a
/// host that does not know it answers `kOfxStatErrUnknown`, which means "no such feature here",
/// not a failure (HostSupport, and the hosts built on it, do).
pub fn optional(result: Result<()>) -> Result<()> {
    match result {
        Err(Status::ERR_UNKNOWN) => Ok(()),
        other => other,
    }
}
