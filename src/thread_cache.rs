//! A bounded map that each thread keeps for itself: what a review reads for every
//! image, found without a lock and without writing a cache line that another
//! thread's reviews write too.

use std::borrow::Borrow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::Hash;

use thread_local::ThreadLocal;

#[derive(Debug)]
pub(crate) struct PerThreadMap<K: Send, V: Send> {
    maps: ThreadLocal<RefCell<HashMap<K, V, crate::FastHashState>>>,
    /// More keys than this in one thread's map and that map starts over.
    max_entries: usize,
}

impl<K: Eq + Hash + Send, V: Send> PerThreadMap<K, V> {
    pub fn new(max_entries: usize) -> Self {
        PerThreadMap {
            maps: ThreadLocal::new(),
            max_entries,
        }
    }

    /// What `read` makes of this thread's value for `key`, if it has one.
    pub fn find<Q, R>(&self, key: &Q, read: impl FnOnce(&V) -> Option<R>) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.maps.get_or_default().borrow().get(key).and_then(read)
    }

    /// Sets this thread's value for `key`; a full map starts over first.
    pub fn insert(&self, key: K, value: V) {
        let mut map = self.maps.get_or_default().borrow_mut();
        if map.len() >= self.max_entries && !map.contains_key(&key) {
            map.clear();
        }
        map.insert(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_thread_sees_its_own_values_and_a_full_map_starts_over() {
        let map = PerThreadMap::<String, u32>::new(2);
        map.insert("a".into(), 1);
        map.insert("b".into(), 2);
        map.insert("b".into(), 3);
        assert_eq!(map.find("b", |v| Some(*v)), Some(3));
        assert_eq!(map.find("a", |v| Some(*v)), Some(1));
        std::thread::scope(|s| {
            s.spawn(|| assert_eq!(map.find("a", |v| Some(*v)), None));
        });
        map.insert("c".into(), 4);
        assert_eq!(map.find("a", |v| Some(*v)), None);
        assert_eq!(map.find("c", |v| (*v > 3).then_some(*v)), Some(4));
    }
}
