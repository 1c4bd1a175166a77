//! The capability derivation tree: which capability was derived from which,
//! so that revoke can find every descendant across all CNodes.
//!
//! Each capability slot carries four links (parent, first child, previous and
//! next sibling), named by an opaque non-zero slot identifier (in the kernel:
//! the slot's physical address; in tests: an index). The tree is generic over
//! where the links live ([`TreeStore`]) so it is tested here on the host and
//! used unchanged by the kernel.
//!
//! Rules:
//! - A copy or mint is a child of its source; a retyped object's first
//!   capability is a child of the untyped capability it came from.
//! - Deleting a capability keeps its descendants in the tree: its children
//!   move up to its parent (so revoking an ancestor still reaches them).
//! - Moving a capability moves its position: the new slot takes the old slot's
//!   parent, siblings and children.

/// "No slot": the value of an absent link.
pub const NONE: u64 = 0;

/// The derivation links of one slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Links {
    /// The capability this one was derived from.
    pub parent: u64,
    /// First capability derived from this one.
    pub first_child: u64,
    /// Previous capability with the same parent.
    pub prev_sibling: u64,
    /// Next capability with the same parent.
    pub next_sibling: u64,
}

/// Storage of the links of every slot.
pub trait TreeStore {
    /// The links of `slot` (all [`NONE`] for a slot outside the tree).
    fn links(&self, slot: u64) -> Links;
    /// Replaces the links of `slot`.
    fn set_links(&mut self, slot: u64, links: Links);
}

/// A broken invariant found by [`check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TreeError {
    /// `slot`'s sibling links are not symmetric.
    SiblingMismatch(u64),
    /// `slot` is in its parent's child list but names another parent, or the
    /// reverse.
    ParentMismatch(u64),
    /// A first child has a previous sibling.
    FirstChildHasPrev(u64),
    /// Following parents from `slot` loops.
    Cycle(u64),
    /// A link leads to `slot`, which is not a slot.
    InvalidLink(u64),
    /// The walk found more slots than it was told could exist.
    TooManySlots,
}

fn update<S: TreeStore>(store: &mut S, slot: u64, f: impl FnOnce(&mut Links)) {
    if slot != NONE {
        let mut links = store.links(slot);
        f(&mut links);
        store.set_links(slot, links);
    }
}

/// Makes the detached slot `child` the first child of `parent` (or a root if
/// `parent` is [`NONE`]).
pub fn insert_child<S: TreeStore>(store: &mut S, parent: u64, child: u64) {
    debug_assert_eq!(
        store.links(child),
        Links::default(),
        "insert_child needs a detached slot"
    );
    attach(store, parent, child);
}

/// Links `child` (not in any sibling list; its own children kept) under `parent`.
fn attach<S: TreeStore>(store: &mut S, parent: u64, child: u64) {
    let first_child = store.links(child).first_child;
    if parent == NONE {
        store.set_links(
            child,
            Links {
                first_child,
                ..Links::default()
            },
        );
        return;
    }
    let old_first = store.links(parent).first_child;
    store.set_links(
        child,
        Links {
            parent,
            first_child,
            prev_sibling: NONE,
            next_sibling: old_first,
        },
    );
    update(store, old_first, |l| l.prev_sibling = child);
    update(store, parent, |l| l.first_child = child);
}

/// Unlinks `slot` from its parent's child list (its own children untouched).
fn unlink_from_siblings<S: TreeStore>(store: &mut S, slot: u64, links: Links) {
    update(store, links.prev_sibling, |l| {
        l.next_sibling = links.next_sibling
    });
    update(store, links.next_sibling, |l| {
        l.prev_sibling = links.prev_sibling
    });
    if links.prev_sibling == NONE {
        update(store, links.parent, |l| {
            if l.first_child == slot {
                l.first_child = links.next_sibling;
            }
        });
    }
}

/// Removes `slot` from the tree. Its children become children of its parent
/// (roots if it had none); `slot` ends with empty links.
pub fn detach<S: TreeStore>(store: &mut S, slot: u64) {
    let links = store.links(slot);
    unlink_from_siblings(store, slot, links);
    let mut child = links.first_child;
    while child != NONE {
        let next = store.links(child).next_sibling;
        attach(store, links.parent, child);
        child = next;
    }
    store.set_links(slot, Links::default());
}

