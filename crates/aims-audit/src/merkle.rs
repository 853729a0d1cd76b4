//! RFC 9162 §2.1 Merkle trees over the log's leaf hashes: the tree head, inclusion proofs
//! (§2.1.3) and consistency proofs (§2.1.4), made and checked — from the leaves in memory or
//! from stored perfect-subtree hashes ([`Subtree`], [`Frontier`]).

use std::ops::Range;

/// A SHA-256 hash.
pub type Hash = [u8; 32];

fn sha256(parts: &[&[u8]]) -> Hash {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// §2.1.1: the hash of a leaf, SHA-256(0x00 ‖ leaf).
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    sha256(&[&[0], leaf])
}

/// §2.1.1: the hash of an interior node, SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    sha256(&[&[1], left, right])
}

/// The largest power of two strictly less than `n` (`n` ≥ 2).
fn split(n: u64) -> u64 {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// §2.1.1: the Merkle tree hash of `leaves` (leaf hashes); SHA-256("") for none.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => sha256(&[]),
        1 => leaves[0],
        n => {
            let k = split(n as u64) as usize;
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// A perfect subtree: `2^level` leaves starting at leaf `index << level`. Its hash is what a
/// store keeps, so any proof is a handful of stored hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subtree {
    /// Height: 0 for a leaf.
    pub level: u32,
    /// Position among the subtrees of this level.
    pub index: u64,
}

/// The perfect subtrees, left to right, whose hashes fold (see [`fold`]) into the Merkle tree
/// hash of leaves `range` — one per bit of its length. Every range a proof or a tree head
/// needs starts at a multiple of its largest part, so the parts are aligned subtrees.
pub fn subtrees(range: Range<u64>) -> Vec<Subtree> {
    let mut out = Vec::new();
    let mut at = range.start;
    let mut rest = range.end.saturating_sub(range.start);
    while rest > 0 {
        let level = 63 - rest.leading_zeros();
        debug_assert_eq!(at % (1 << level), 0, "unaligned range");
        out.push(Subtree {
            level,
            index: at >> level,
        });
        at += 1 << level;
        rest -= 1 << level;
    }
    out
}

/// §2.1.1: the tree hash of a range from its [`subtrees`]' hashes (largest first): the split
/// puts the largest perfect subtree left and the rest right, so it folds from the right.
pub fn fold(parts: &[Hash]) -> Hash {
    match parts.split_last() {
        None => sha256(&[]),
        Some((last, rest)) => rest.iter().rev().fold(*last, |r, p| node_hash(p, &r)),
    }
}

/// §2.1.3.1: the leaf ranges whose tree hashes, in order, are the inclusion proof of leaf
/// `index` in the tree of `size` leaves; `None` if the leaf is not in it.
pub fn inclusion_ranges(index: u64, size: u64) -> Option<Vec<Range<u64>>> {
    fn path(index: u64, lo: u64, hi: u64, out: &mut Vec<Range<u64>>) {
        if hi - lo <= 1 {
            return;
        }
        let mid = lo + split(hi - lo);
        if index < mid {
            path(index, lo, mid, out);
            out.push(mid..hi);
        } else {
            path(index, mid, hi, out);
            out.push(lo..mid);
        }
    }
    (index < size).then(|| {
        let mut out = Vec::new();
        path(index, 0, size, &mut out);
        out
    })
}

/// §2.1.4.1: the leaf ranges whose tree hashes, in order, are the consistency proof between
/// the trees of `m` and of `n` leaves; `None` unless `0 < m ≤ n`.
pub fn consistency_ranges(m: u64, n: u64) -> Option<Vec<Range<u64>>> {
    fn subproof(m: u64, lo: u64, hi: u64, whole: bool, out: &mut Vec<Range<u64>>) {
        if lo + m == hi {
            if !whole {
                out.push(lo..hi);
            }
            return;
        }
        let k = split(hi - lo);
        if m <= k {
            subproof(m, lo, lo + k, whole, out);
            out.push(lo + k..hi);
        } else {
            subproof(m - k, lo + k, hi, false, out);
            out.push(lo..lo + k);
        }
    }
    (m > 0 && m <= n).then(|| {
        let mut out = Vec::new();
        if m < n {
            subproof(m, 0, n, true, &mut out);
        }
        out
    })
}

/// The tree hashes of `ranges` of `leaves`.
fn range_roots(leaves: &[Hash], ranges: Vec<Range<u64>>) -> Vec<Hash> {
    ranges
        .into_iter()
        .map(|r| root(&leaves[r.start as usize..r.end as usize]))
        .collect()
}

/// §2.1.3.1: the inclusion proof of leaf `index` in the tree of `leaves`.
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    inclusion_ranges(index as u64, leaves.len() as u64).map(|r| range_roots(leaves, r))
}

/// §2.1.4.1: the consistency proof between the first `m` leaves and all of `leaves`.
pub fn consistency_proof(leaves: &[Hash], m: usize) -> Option<Vec<Hash>> {
    consistency_ranges(m as u64, leaves.len() as u64).map(|r| range_roots(leaves, r))
}

/// The right edge of a growing tree: the hashes of [`subtrees`]`(0..size)`, largest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    parts: Vec<(u32, Hash)>,
}

impl Frontier {
    /// The frontier of a tree of `size` leaves, from its `subtrees(0..size)` hashes.
    pub fn new(size: u64, hashes: &[Hash]) -> Option<Self> {
        let shape = subtrees(0..size);
        (shape.len() == hashes.len()).then(|| Self {
            size,
            parts: shape
                .iter()
                .map(|s| s.level)
                .zip(hashes.iter().copied())
                .collect(),
        })
    }

