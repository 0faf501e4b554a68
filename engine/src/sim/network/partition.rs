//! Partitions as side labels: while a partition is active, each server has a side, and a link
//! is up exactly when both ends are on the same side. One label per server, O(nodes).

/// The active partition, if any.
#[derive(Debug, Clone, Default)]
pub(super) struct Partition {
    /// (fault id, side of each server).
    active: Option<(usize, Vec<u32>)>,
}

impl Partition {
    /// Starts partition `id` (replacing any active one): `sides[i]` is server i's side.
    pub fn start(&mut self, id: usize, sides: Vec<u32>) {
        self.active = Some((id, sides));
    }

    /// Heals partition `id` if it is still the active one.
    pub fn heal(&mut self, id: usize) {
        if self.active.as_ref().is_some_and(|(p, _)| *p == id) {
            self.active = None;
        }
    }

    pub fn clear(&mut self) {
        self.active = None;
    }

    /// Whether `a` and `b` are on the same side (always, without a partition).
    pub fn connected(&self, a: usize, b: usize) -> bool {
        match &self.active {
            Some((_, sides)) => sides.get(a) == sides.get(b),
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_decide_and_only_the_active_partition_heals() {
        let mut p = Partition::default();
        assert!(p.connected(0, 2));
        p.start(3, vec![0, 0, 1]);
        assert!(p.connected(0, 1));
        assert!(!p.connected(1, 2));
        p.heal(4);
        assert!(!p.connected(0, 2));
        p.start(4, vec![0, 1, 1]);
        p.heal(3);
        assert!(p.connected(1, 2), "a replaced partition's end does not heal its successor");
        assert!(!p.connected(0, 1));
        p.clear();
        assert!(p.connected(0, 1));
    }
}
