//! Sets of CPUs: one bit per CPU index, for every index up to [`MAX_CPUS`].
//! The kernel keeps a Scheduler's CPUs in one; any CPU mask in the ABI is
//! one (never a single `u64`, which ends at CPU 63).

/// Most CPUs the kernel brings up (CPU indices are `0..MAX_CPUS`).
pub const MAX_CPUS: usize = 256;

const WORDS: usize = MAX_CPUS / 64;

/// A set of CPU indices below [`MAX_CPUS`] (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuSet {
    words: [u64; WORDS],
}

impl CpuSet {
    /// The empty set.
    pub const EMPTY: CpuSet = CpuSet { words: [0; WORDS] };

    /// Adds `cpu` (ignored when `cpu >= MAX_CPUS`).
    #[inline]
    pub fn insert(&mut self, cpu: usize) {
        if let Some(word) = self.words.get_mut(cpu / 64) {
            *word |= 1 << (cpu % 64);
        }
    }

    /// Removes `cpu`.
    #[inline]
    pub fn remove(&mut self, cpu: usize) {
        if let Some(word) = self.words.get_mut(cpu / 64) {
            *word &= !(1 << (cpu % 64));
        }
    }

    /// Whether `cpu` is in the set.
    #[inline]
    pub fn contains(&self, cpu: usize) -> bool {
        self.words
            .get(cpu / 64)
            .is_some_and(|word| word & (1 << (cpu % 64)) != 0)
    }

    /// Whether the set is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&word| word == 0)
    }

    /// The lowest CPU in the set.
    #[inline]
    pub fn first(&self) -> Option<usize> {
        self.words
            .iter()
            .position(|&word| word != 0)
            .map(|index| index * 64 + self.words[index].trailing_zeros() as usize)
    }

    /// How many CPUs the set holds.
    pub fn len(&self) -> usize {
        self.words
            .iter()
            .map(|word| word.count_ones() as usize)
            .sum()
    }

    /// The CPUs in the set, lowest first.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(index, &word)| {
            let mut rest = word;
            core::iter::from_fn(move || {
                (rest != 0).then(|| {
                    let bit = rest.trailing_zeros() as usize;
                    rest &= rest - 1;
                    index * 64 + bit
                })
            })
        })
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    #[test]
    fn every_index_up_to_the_limit_is_kept_apart() {
        let cpus = [0, 63, 64, 127, 128, 200, MAX_CPUS - 1];
        let mut set = CpuSet::EMPTY;
        for cpu in cpus {
            set.insert(cpu);
        }
        assert_eq!(set.len(), cpus.len());
        assert!(set.contains(64) && set.contains(MAX_CPUS - 1) && !set.contains(65));
        assert_eq!(set.iter().collect::<Vec<_>>(), cpus);
        set.remove(0);
        set.remove(63);
        assert_eq!(set.first(), Some(64));
        for cpu in cpus {
            set.remove(cpu);
        }
        assert!(set.is_empty());
        assert_eq!(set.first(), None);
    }

    #[test]
    fn indices_past_the_limit_change_nothing() {
        let mut set = CpuSet::EMPTY;
        set.insert(MAX_CPUS);
        set.insert(usize::MAX);
        assert!(set.is_empty() && !set.contains(MAX_CPUS));
        set.remove(MAX_CPUS);
        assert!(set.is_empty());
    }
}