/// Moves the tree position of `from` to the detached slot `to`.
pub fn replace<S: TreeStore>(store: &mut S, from: u64, to: u64) {
    debug_assert_eq!(
        store.links(to),
        Links::default(),
        "replace needs a detached destination"
    );
    let links = store.links(from);
    store.set_links(to, links);
    update(store, links.prev_sibling, |l| l.next_sibling = to);
    update(store, links.next_sibling, |l| l.prev_sibling = to);
    if links.prev_sibling == NONE {
        update(store, links.parent, |l| {
            if l.first_child == from {
                l.first_child = to;
            }
        });
    }
    let mut child = links.first_child;
    while child != NONE {
        update(store, child, |l| l.parent = to);
        child = store.links(child).next_sibling;
    }
    store.set_links(from, Links::default());
}

/// Moves `slot`, with all its descendants, to be a child of `parent` (a
/// root if `parent` is [`NONE`]); `parent` must not descend from `slot`.
pub fn reparent<S: TreeStore>(store: &mut S, slot: u64, parent: u64) {
    let links = store.links(slot);
    unlink_from_siblings(store, slot, links);
    attach(store, parent, slot);
}

/// Calls `visit` on `slot` and then on every descendant of it, depth
/// first, and returns how many it visited; stops (returning `None`) before
/// the visit that would be visit number `max + 1`. `visit` may change the
/// store, but not the tree's links.
pub fn visit_subtree<S: TreeStore>(
    store: &mut S,
    slot: u64,
    max: u64,
    mut visit: impl FnMut(&mut S, u64),
) -> Option<u64> {
    let mut count = 0u64;
    let mut current = slot;
    loop {
        if count == max {
            return None;
        }
        visit(store, current);
        count += 1;
        let links = store.links(current);
        if links.first_child != NONE {
            current = links.first_child;
            continue;
        }
        // Up until a slot below `slot` has a next sibling.
        loop {
            if current == slot {
                return Some(count);
            }
            let links = store.links(current);
            if links.next_sibling != NONE {
                current = links.next_sibling;
                break;
            }
            current = links.parent;
        }
    }
}

/// Whether `slot` has descendants.
pub fn has_children<S: TreeStore>(store: &S, slot: u64) -> bool {
    store.links(slot).first_child != NONE
}

/// A descendant of `slot` with no children of its own (deleting leaves first
/// keeps the walk simple), or `None` when `slot` has no descendants.
pub fn leaf_descendant<S: TreeStore>(store: &S, slot: u64) -> Option<u64> {
    let mut current = store.links(slot).first_child;
    if current == NONE {
        return None;
    }
    loop {
        let next = store.links(current).first_child;
        if next == NONE {
            return Some(current);
        }
        current = next;
    }
}

/// Whether `ancestor` is a (strict) ancestor of `slot`.
pub fn is_ancestor<S: TreeStore>(store: &S, ancestor: u64, slot: u64) -> bool {
    let mut current = store.links(slot).parent;
    let mut steps = 0u64;
    while current != NONE && steps < 1 << 32 {
        if current == ancestor {
            return true;
        }
        current = store.links(current).parent;
        steps += 1;
    }
    false
}