    /// How many leaves the tree has.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// §2.1.1: the tree head.
    pub fn root(&self) -> Hash {
        let hashes: Vec<Hash> = self.parts.iter().map(|(_, h)| *h).collect();
        fold(&hashes)
    }

    /// Appends a leaf and returns every subtree it completes, the leaf itself first.
    pub fn push(&mut self, leaf: Hash) -> Vec<(Subtree, Hash)> {
        let mut done = vec![(
            Subtree {
                level: 0,
                index: self.size,
            },
            leaf,
        )];
        let mut carry = (0u32, leaf);
        while let Some(&(level, left)) = self.parts.last() {
            if level != carry.0 {
                break;
            }
            self.parts.pop();
            let level = level + 1;
            let hash = node_hash(&left, &carry.1);
            done.push((
                Subtree {
                    level,
                    index: self.size >> level,
                },
                hash,
            ));
            carry = (level, hash);
        }
        self.parts.push(carry);
        self.size += 1;
        done
    }
}

/// §2.1.3.2: whether `proof` shows `leaf` at `index` in the tree of `size` with `root`.
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && &r == root
}

/// §2.1.4.2: whether `proof` shows the tree of `m` leaves with root `first` is a prefix of the
/// tree of `n` leaves with root `second`.
pub fn verify_consistency(m: u64, n: u64, first: &Hash, second: &Hash, proof: &[Hash]) -> bool {
    if m == 0 || m > n {
        return false;
    }
    if m == n {
        return proof.is_empty() && first == second;
    }
    let mut path: Vec<Hash> = proof.to_vec();
    if m.is_power_of_two() {
        path.insert(0, *first);
    }
    let Some((head, rest)) = path.split_first() else {
        return false;
    };
    let (mut fn_, mut sn) = (m - 1, n - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*head, *head);
    for c in rest {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    &fr == first && &sr == second && sn == 0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::leaf_hash;

    /// The classic CT / transparency-dev leaves and their roots (specs.md §6.1).
    fn vector_leaves() -> Vec<Hash> {
        [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|h| leaf_hash(&hex::decode(h).unwrap()))
        .collect()
    }

    #[test]
    fn roots_match_the_published_vectors() {
        let roots = [
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        let leaves = vector_leaves();
        for (n, want) in roots.iter().enumerate() {
            assert_eq!(hex::encode(root(&leaves[..n])), *want, "size {n}");
        }
    }

    #[test]
    fn the_frontier_builds_every_subtree_and_the_root() {
        let leaves: Vec<Hash> = (0u32..70).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut frontier = Frontier::default();
        let mut stored = std::collections::HashMap::new();
        for (i, leaf) in leaves.iter().enumerate() {
            for (subtree, hash) in frontier.push(*leaf) {
                let lo = (subtree.index << subtree.level) as usize;
                let hi = lo + (1usize << subtree.level);
                assert_eq!(hash, root(&leaves[lo..hi]), "{subtree:?}");
                stored.insert(subtree, hash);
            }
            let n = i as u64 + 1;
            assert_eq!(frontier.root(), root(&leaves[..=i]), "size {n}");
            // Any proof is a fold of stored subtrees; so is the frontier.
            let parts: Vec<Hash> = subtrees(0..n).iter().map(|s| stored[s]).collect();
            assert_eq!(Frontier::new(n, &parts).unwrap(), frontier);
            for r in inclusion_ranges(i as u64 / 2, n).unwrap() {
                let hashes: Vec<Hash> = subtrees(r.clone()).iter().map(|s| stored[s]).collect();
                assert_eq!(
                    fold(&hashes),
                    root(&leaves[r.start as usize..r.end as usize])
                );
            }
        }
        assert!(Frontier::new(3, &[leaves[0]]).is_none());
    }

    #[test]
    fn every_proof_verifies_and_every_tampered_one_fails() {
        let leaves: Vec<Hash> = (0u32..40).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for n in 1..=leaves.len() {
            let tree = &leaves[..n];
            let r = root(tree);
            for i in 0..n {
                let proof = inclusion_proof(tree, i).unwrap();
                assert!(
                    verify_inclusion(i as u64, n as u64, &tree[i], &proof, &r),
                    "{i} in {n}"
                );
                // Another leaf, another index, a tampered proof. (The size is bound by the
                // signed tree head, not by the proof: some shapes verify at other sizes.)
                let other = tree[(i + 1) % n];
                if n > 1 {
                    assert!(!verify_inclusion(i as u64, n as u64, &other, &proof, &r));
                    assert!(!verify_inclusion(
                        ((i + 1) % n) as u64,
                        n as u64,
                        &tree[i],
                        &proof,
                        &r
                    ));
                }
                assert!(!verify_inclusion(n as u64, n as u64, &tree[i], &proof, &r));
                if let Some(first) = proof.first() {
                    let mut bad = proof.clone();
                    bad[0] = node_hash(first, first);
                    assert!(!verify_inclusion(i as u64, n as u64, &tree[i], &bad, &r));
                }
            }
            assert!(inclusion_proof(tree, n).is_none());
            for m in 1..=n {
                let proof = consistency_proof(tree, m).unwrap();
                let first = root(&tree[..m]);
                assert!(
                    verify_consistency(m as u64, n as u64, &first, &r, &proof),
                    "{m} → {n}"
                );
                if m < n {
                    // A rewritten history is not consistent.
                    let mut forged = tree[..m].to_vec();
                    forged[m - 1] = leaf_hash(b"forged");
                    assert!(!verify_consistency(
                        m as u64,
                        n as u64,
                        &root(&forged),
                        &r,
                        &proof
                    ));
                    assert!(!verify_consistency(
                        m as u64,
                        n as u64,
                        &first,
                        &r,
                        &proof[1..]
                    ));
                }
            }
        }
    }
}
