//! The grey mask stream of replace-background's `mask` sink pad: mask buffers wait in a queue
//! with the running times they cover, and each video frame takes the mask that covers its
//! middle. The mask stream never runs ahead of the video (memory stays bounded), and the video
//! waits for the masks its frames need.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use gst::prelude::*;
use gst_video::prelude::*;
use gst_video::{VideoFormat, VideoFrame, VideoInfo};

/// Grey levels, > half scale = background to replace.
pub const FORMATS: [VideoFormat; 2] = [VideoFormat::Gray8, VideoFormat::Gray16Le];

/// One mask and the running times it covers; `end` None: until the next mask starts (or, for
/// the last one, until the mask stream ends).
struct Mask {
    start: gst::ClockTime,
    end: Option<gst::ClockTime>,
    buffer: gst::Buffer,
}

#[derive(Default)]
struct Queue {
    info: Option<VideoInfo>,
    segment: gst::FormattedSegment<gst::ClockTime>,
    masks: VecDeque<Mask>,
    /// The mask stream ended: no mask will come after the queued ones.
    ended: bool,
    /// Flushing or stopping: a waiting mask push returns at once.
    flushing: bool,
    /// Running time the video has reached; masks starting after it wait.
    video_reached: Option<gst::ClockTime>,
    /// The video ended: masks are no longer needed.
    video_ended: bool,
}

impl Queue {
    /// Whether every mask for the video up to running time `time` has arrived.
    fn covers(&self, time: gst::ClockTime) -> bool {
        self.ended
            || self.masks.iter().any(|m| m.start > time)
            || self
                .masks
                .back()
                .is_some_and(|m| m.end.is_some_and(|end| end > time))
    }

    /// The queued mask that covers running time `time`.
    fn index_for(&self, time: gst::ClockTime) -> Result<usize, MaskError> {
        let Some(index) = self.masks.iter().rposition(|m| m.start <= time) else {
            return Err(match self.masks.front() {
                Some(first) => MaskError::StartsLater {
                    frame: time,
                    first: first.start,
                },
                None => MaskError::Ended { frame: time },
            });
        };
        let end = self.masks[index]
            .end
            .or_else(|| self.masks.get(index + 1).map(|next| next.start));
        match end {
            Some(end) if end <= time && index + 1 == self.masks.len() => {
                Err(MaskError::Ended { frame: time })
            }
            Some(end) if end <= time => Err(MaskError::Missing { frame: time }),
            _ => Ok(index),
        }
    }
}

/// Why a frame has no usable mask.
#[derive(Debug, PartialEq)]
pub enum MaskError {
    /// A flush or a state change stopped the wait.
    Cancelled,
    /// The mask pad was flushing or stopping when a mask arrived.
    Flushing,
    NotLinked,
    Untimed,
    Size {
        mask: (u32, u32),
        video: (u32, u32),
    },
    StartsLater {
        frame: gst::ClockTime,
        first: gst::ClockTime,
    },
    Missing {
        frame: gst::ClockTime,
    },
    Ended {
        frame: gst::ClockTime,
    },
    Unreadable,
}

impl fmt::Display for MaskError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Self::Cancelled | Self::Flushing => write!(f, "cancelled"),
            Self::NotLinked => write!(
                f,
                "the mask pad is not linked: link a grey mask stream to it or release it"
            ),
            Self::Untimed => write!(
                f,
                "mask buffers need timestamps to be matched to video frames"
            ),
            Self::Size { mask, video } => {
                write!(
                    f,
                    "masks are {}x{} but the video is {}x{}: they must be the same size",
                    mask.0, mask.1, video.0, video.1
                )
            }
            Self::StartsLater { frame, first } => {
                write!(
                    f,
                    "no mask for the frame at running time {frame}: the mask stream starts at {first}"
                )
            }
            Self::Missing { frame } => write!(
                f,
                "no mask for the frame at running time {frame}: the mask stream has a gap"
            ),
            Self::Ended { frame } => {
                write!(
                    f,
                    "no mask for the frame at running time {frame}: the mask stream ended (EOS) before the video"
                )
            }
            Self::Unreadable => write!(f, "cannot map a mask buffer"),
        }
    }
}

