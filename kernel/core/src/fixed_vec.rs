//! A fixed-capacity, stack-allocated vector for results built before the
//! kernel heap exists (MADT CPU lists, memory-map regions).

use core::fmt;
use core::ops::{Deref, DerefMut};

/// Up to `N` values of `T` stored inline; dereferences to the filled prefix.
///
/// `T: Copy + Default` keeps construction trivial (the unused tail holds
/// `T::default()`) and the type free of `unsafe`.
#[derive(Clone, Copy)]
pub struct FixedVec<T: Copy + Default, const N: usize> {
    items: [T; N],
    len: usize,
}

impl<T: Copy + Default, const N: usize> FixedVec<T, N> {
    /// An empty vector.
    pub fn new() -> Self {
        FixedVec {
            items: [T::default(); N],
            len: 0,
        }
    }

    /// The maximum number of elements, `N`.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Whether another [`push`](Self::push) would fail.
    pub const fn is_full(&self) -> bool {
        self.len == N
    }

    /// Appends `item`, or hands it back if the vector is full.
    pub fn push(&mut self, item: T) -> Result<(), T> {
        match self.items.get_mut(self.len) {
            Some(slot) => {
                *slot = item;
                self.len += 1;
                Ok(())
            }
            None => Err(item),
        }
    }

    /// Removes and returns the element at `index`, shifting the tail left;
    /// `None` if `index` is out of range.
    pub fn remove(&mut self, index: usize) -> Option<T> {
        if index >= self.len {
            return None;
        }
        let item = self.items[index];
        self.items.copy_within(index + 1..self.len, index);
        self.len -= 1;
        Some(item)
    }

    /// Drops every element.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The filled prefix as a slice.
    pub fn as_slice(&self) -> &[T] {
        &self.items[..self.len]
    }

    /// The filled prefix as a mutable slice.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.items[..self.len]
    }
}

impl<T: Copy + Default, const N: usize> Default for FixedVec<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Copy + Default, const N: usize> Deref for FixedVec<T, N> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T: Copy + Default, const N: usize> DerefMut for FixedVec<T, N> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.as_mut_slice()
    }
}

impl<T: Copy + Default + fmt::Debug, const N: usize> fmt::Debug for FixedVec<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl<T: Copy + Default + PartialEq, const N: usize> PartialEq for FixedVec<T, N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<T: Copy + Default + Eq, const N: usize> Eq for FixedVec<T, N> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_fills_up_to_capacity_then_hands_the_item_back() {
        let mut v = FixedVec::<u32, 3>::new();
        assert!(v.is_empty());
        assert_eq!(v.push(1), Ok(()));
        assert_eq!(v.push(2), Ok(()));
        assert_eq!(v.push(3), Ok(()));
        assert!(v.is_full());
        assert_eq!(v.push(4), Err(4));
        assert_eq!(&*v, &[1, 2, 3]);
        assert_eq!(v.capacity(), 3);
    }

    #[test]
    fn remove_shifts_the_tail_and_rejects_bad_indices() {
        let mut v = FixedVec::<u32, 4>::new();
        for i in 0..4 {
            v.push(i).unwrap();
        }
        assert_eq!(v.remove(1), Some(1));
        assert_eq!(v.as_slice(), &[0, 2, 3]);
        assert_eq!(v.remove(3), None);
        assert_eq!(v.remove(2), Some(3));
        assert_eq!(v.as_slice(), &[0, 2]);
        v.clear();
        assert!(v.is_empty());
    }

    #[test]
    fn equality_ignores_the_unused_tail() {
        let mut a = FixedVec::<u8, 4>::new();
        let mut b = FixedVec::<u8, 4>::new();
        a.push(7).unwrap();
        a.push(9).unwrap();
        a.remove(1);
        b.push(7).unwrap();
        assert_eq!(a, b);
        assert_eq!(std::format!("{a:?}"), "[7]");
    }
}
