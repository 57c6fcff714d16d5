//! Which CUDA stream a host's images are converted on, and when we wait.
//!
//! A host that gives a stream (OpenFX `kOfxImageEffectPropCudaStream`) has its own work queued
//! on it: ours goes on that stream too, so it runs after the host wrote the input and before
//! the host reads the output, with no event between streams and no device-wide
//! synchronisation; we return without waiting for the output. Reading input into host memory
//! waits for that stream only (the frames are needed on the CPU). A host that gives none
//! expects finished output on return: we use a stream of our own and wait for it at the end.

use std::ffi::c_void;

/// The stream a host asked us to order our work on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamOrder {
    /// The host's `CUstream`, borrowed: never destroyed or synchronised device-wide.
    Host(*mut c_void),
    /// No stream given: ours, finished before we return.
    Own,
}

// SAFETY: the pointer is an opaque CUDA handle, usable from any thread of the process.
unsafe impl Send for StreamOrder {}
// SAFETY: as for Send; nothing is read or written through it here.
unsafe impl Sync for StreamOrder {}

/// What a conversion does about streams, decided from the host's request alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamPlan {
    /// Queue kernels and copies on the host's stream (else on a stream of ours).
    pub on_host_stream: bool,
    /// Wait for our stream before returning output to the host.
    pub wait_before_return: bool,
}

impl StreamOrder {
    /// The host's stream handle as it arrives (null: none given).
    pub fn from_raw(stream: *mut c_void) -> Self {
        if stream.is_null() {
            StreamOrder::Own
        } else {
            StreamOrder::Host(stream)
        }
    }

    pub fn plan(&self) -> StreamPlan {
        match self {
            StreamOrder::Host(_) => StreamPlan {
                on_host_stream: true,
                wait_before_return: false,
            },
            StreamOrder::Own => StreamPlan {
                on_host_stream: false,
                wait_before_return: true,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_stream_is_used_and_never_waited_for_at_the_end() {
        let handle = 0x5eed as *mut c_void;
        let order = StreamOrder::from_raw(handle);
        assert_eq!(order, StreamOrder::Host(handle));
        assert_eq!(
            order.plan(),
            StreamPlan {
                on_host_stream: true,
                wait_before_return: false
            }
        );
    }

    #[test]
    fn without_a_host_stream_our_work_is_finished_before_returning() {
        let order = StreamOrder::from_raw(std::ptr::null_mut());
        assert_eq!(order, StreamOrder::Own);
        assert_eq!(
            order.plan(),
            StreamPlan {
                on_host_stream: false,
                wait_before_return: true
            }
        );
    }
}
