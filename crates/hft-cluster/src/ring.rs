//! Bounded lock-free SPSC rings between hot-path threads, with an idle protocol that
//! spins first and parks only when there is nothing to do, so a busy pipeline never
//! makes a syscall and an idle node does not burn the CPU.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU8, Ordering, fence};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::Duration;

/// How a consumer thread waits for work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdleMode {
    /// Busy-poll forever: lowest latency, one core per thread (benchmarks, pinned cores).
    Spin,
    /// Spin a little, then park until a producer wakes the thread or a timer is due.
    Park,
}

/// The wake-up side of a consumer thread, shared with its producers.
#[derive(Debug, Default)]
pub struct Parker {
    /// `AWAKE`, `PARKED` (woken by unpark) or `POLLING` (woken through `event`).
    state: AtomicU8,
    thread: OnceLock<Thread>,
    /// An eventfd, made the first time the consumer sleeps on a socket.
    event: OnceLock<Option<OwnedFd>>,
}

const AWAKE: u8 = 0;
const PARKED: u8 = 1;
const POLLING: u8 = 2;

impl Parker {
    /// A parker to be claimed by its consumer thread.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Binds the parker to the calling thread (once, at thread start).
    pub fn bind_current(&self) {
        let _ = self.thread.set(std::thread::current());
    }