/// The queue between the mask pad's streaming thread and the video's.
#[derive(Default)]
pub struct MaskStream {
    queue: Mutex<Queue>,
    changed: Condvar,
}

impl MaskStream {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, change: impl FnOnce(&mut Queue)) {
        change(&mut self.lock());
        self.changed.notify_all();
    }

    /// A new start (READY -> PAUSED, FLUSH_STOP on the mask pad): nothing queued.
    pub fn start(&self) {
        self.update(|q| *q = Queue::default());
    }

    /// FLUSH_START on the mask pad or PAUSED -> READY: a waiting mask push returns.
    pub fn stop(&self) {
        self.update(|q| q.flushing = true);
    }

    pub fn set_caps(&self, info: VideoInfo) {
        self.update(|q| q.info = Some(info));
    }

    pub fn set_segment(&self, segment: gst::FormattedSegment<gst::ClockTime>) {
        self.update(|q| q.segment = segment);
    }

    pub fn end(&self) {
        self.update(|q| q.ended = true);
    }

    /// The video has arrived up to running time `time`: masks up to there may come in.
    pub fn video_reached(&self, time: gst::ClockTime) {
        self.update(|q| q.video_reached = q.video_reached.max(Some(time)));
    }

    /// The video ended (EOS) or restarts (FLUSH_STOP on the video pad, `ended` false).
    pub fn video_ended(&self, ended: bool) {
        self.update(|q| {
            q.video_ended = ended;
            q.video_reached = None;
        });
    }

    /// Queues a mask, then waits until the video has caught up with it.
    pub fn push(&self, buffer: gst::Buffer) -> Result<(), MaskError> {
        let mut q = self.lock();
        if q.flushing {
            return Err(MaskError::Flushing);
        }
        if q.video_ended {
            return Ok(());
        }
        let pts = buffer.pts().ok_or(MaskError::Untimed)?;
        let Some(start) = q.segment.to_running_time(pts) else {
            return Ok(()); // outside the segment
        };
        let duration = buffer.duration().or_else(|| {
            let fps = q.info.as_ref()?.fps();
            (fps.numer() > 0).then(|| {
                gst::ClockTime::SECOND.mul_div_floor(fps.denom() as u64, fps.numer() as u64)
            })?
        });
        let rate = q.segment.rate().abs();
        let end = duration
            .map(|d| start + gst::ClockTime::from_nseconds((d.nseconds() as f64 / rate) as u64));
        q.masks.push_back(Mask { start, end, buffer });
        self.changed.notify_all();
        while !q.flushing && !q.video_ended && q.video_reached.is_none_or(|reached| reached < start)
        {
            q = self.changed.wait(q).unwrap_or_else(|e| e.into_inner());
        }
        if q.flushing {
            Err(MaskError::Flushing)
        } else {
            Ok(())
        }
    }

    /// The masks of video frames whose middles are at running times `times` (ascending), as
    /// one grey byte per pixel at `size`; waits for them until `cancel` is set.
    pub fn masks_for(
        &self,
        times: &[gst::ClockTime],
        size: (u32, u32),
        cancel: &AtomicBool,
    ) -> Result<Vec<Vec<u8>>, MaskError> {
        let Some(&last) = times.last() else {
            return Ok(vec![]);
        };
        let mut q = self.lock();
        while !cancel.load(Ordering::SeqCst) && !q.covers(last) {
            q = self.changed.wait(q).unwrap_or_else(|e| e.into_inner());
        }
        if cancel.load(Ordering::SeqCst) {
            return Err(MaskError::Cancelled);
        }
        let indices = times
            .iter()
            .map(|&t| q.index_for(t))
            .collect::<Result<Vec<_>, _>>()?;
        let info = q.info.clone().ok_or(MaskError::Unreadable)?;
        if (info.width(), info.height()) != size {
            return Err(MaskError::Size {
                mask: (info.width(), info.height()),
                video: size,
            });
        }
        let masks = indices
            .iter()
            .map(|&i| grey_levels(&q.masks[i].buffer, &info))
            .collect::<Result<Vec<_>, _>>()?;
        // Masks before the last one used cover only frames that are gone.
        let used = indices.last().copied().unwrap_or(0);
        q.masks.drain(..used);
        Ok(masks)
    }

    /// Wakes a video thread waiting in `masks_for` so that it sees its cancel flag.
    pub fn wake(&self) {
        self.changed.notify_all();
    }
}

