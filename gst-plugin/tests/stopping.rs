//! A flush or a state change to NULL at every phase of a generation (text encoding, VAE encode,
//! denoising steps, VAE decode, post-processing), at 480x272 on the tiny model: the call returns
//! at once, and the work underneath stops within one step or one latent frame.
//!
//! A test binary of its own with one test: whether the work stopped is read from the whole
//! process's CPU time (the generator thread and candle's worker threads), which no other test
//! may share; in NULL the generator thread must also have ended. On 557ab08 (the generation ran
//! on the streaming thread) a flush or NULL waited there for the whole phase, up to seconds:
//! this fails on the return time.

mod common;

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use common::{FRAME, TINY_MODEL, bus_for, element_harness, init, wait_for_progress};
use gst::prelude::*;
use gst_check::Harness;

/// Frames of 480x272, the size the bound is measured at.
const BIG: (u32, u32) = (480, 272);

fn big_harness(properties: &str) -> Harness {
    let mut h = element_harness(&format!("soragen model={TINY_MODEL} {properties}"));
    h.set_src_caps_str(&format!(
        "video/x-raw,format=RGBA,width={},height={},framerate=16/1",
        BIG.0, BIG.1
    ));
    h.play();
    h
}

fn big_frame(index: u64) -> gst::Buffer {
    let mut buffer =
        gst::Buffer::from_mut_slice(vec![(index * 29) as u8; (BIG.0 * BIG.1 * 4) as usize]);
    let b = buffer.get_mut().unwrap();
    b.set_pts(FRAME * index);
    b.set_duration(FRAME);
    buffer
}

/// 4 context frames and 12 new ones: one window of 17 frames, 5 latent frames.
const BIG_JOB: &str = "mode=extend-forward frames=12 context-frames=4 steps=2 prompt=\"a harbour\"";

/// Starts the 480x272 generation: 4 frames, then EOS (extend-forward generates at EOS), pushed
/// from a thread of their own as upstream's streaming thread would push them (on 557ab08 the
/// generation ran right there, inside the push of EOS). A flush may refuse some of them.
fn start_big_job(mut h: Harness) -> std::thread::JoinHandle<Harness> {
    std::thread::spawn(move || {
        for index in 0..4 {
            let _ = h.push(big_frame(index));
        }
        h.push_event(gst::event::Eos::new());
        h
    })
}

/// CPU time of the whole process, every thread together (`/proc/self/stat`, in ticks of 10 ms).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // The fields after the command name (which may hold spaces): utime and stime are the 12th
    // and 13th.
    let fields: Vec<u64> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|f| f.parse().unwrap())
        .collect();
    Duration::from_millis((fields[0] + fields[1]) * 10)
}

