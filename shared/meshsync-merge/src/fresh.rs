//! Whether a sink should guess that a table's incoming keys are all new to it.
//!
//! Catching up on inserts, almost every key of a batch has no stored state yet, and reading
//! states only to find none costs a fifth of the apply time. A sink that guesses "all new"
//! plans against no states and inserts the states first, in a statement that adds only states
//! that are missing: when it adds them all, the guess was right and the plan stands; when
//! not, the sink undoes that insert and reads the states as usual. A wrong guess costs one
//! wasted insert, so after one the sink reads directly for a while, longer after each miss in
//! a row (update-heavy workloads soon stop guessing).

/// Most batches read directly after a run of wrong guesses.
const MAX_SKIP: u32 = 64;

/// One table's guess.
#[derive(Clone, Debug, Default)]
pub struct FreshGuess {
    /// Batches still to read directly.
    skip: u32,
    /// How many to skip after the next miss.
    penalty: u32,
}

impl FreshGuess {
    /// Whether to guess "all new" for this batch.
    pub fn try_now(&mut self) -> bool {
        if self.skip > 0 {
            self.skip -= 1;
            false
        } else {
            true
        }
    }

    /// The guess held: guess again next time.
    pub fn hit(&mut self) {
        self.penalty = 0;
    }

    /// Some key had a state: read directly for the next batches, twice as many as last time.
    pub fn missed(&mut self) {
        self.penalty = (self.penalty * 2).clamp(1, MAX_SKIP);
        self.skip = self.penalty;
    }
}

#[cfg(test)]
mod tests {
    use super::FreshGuess;

    #[test]
    fn misses_in_a_row_back_off_and_a_hit_resets() {
        let mut g = FreshGuess::default();
        let tries = |g: &mut FreshGuess, n| (0..n).filter(|_| g.try_now()).count();
        assert!(g.try_now());
        g.missed();
        // One batch read directly, then a guess again.
        assert_eq!(tries(&mut g, 2), 1);
        g.missed();
        assert_eq!(tries(&mut g, 3), 1);
        g.missed();
        assert_eq!(tries(&mut g, 5), 1);
        for _ in 0..10 {
            g.missed();
        }
        assert_eq!(
            tries(&mut g, 65),
            1,
            "never more than 64 batches without a guess"
        );
        g.hit();
        assert_eq!(tries(&mut g, 3), 3);
        g.missed();
        assert_eq!(tries(&mut g, 2), 1, "a hit resets the back-off");
    }
}