/// Checks the invariants of every slot in `slots` (which must include every
/// slot that is in the tree): symmetric sibling links, children naming their
/// parent, parents listing their children, no parent cycles.
pub fn check<S: TreeStore>(
    store: &S,
    slots: impl Iterator<Item = u64> + Clone,
    slot_count: u64,
) -> Result<(), TreeError> {
    for slot in slots {
        let links = store.links(slot);
        if links.next_sibling != NONE && store.links(links.next_sibling).prev_sibling != slot {
            return Err(TreeError::SiblingMismatch(slot));
        }
        if links.prev_sibling != NONE {
            let prev = store.links(links.prev_sibling);
            if prev.next_sibling != slot || prev.parent != links.parent {
                return Err(TreeError::SiblingMismatch(slot));
            }
        } else if links.parent != NONE && store.links(links.parent).first_child != slot {
            return Err(TreeError::ParentMismatch(slot));
        }
        if links.first_child != NONE {
            let first = store.links(links.first_child);
            if first.parent != slot {
                return Err(TreeError::ParentMismatch(links.first_child));
            }
            if first.prev_sibling != NONE {
                return Err(TreeError::FirstChildHasPrev(links.first_child));
            }
        }
        let mut current = links.parent;
        let mut steps = 0;
        while current != NONE {
            steps += 1;
            if steps > slot_count {
                return Err(TreeError::Cycle(slot));
            }
            current = store.links(current).parent;
        }
    }
    Ok(())
}