    /// Called by a producer after it pushed: a fence and a load when the consumer is
    /// awake; when it sleeps, the first producer to see it marks it awake and wakes it
    /// (one unpark or eventfd write per sleep).
    #[inline]
    pub fn wake(&self) {
        // The push (a release store) must be visible before the state is read, and the
        // consumer's state store before it reads the ring: without the fences on both
        // sides, each can read the other's old value and the wake-up is lost (x86
        // reorders a store with a later load).
        fence(Ordering::SeqCst);
        let state = self.state.load(Ordering::Relaxed);
        if state == AWAKE
            || self
                .state
                .compare_exchange(state, AWAKE, Ordering::SeqCst, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        if state == PARKED {
            if let Some(t) = self.thread.get() {
                t.unpark();
            }
        } else {
            self.signal_event();
        }
    }

    #[cfg(target_os = "linux")]
    fn signal_event(&self) {
        if let Some(Some(fd)) = self.event.get() {
            let one = 1u64.to_ne_bytes();
            // SAFETY: writes 8 bytes from a live buffer to an eventfd we own; a full
            // counter (EAGAIN) already means "wake up".
            unsafe { libc::write(fd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn signal_event(&self) {}

    /// Parks the consumer unless `has_work` turns true after announcing the sleep (the
    /// re-check closes the race with a producer that pushed just before).
    pub fn park(&self, timeout: Duration, has_work: impl Fn() -> bool) {
        self.state.store(PARKED, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if !has_work() {
            std::thread::park_timeout(timeout);
        }
        self.state.store(AWAKE, Ordering::SeqCst);
    }

    /// Sleeps until a producer wakes the consumer, `fd` turns readable, or `timeout`
    /// passes: a thread that serves both rings and a socket sleeps without polling
    /// either. Falls back to `park` if no eventfd can be made (or off Linux).
    #[cfg(not(target_os = "linux"))]
    pub fn park_on(&self, _fd: RawFd, timeout: Duration, has_work: impl Fn() -> bool) {
        self.park(timeout, has_work);
    }

    /// Sleeps until a producer wakes the consumer, `fd` turns readable, or `timeout`
    /// passes: a thread that serves both rings and a socket sleeps without polling
    /// either. Falls back to `park` if no eventfd can be made.
    #[cfg(target_os = "linux")]
    pub fn park_on(&self, fd: RawFd, timeout: Duration, has_work: impl Fn() -> bool) {
        let event = self.event.get_or_init(|| {
            // SAFETY: eventfd takes no pointers; a non-negative result is a new fd
            // that nothing else owns.
            let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
            // SAFETY: see above.
            (raw >= 0).then(|| unsafe { OwnedFd::from_raw_fd(raw) })
        });
        let Some(event) = event else {
            return self.park(timeout, has_work);
        };
        self.state.store(POLLING, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if !has_work() {
            let mut fds = [
                libc::pollfd {
                    fd: event.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            let ts = libc::timespec {
                tv_sec: timeout.as_secs() as libc::time_t,
                tv_nsec: timeout.subsec_nanos() as libc::c_long,
            };
            // SAFETY: two initialised pollfds and a timespec, all alive for the call.
            let n = unsafe { libc::ppoll(fds.as_mut_ptr(), 2, &ts, std::ptr::null()) };
            if n > 0 && fds[0].revents & libc::POLLIN != 0 {
                let mut count = [0u8; 8];
                // SAFETY: reads at most 8 bytes into a live 8-byte buffer.
                unsafe { libc::read(event.as_raw_fd(), count.as_mut_ptr().cast(), count.len()) };
            }
        }
        self.state.store(AWAKE, Ordering::SeqCst);
    }
}

/// Spin iterations before a `Park` consumer goes to sleep.
pub const SPIN_BEFORE_PARK: u32 = 2_000;

/// The spin-then-park rule of one consumer thread.
#[derive(Debug)]
pub struct Idler {
    mode: IdleMode,
    spins: u32,
}

impl Idler {
    /// A consumer that idles with `mode`.
    pub fn new(mode: IdleMode) -> Self {
        Self { mode, spins: 0 }
    }

    /// Work was found: the next idle period starts by spinning again.
    #[inline]
    pub fn reset(&mut self) {
        self.spins = 0;
    }

    /// Nothing to do: spin; in park mode, after `SPIN_BEFORE_PARK` spins, sleep until
    /// woken or `timeout` unless `has_work` turned true meanwhile.
    #[inline]
    pub fn idle(&mut self, parker: &Parker, timeout: Duration, has_work: impl Fn() -> bool) {
        self.idle_on(parker, None, timeout, has_work);
    }

    /// `idle`, but the sleep also ends when `fd` (a socket the thread serves) turns
    /// readable.
    #[inline]
    pub fn idle_on(
        &mut self,
        parker: &Parker,
        fd: Option<RawFd>,
        timeout: Duration,
        has_work: impl Fn() -> bool,
    ) {
        self.spins = self.spins.saturating_add(1);
        if self.mode == IdleMode::Park && self.spins > SPIN_BEFORE_PARK {
            match fd {
                Some(fd) => parker.park_on(fd, timeout, has_work),
                None => parker.park(timeout, has_work),
            }
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Producer end of a ring with the consumer's parker.
pub struct RingTx<T> {
    inner: rtrb::Producer<T>,
    parker: Arc<Parker>,
}

impl<T> RingTx<T> {
    /// Pushes without blocking; returns the item back when the ring is full.
    #[inline]
    pub fn push(&mut self, item: T) -> Result<(), T> {
        match self.inner.push(item) {
            Ok(()) => {
                self.parker.wake();
                Ok(())
            }
            Err(rtrb::PushError::Full(v)) => Err(v),
        }
    }

    /// Free slots.
    pub fn slots(&self) -> usize {
        self.inner.slots()
    }

    /// Total capacity.
    pub fn capacity(&self) -> usize {
        self.inner.buffer().capacity()
    }

    /// True when the consumer has taken everything pushed so far.
    pub fn all_consumed(&self) -> bool {
        self.inner.slots() == self.inner.buffer().capacity()
    }
}

/// Consumer end of a ring.
pub struct RingRx<T> {
    inner: rtrb::Consumer<T>,
}

impl<T> RingRx<T> {
    /// Pops the oldest item, if any.
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        self.inner.pop().ok()
    }

    /// True when nothing is queued.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

/// A ring of `capacity` items whose consumer is woken through `parker`.
pub fn ring<T>(capacity: usize, parker: &Arc<Parker>) -> (RingTx<T>, RingRx<T>) {
    let (p, c) = rtrb::RingBuffer::new(capacity);
    (
        RingTx {
            inner: p,
            parker: parker.clone(),
        },
        RingRx { inner: c },
    )
}

/// Lowers the calling thread (and the threads it starts later, which inherit it) to
/// the weakest nice level, 19: control-plane work such as the admin API then yields to
/// a hot-path thread that wakes up on a shared core, whose earlier deadline preempts
/// it. Unlike the idle scheduling class (`SCHED_IDLE`, which gets a fifth of nice 19's
/// share), the API still gets a bounded share of a saturated host: a kill switch call
/// must be answered when the host is busiest.
pub fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid(2) has no arguments and cannot fail.
        let tid = unsafe { libc::gettid() };
        // SAFETY: setpriority(2) on this thread's id, a plain integer call.
        let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19) };
        if r != 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), "cannot lower the admin API's scheduling priority");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parked_consumer_is_woken_by_a_push() {
        let parker = Parker::new();
        let (mut tx, mut rx) = ring::<u64>(8, &parker);
        let p2 = parker.clone();
        let consumer = std::thread::spawn(move || {
            p2.bind_current();
            let mut got = Vec::new();
            while got.len() < 100 {
                match rx.pop() {
                    Some(v) => got.push(v),
                    None => p2.park(Duration::from_secs(5), || !rx.is_empty()),
                }
            }
            got
        });
        for i in 0..100 {
            while tx.push(i).is_err() {
                std::thread::yield_now();
            }
        }
        let got = consumer.join().unwrap();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
    }

    /// Races the producer's wake against the consumer's decision to sleep many times: a
    /// lost wake-up would leave the consumer asleep with work queued until its timeout.
    #[test]
    fn no_wake_up_is_lost() {
        let parker = Parker::new();
        let (mut tx, mut rx) = ring::<u32>(4, &parker);
        let p2 = parker.clone();
        const N: u32 = 20_000;
        let timeout = Duration::from_millis(250);
        let consumer = std::thread::spawn(move || {
            p2.bind_current();
            let mut lost = 0;
            let mut next = 0;
            while next < N {
                match rx.pop() {
                    Some(v) => {
                        assert_eq!(v, next);
                        next += 1;
                    }
                    None => {
                        let t = std::time::Instant::now();
                        p2.park(timeout, || !rx.is_empty());
                        if t.elapsed() >= timeout && !rx.is_empty() {
                            lost += 1;
                        }
                    }
                }
            }
            lost
        });
        for i in 0..N {
            while tx.push(i).is_err() {
                std::thread::yield_now();
            }
            // Vary the timing so the push lands at every point of the consumer's park.
            for _ in 0..(i % 64) {
                std::hint::spin_loop();
            }
        }
        assert_eq!(consumer.join().unwrap(), 0);
    }

    /// The API's threads yield to trading but keep a share of a busy host: nice 19,
    /// inherited by the threads they start, and not the idle scheduling class.
    #[cfg(target_os = "linux")]
    #[test]
    fn lowered_threads_run_at_nice_19_and_pass_it_on() {
        fn own() -> (i32, i32) {
            // SAFETY: gettid(2), sched_getscheduler(2) and getpriority(2) on this thread.
            unsafe {
                let tid = libc::gettid();
                *libc::__errno_location() = 0;
                let nice = libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t);
                (nice, libc::sched_getscheduler(0))
            }
        }
        let (before, after, child) = std::thread::spawn(|| {
            let before = own();
            lower_priority();
            let after = own();
            let child = std::thread::spawn(own).join().unwrap();
            (before, after, child)
        })
        .join()
        .unwrap();
        assert_eq!(after, (19, libc::SCHED_OTHER), "was {before:?}");
        assert_eq!(child, (19, libc::SCHED_OTHER));
        assert_eq!(own().0, before.0, "only the calling thread is lowered");
    }

    #[test]
    fn full_ring_returns_the_item() {
        let parker = Parker::new();
        let (mut tx, _rx) = ring::<u8>(2, &parker);
        assert!(tx.push(1).is_ok() && tx.push(2).is_ok());
        assert_eq!(tx.push(3), Err(3));
    }
}