/// How long after `since` the process stopped working: the start of the first 200 ms in which
/// it used under 20 ms of CPU (a generation uses all the CPU it gets).
fn work_stopped(since: Instant) -> Duration {
    const WINDOW: Duration = Duration::from_millis(200);
    let mut samples = VecDeque::new();
    loop {
        let (now, cpu) = (Instant::now(), process_cpu());
        samples.push_back((now, cpu));
        while samples.len() > 1 && now - samples[1].0 >= WINDOW {
            samples.pop_front();
        }
        let (then, cpu_then) = samples[0];
        if now - then >= WINDOW && cpu - cpu_then < Duration::from_millis(20) {
            return then.saturating_duration_since(since);
        }
        assert!(
            since.elapsed() < Duration::from_secs(120),
            "the process is still busy"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Threads named after the generator thread (`soragen-generate`, cut to 15 characters) by
/// thread id: the generator's, and candle's worker threads it started (they take its name).
fn generator_named_threads() -> HashSet<u32> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| {
            let task = task.ok()?;
            let name = std::fs::read_to_string(task.path().join("comm")).ok()?;
            let id = task.file_name().to_str()?.parse().ok()?;
            name.starts_with("soragen-gen").then_some(id)
        })
        .collect()
}

/// How long after `since` every generator thread but the worker pool `pool` had ended.
fn generator_ended(since: Instant, pool: &HashSet<u32>) -> Duration {
    while !generator_named_threads().is_subset(pool) {
        assert!(
            since.elapsed() < Duration::from_secs(60),
            "the generator thread never ends"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    since.elapsed()
}

#[test]
fn a_flush_or_null_returns_at_once_and_the_work_stops_within_a_step_or_latent_frame() {
    init();
    // A reference run: when the denoising steps start and end, when the frames are out.
    let h = big_harness(BIG_JOB);
    let bus = bus_for(&h);
    let t0 = Instant::now();
    let pusher = start_big_job(h);
    let mut steps = vec![];
    while steps.len() < 2 {
        wait_for_progress(&bus);
        steps.push(t0.elapsed());
    }
    let mut h = pusher.join().unwrap();
    for _ in 0..16 {
        h.pull().unwrap();
    }
    let done = t0.elapsed();
    drop(h);
    // Once the work is over, what is left of the generator's name is the worker pool.
    work_stopped(Instant::now());
    std::thread::sleep(Duration::from_millis(200));
    let pool = generator_named_threads();
    let (first, last) = (steps[0], steps[1]);
    // The longest piece of work that cannot stop in between: a step, a latent frame of 4
    // frames (the decode after the last step makes 1 + 4 × 4 frames of them; the two encodes
    // before the first step read 2 × 17 frames, 4 at a time).
    let unit = (last - first)
        .max((done - last) * 4 / 17)
        .max(first * 4 / 34);
    let bound = unit * 2 + Duration::from_millis(300);
    eprintln!(
        "reference run at 480x272: first step done at {first:?}, last at {last:?}, frames out at {done:?}; unit {unit:?}, bound {bound:?}"
    );
    // Points before the first step (text encoding, VAE encode), in the steps, and after the
    // last (VAE decode per latent frame, colour matching, resizing, frame conversion).
    let before = [0.1, 0.3, 0.5, 0.7, 0.9].map(|f| first.mul_f64(f * 0.9));
    let after =
        [0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 0.97].map(|f| last + (done - last).mul_f64(f));
    let (mut worst_return, mut worst_stop) = (Duration::ZERO, Duration::ZERO);
    for (index, at) in before
        .into_iter()
        .chain([(first + last) / 2])
        .chain(after)
        .enumerate()
    {
        let h = big_harness(BIG_JOB);
        let element = h.element().unwrap();
        let pusher = start_big_job(h);
        std::thread::sleep(at.saturating_sub(Duration::from_millis(5)));
        let started = Instant::now();
        let flush = index % 2 == 0;
        if flush {
            assert!(
                element
                    .static_pad("sink")
                    .unwrap()
                    .send_event(gst::event::FlushStart::new())
            );
        } else {
            element.set_state(gst::State::Null).unwrap();
        }
        let returned = started.elapsed();
        // In NULL the generator thread ends once its generation has stopped.
        let ended = (!flush).then(|| generator_ended(started, &pool));
        let stopped = work_stopped(started);
        let how = if flush { "flush" } else { "NULL" };
        eprintln!(
            "{how} at {at:?}: returned in {returned:?}, work stopped after {stopped:?}, generator thread ended after {ended:?}"
        );
        worst_return = worst_return.max(returned);
        worst_stop = worst_stop.max(stopped).max(ended.unwrap_or_default());
        drop(pusher.join().unwrap());
        generator_ended(Instant::now(), &pool);
    }
    eprintln!("worst: returned in {worst_return:?}, stopped after {worst_stop:?}");
    assert!(
        worst_return <= Duration::from_millis(200),
        "a flush or NULL took {worst_return:?}"
    );
    assert!(
        worst_stop <= bound,
        "the generation went on for {worst_stop:?} after a flush or NULL (bound {bound:?})"
    );
}
