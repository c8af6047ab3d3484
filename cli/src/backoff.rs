//! How long a long-running command waits before each attempt to reach the
//! delivery service again: 0.5 s, doubling after every failed attempt up
//! to 30 s, each pause shortened by up to a fifth at random, so that the
//! clients a restart cut off together do not all come back in the same
//! instant.

use std::time::Duration;

/// The pause before the first attempt.
const FIRST_PAUSE: Duration = Duration::from_millis(500);
/// The longest pause: a DS that is back is noticed within this.
const MAX_PAUSE: Duration = Duration::from_secs(30);
/// The largest fraction a pause is shortened by at random.
const JITTER: f64 = 0.2;

/// The attempts since the connection was last up.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// Counts one more failure and returns the pause before the next
    /// attempt.
    pub fn next_pause(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        pause(self.failures, rand::random())
    }

    /// The number of the attempt the last pause was for (1 for the first).
    pub fn attempt(&self) -> u32 {
        self.failures
    }

    /// The connection is up again: the next loss starts from the first pause.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// The pause after `failures` failures (at least 1), shortened by
/// `random` (in `[0, 1)`) times [`JITTER`].
fn pause(failures: u32, random: f64) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    let base = FIRST_PAUSE.saturating_mul(1 << doublings).min(MAX_PAUSE);
    base.mul_f64(1.0 - JITTER * random.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_doubles_from_half_a_second_up_to_thirty_seconds() {
        let pauses: Vec<u128> = (1..=9)
            .map(|failures| pause(failures, 0.0).as_millis())
            .collect();
        assert_eq!(
            pauses,
            [500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000]
        );
        assert_eq!(pause(u32::MAX, 0.0), MAX_PAUSE);
    }

    #[test]
    fn jitter_shortens_a_pause_by_at_most_a_fifth_and_never_lengthens_it() {
        for failures in 1..=10 {
            let longest = pause(failures, 0.0);
            for random in [0.0, 0.25, 0.5, 0.999_999] {
                let jittered = pause(failures, random);
                assert!(jittered <= longest, "{jittered:?} > {longest:?}");
                assert!(
                    jittered >= longest.mul_f64(0.8),
                    "{jittered:?} < 0.8 × {longest:?}"
                );
            }
        }
        assert_ne!(pause(3, 0.0), pause(3, 0.5), "the pause is jittered");
    }

    #[test]
    fn a_connection_that_came_back_starts_again_from_the_first_pause() {
        let mut backoff = Backoff::default();
        let first = backoff.next_pause();
        assert!(first <= FIRST_PAUSE && first >= FIRST_PAUSE.mul_f64(0.8));
        backoff.next_pause();
        let third = backoff.next_pause();
        assert_eq!(backoff.attempt(), 3);
        assert!(third >= Duration::from_millis(1600), "{third:?}");
        backoff.reset();
        assert_eq!(backoff.attempt(), 0);
        assert!(backoff.next_pause() <= FIRST_PAUSE);
        assert_eq!(backoff.attempt(), 1);
    }
}