/// One byte per pixel (the high byte of 16-bit levels), rows without padding.
fn grey_levels(buffer: &gst::Buffer, info: &VideoInfo) -> Result<Vec<u8>, MaskError> {
    let frame = VideoFrame::from_buffer_readable(buffer.clone(), info)
        .map_err(|_| MaskError::Unreadable)?;
    let (width, height) = (info.width() as usize, info.height() as usize);
    let stride = frame.plane_stride()[0] as usize;
    let data = frame.plane_data(0).map_err(|_| MaskError::Unreadable)?;
    let mut levels = Vec::with_capacity(width * height);
    for row in data.chunks(stride).take(height) {
        match info.format() {
            VideoFormat::Gray16Le => {
                levels.extend(row[..width * 2].chunks_exact(2).map(|pixel| pixel[1]))
            }
            _ => levels.extend_from_slice(&row[..width]),
        }
    }
    Ok(levels)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: gst::ClockTime = gst::ClockTime::from_mseconds(40);

    fn mask(start: u64, duration: Option<u64>) -> Mask {
        gst::init().unwrap();
        Mask {
            start: FRAME * start,
            end: duration.map(|d| FRAME * (start + d)),
            buffer: gst::Buffer::new(),
        }
    }

    fn queue(masks: Vec<Mask>, ended: bool) -> Queue {
        Queue {
            masks: masks.into(),
            ended,
            ..Queue::default()
        }
    }

    #[test]
    fn a_frame_takes_the_mask_that_covers_it() {
        let q = queue(
            vec![mask(0, Some(2)), mask(2, None), mask(5, Some(1))],
            false,
        );
        assert_eq!(q.index_for(FRAME / 2), Ok(0));
        assert_eq!(
            q.index_for(FRAME * 3),
            Ok(1),
            "open-ended: until the next mask"
        );
        assert_eq!(q.index_for(FRAME * 5), Ok(2));
        assert!(q.covers(FRAME * 5 + FRAME / 2));
        assert!(
            !q.covers(FRAME * 6),
            "the video must wait for the next mask"
        );
    }

    #[test]
    fn frames_without_a_mask_say_why() {
        let q = queue(vec![mask(2, Some(1)), mask(5, Some(1))], true);
        assert_eq!(
            q.index_for(FRAME),
            Err(MaskError::StartsLater {
                frame: FRAME,
                first: FRAME * 2
            })
        );
        assert_eq!(
            q.index_for(FRAME * 4),
            Err(MaskError::Missing { frame: FRAME * 4 })
        );
        assert_eq!(
            q.index_for(FRAME * 7),
            Err(MaskError::Ended { frame: FRAME * 7 })
        );
        assert_eq!(
            queue(vec![], true).index_for(FRAME),
            Err(MaskError::Ended { frame: FRAME })
        );
    }

    #[test]
    fn sixteen_bit_levels_keep_their_high_byte() {
        gst::init().unwrap();
        let info = VideoInfo::builder(VideoFormat::Gray16Le, 2, 1)
            .build()
            .unwrap();
        // 0xff00 and 0x00ff, little-endian, in a row padded to the format's stride.
        let mut data = vec![0u8; info.size()];
        data[..4].copy_from_slice(&[0x00, 0xff, 0xff, 0x00]);
        assert_eq!(
            grey_levels(&gst::Buffer::from_mut_slice(data), &info),
            Ok(vec![0xff, 0x00])
        );
    }

    #[test]
    fn a_last_mask_without_duration_lasts_to_the_end() {
        let q = queue(vec![mask(0, None)], true);
        assert_eq!(q.index_for(FRAME * 1000), Ok(0));
    }
}