/// Walks the whole tree below `root` (depth first, along first-child and
/// next-sibling links) and checks every link on the way: each slot names the
/// slot the walk came from as its parent, and its previous sibling is the
/// one visited before it under that parent (none for a first child). So
/// every slot visited is listed by its parent exactly once, sibling lists
/// are symmetric and the tree has no cycle. `is_slot` vets each link before
/// it is followed (a link to anything else is [`TreeError::InvalidLink`]);
/// more than `max_slots` slots below `root` is [`TreeError::TooManySlots`].
/// `visit` sees each slot once. Returns how many there were (`root` not
/// counted). A slot that names a parent which does not list it is not
/// reached: callers compare the count with the slots they know hold
/// capabilities.
pub fn walk<S: TreeStore>(
    store: &S,
    root: u64,
    max_slots: u64,
    is_slot: impl Fn(u64) -> bool,
    mut visit: impl FnMut(u64),
) -> Result<u64, TreeError> {
    let root_links = store.links(root);
    if root_links.parent != NONE || root_links.prev_sibling != NONE {
        return Err(TreeError::ParentMismatch(root));
    }
    if root_links.next_sibling != NONE {
        return Err(TreeError::SiblingMismatch(root));
    }
    let mut count = 0u64;
    let (mut parent, mut previous, mut current) = (root, NONE, root_links.first_child);
    loop {
        if current == NONE {
            // The end of `parent`'s children: on with its next sibling.
            if parent == root {
                return Ok(count);
            }
            let links = store.links(parent);
            previous = parent;
            current = links.next_sibling;
            parent = links.parent;
            continue;
        }
        if !is_slot(current) {
            return Err(TreeError::InvalidLink(current));
        }
        count += 1;
        if count > max_slots {
            return Err(TreeError::TooManySlots);
        }
        let links = store.links(current);
        if links.parent != parent {
            return Err(TreeError::ParentMismatch(current));
        }
        if links.prev_sibling != previous {
            return Err(if previous == NONE {
                TreeError::FirstChildHasPrev(current)
            } else {
                TreeError::SiblingMismatch(current)
            });
        }
        visit(current);
        if links.first_child != NONE {
            (parent, previous, current) = (current, NONE, links.first_child);
        } else {
            (previous, current) = (current, links.next_sibling);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::vec;
    use std::vec::Vec;

    #[derive(Default)]
    struct Store(BTreeMap<u64, Links>);

    impl TreeStore for Store {
        fn links(&self, slot: u64) -> Links {
            self.0.get(&slot).copied().unwrap_or_default()
        }
        fn set_links(&mut self, slot: u64, links: Links) {
            self.0.insert(slot, links);
        }
    }

    impl Store {
        fn ok(&self) {
            let slots: Vec<u64> = self.0.keys().copied().collect();
            check(self, slots.iter().copied(), slots.len() as u64).expect("tree invariants");
        }
        fn children(&self, slot: u64) -> Vec<u64> {
            let mut out = Vec::new();
            let mut c = self.links(slot).first_child;
            while c != NONE {
                out.push(c);
                c = self.links(c).next_sibling;
            }
            out.sort();
            out
        }
        /// Revoke as the kernel does it: delete leaves until none remain.
        fn revoke(&mut self, slot: u64) -> Vec<u64> {
            let mut deleted = Vec::new();
            while let Some(leaf) = leaf_descendant(self, slot) {
                detach(self, leaf);
                deleted.push(leaf);
            }
            deleted.sort();
            deleted
        }
    }

    #[test]
    fn copies_are_children_of_their_source() {
        let mut s = Store::default();
        insert_child(&mut s, NONE, 1);
        insert_child(&mut s, 1, 2);
        insert_child(&mut s, 1, 3);
        insert_child(&mut s, 2, 4);
        s.ok();
        assert_eq!(s.children(1), [2, 3]);
        assert_eq!(s.children(2), [4]);
        assert!(is_ancestor(&s, 1, 4));
        assert!(!is_ancestor(&s, 3, 4));
        assert!(has_children(&s, 2));
        assert!(!has_children(&s, 3));
    }

    #[test]
    fn revoke_deletes_every_descendant_and_nothing_else() {
        let mut s = Store::default();
        insert_child(&mut s, NONE, 1);
        for (parent, child) in [(1, 2), (1, 3), (2, 4), (2, 5), (4, 6), (3, 7)] {
            insert_child(&mut s, parent, child);
        }
        insert_child(&mut s, NONE, 8);
        assert_eq!(s.revoke(2), [4, 5, 6]);
        s.ok();
        assert_eq!(s.children(1), [2, 3]);
        assert_eq!(s.children(3), [7]);
        assert!(!has_children(&s, 2));
        assert_eq!(s.revoke(1), [2, 3, 7]);
        assert_eq!(s.links(8), Links::default());
        s.ok();
    }

    #[test]
    fn delete_moves_children_up_so_revoke_still_reaches_them() {
        let mut s = Store::default();
        insert_child(&mut s, NONE, 1);
        insert_child(&mut s, 1, 2);
        insert_child(&mut s, 2, 3);
        insert_child(&mut s, 2, 4);
        insert_child(&mut s, 1, 5);
        detach(&mut s, 2);
        s.ok();
        assert_eq!(s.links(2), Links::default());
        assert_eq!(s.children(1), [3, 4, 5]);
        assert_eq!(s.revoke(1), [3, 4, 5]);
    }

    #[test]
    fn deleting_a_root_makes_its_children_roots() {
        let mut s = Store::default();
        insert_child(&mut s, NONE, 1);
        insert_child(&mut s, 1, 2);
        insert_child(&mut s, 1, 3);
        detach(&mut s, 1);
        s.ok();
        assert_eq!(s.links(2), Links::default());
        assert_eq!(s.links(3), Links::default());
    }

    #[test]
    fn move_takes_the_old_position() {
        let mut s = Store::default();
        insert_child(&mut s, NONE, 1);
        insert_child(&mut s, 1, 2);
        insert_child(&mut s, 1, 3);
        insert_child(&mut s, 1, 4);
        insert_child(&mut s, 3, 5);
        replace(&mut s, 3, 9);
        s.ok();
        assert_eq!(s.links(3), Links::default());
        assert_eq!(s.children(1), [2, 4, 9]);
        assert_eq!(s.children(9), [5]);
        assert_eq!(s.links(5).parent, 9);
        // Moving the first child and a root.
        let first = s.links(1).first_child;
        replace(&mut s, first, 10);
        s.ok();
        assert_eq!(s.links(1).first_child, 10);
        replace(&mut s, 1, 11);
        s.ok();
        assert_eq!(s.revoke(11).len(), 4);
    }

    #[test]
    fn reparent_moves_a_whole_subtree() {
        let mut s = Store::default();
        insert_child(&mut s, NONE, 1);
        for (parent, child) in [(1, 2), (1, 3), (2, 4), (4, 5), (3, 6)] {
            insert_child(&mut s, parent, child);
        }
        reparent(&mut s, 2, 6);
        s.ok();
        assert_eq!(s.children(1), [3]);
        assert_eq!(s.children(6), [2]);
        assert_eq!(s.children(2), [4]);
        assert!(is_ancestor(&s, 3, 5));
        reparent(&mut s, 6, NONE);
        s.ok();
        assert_eq!(s.links(6).parent, NONE);
        assert_eq!(s.revoke(1), [3]);
        assert_eq!(s.revoke(6), [2, 4, 5]);
    }

    #[test]
    fn visit_subtree_sees_the_slot_and_its_descendants_only() {
        let mut s = Store::default();
        insert_child(&mut s, NONE, 1);
        for (parent, child) in [(1, 2), (1, 3), (2, 4), (2, 5), (4, 6), (3, 7)] {
            insert_child(&mut s, parent, child);
        }
        let mut seen = Vec::new();
        assert_eq!(visit_subtree(&mut s, 2, 10, |_, x| seen.push(x)), Some(4));
        seen.sort();
        assert_eq!(seen, [2, 4, 5, 6]);
        let mut seen = Vec::new();
        assert_eq!(visit_subtree(&mut s, 1, 10, |_, x| seen.push(x)), Some(7));
        seen.sort();
        assert_eq!(seen, [1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(visit_subtree(&mut s, 7, 1, |_, _| {}), Some(1));
        let mut visits = 0;
        assert_eq!(visit_subtree(&mut s, 1, 6, |_, _| visits += 1), None);
        assert_eq!(visits, 6);
    }

    #[test]
    fn check_finds_broken_links() {
        let mut s = Store::default();
        insert_child(&mut s, NONE, 1);
        insert_child(&mut s, 1, 2);
        insert_child(&mut s, 1, 3);
        let mut l = s.links(2);
        l.prev_sibling = 1;
        s.set_links(2, l);
        assert!(check(&s, [1u64, 2, 3].into_iter(), 3).is_err());
        let mut s = Store::default();
        s.set_links(
            1,
            Links {
                parent: 2,
                ..Links::default()
            },
        );
        s.set_links(
            2,
            Links {
                parent: 1,
                first_child: 1,
                ..Links::default()
            },
        );
        assert!(matches!(
            check(&s, [1u64, 2].into_iter(), 2),
            Err(TreeError::Cycle(_)) | Err(TreeError::ParentMismatch(_))
        ));
    }

    /// The slots below `root`, as [`walk`] finds them (sorted).
    fn walked(s: &Store, root: u64, max: u64) -> Result<Vec<u64>, TreeError> {
        let mut seen = Vec::new();
        let count = walk(s, root, max, |slot| slot < 1 << 20, |slot| seen.push(slot))?;
        assert_eq!(count, seen.len() as u64);
        seen.sort();
        Ok(seen)
    }

    #[test]
    fn walk_visits_every_slot_below_the_root_once() {
        const ROOT: u64 = 1000;
        let mut s = Store::default();
        insert_child(&mut s, ROOT, 1);
        for (parent, child) in [(1, 2), (1, 3), (2, 4), (2, 5), (4, 6), (3, 7)] {
            insert_child(&mut s, parent, child);
        }
        insert_child(&mut s, ROOT, 8);
        assert_eq!(walked(&s, ROOT, 8), Ok(vec![1, 2, 3, 4, 5, 6, 7, 8]));
        assert_eq!(walked(&s, ROOT, 7), Err(TreeError::TooManySlots));
        detach(&mut s, 2);
        replace(&mut s, 3, 9);
        assert_eq!(walked(&s, ROOT, 100), Ok(vec![1, 4, 5, 6, 7, 8, 9]));
        assert_eq!(walked(&Store::default(), ROOT, 0), Ok(vec![]));
    }

    #[test]
    fn walk_finds_broken_links() {
        const ROOT: u64 = 1000;
        let tree = || {
            let mut s = Store::default();
            insert_child(&mut s, ROOT, 1);
            insert_child(&mut s, 1, 2);
            insert_child(&mut s, 1, 3);
            insert_child(&mut s, 3, 4);
            s
        };
        let edit = |s: &mut Store, slot: u64, f: &dyn Fn(&mut Links)| {
            let mut l = s.links(slot);
            f(&mut l);
            s.set_links(slot, l);
        };
        // A child naming another parent.
        let mut s = tree();
        edit(&mut s, 4, &|l| l.parent = 2);
        assert_eq!(walked(&s, ROOT, 100), Err(TreeError::ParentMismatch(4)));
        // A one-way sibling link (3 is 1's first child, 2 follows it).
        let mut s = tree();
        edit(&mut s, 2, &|l| l.prev_sibling = 4);
        assert_eq!(walked(&s, ROOT, 100), Err(TreeError::SiblingMismatch(2)));
        // A first child with a previous sibling.
        let mut s = tree();
        edit(&mut s, 3, &|l| l.prev_sibling = 2);
        assert_eq!(walked(&s, ROOT, 100), Err(TreeError::FirstChildHasPrev(3)));
        // A sibling cycle: 2's next is 3 again.
        let mut s = tree();
        edit(&mut s, 2, &|l| l.next_sibling = 3);
        assert!(walked(&s, ROOT, 100).is_err());
        // A child cycle: 4's first child is 1.
        let mut s = tree();
        edit(&mut s, 4, &|l| l.first_child = 1);
        assert!(walked(&s, ROOT, 100).is_err());
        // A link to something that is not a slot.
        let mut s = tree();
        edit(&mut s, 4, &|l| l.first_child = 1 << 30);
        assert_eq!(walked(&s, ROOT, 100), Err(TreeError::InvalidLink(1 << 30)));
        // A slot whose parent does not list it is not reached.
        let mut s = tree();
        s.set_links(
            5,
            Links {
                parent: 1,
                ..Links::default()
            },
        );
        assert_eq!(walked(&s, ROOT, 100), Ok(vec![1, 2, 3, 4]));
    }

    #[test]
    fn walk_agrees_with_random_operations() {
        const ROOT: u64 = 1 << 19;
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut s = Store::default();
        let mut live: Vec<u64> = Vec::new();
        let mut fresh = 1u64;
        for _ in 0..3000 {
            match next() % 4 {
                0 | 1 => {
                    let parent = if live.is_empty() || next() % 5 == 0 {
                        ROOT
                    } else {
                        live[(next() % live.len() as u64) as usize]
                    };
                    insert_child(&mut s, parent, fresh);
                    live.push(fresh);
                    fresh += 1;
                }
                2 if !live.is_empty() => {
                    let i = (next() % live.len() as u64) as usize;
                    detach(&mut s, live.swap_remove(i));
                }
                3 if !live.is_empty() => {
                    let i = (next() % live.len() as u64) as usize;
                    let deleted = s.revoke(live[i]);
                    live.retain(|x| !deleted.contains(x));
                }
                _ => {}
            }
            let mut expected = live.clone();
            expected.sort();
            assert_eq!(walked(&s, ROOT, live.len() as u64), Ok(expected));
        }
    }

    /// Seeded random operations against a reference parent map.
    #[test]
    fn random_operations_keep_the_invariants() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut s = Store::default();
        let mut live: Vec<u64> = Vec::new();
        let mut fresh = 1u64;
        for _ in 0..5000 {
            match next() % 4 {
                0 | 1 => {
                    let parent = if live.is_empty() || next() % 5 == 0 {
                        NONE
                    } else {
                        live[(next() % live.len() as u64) as usize]
                    };
                    insert_child(&mut s, parent, fresh);
                    live.push(fresh);
                    fresh += 1;
                }
                2 if !live.is_empty() => {
                    let i = (next() % live.len() as u64) as usize;
                    let victim = live.swap_remove(i);
                    detach(&mut s, victim);
                }
                3 if !live.is_empty() => {
                    let i = (next() % live.len() as u64) as usize;
                    let target = live[i];
                    let expected: Vec<u64> = live
                        .iter()
                        .copied()
                        .filter(|&x| is_ancestor(&s, target, x))
                        .collect();
                    let mut deleted = s.revoke(target);
                    deleted.sort();
                    let mut expected = expected;
                    expected.sort();
                    assert_eq!(deleted, expected);
                    live.retain(|x| !deleted.contains(x));
                }
                _ => {}
            }
            let slots: Vec<u64> = live.clone();
            check(&s, slots.iter().copied(), slots.len() as u64 + 1).expect("invariants");
        }
    }
}
