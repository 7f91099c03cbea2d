//! Where a layer-major pass keeps the state its chunks carry from one layer to the next: in
//! memory up to a byte budget ([`MemoryBudget`], `--max-memory`), beyond it in a scratch folder
//! (one file per chunk and model, rewritten after every layer, removed with the folder).
//!
//! The budget is shared by every pass of a run (the reference and each candidate of a
//! comparison), so the total resident activations stay under it whatever the number of models.
//! Spilling never changes a value: the f32 bits go to disk and come back unchanged.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

use convert::output::ScratchDir;

use crate::error::{Result, VerifyError};
use crate::layer::KvPair;

/// Default of `--max-memory`: activations kept in memory before spilling (4 GiB).
pub const DEFAULT_MAX_MEMORY: usize = 4 << 30;

/// The byte budget for resident chunk state, and the scratch folder made on first spill.
pub struct MemoryBudget {
    limit: usize,
    used: Cell<usize>,
    scratch: RefCell<Option<ScratchDir>>,
    next_id: Cell<usize>,
}

impl MemoryBudget {
    /// A budget of `limit` bytes (0: every chunk state goes to disk).
    pub fn new(limit: usize) -> Self {
        MemoryBudget {
            limit,
            used: Cell::new(0),
            scratch: RefCell::new(None),
            next_id: Cell::new(0),
        }
    }

    /// The budget in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Whether anything was written to disk so far.
    pub fn spilled(&self) -> bool {
        self.scratch.borrow().is_some()
    }

    /// Reserves `bytes` if they fit in what is left.
    fn reserve(&self, bytes: usize) -> bool {
        let used = self.used.get();
        match used.checked_add(bytes) {
            Some(total) if total <= self.limit => {
                self.used.set(total);
                true
            }
            _ => false,
        }
    }

    fn free(&self, bytes: usize) {
        self.used.set(self.used.get().saturating_sub(bytes));
    }

    /// A fresh file name in the scratch folder (made here, in the system temp folder, on first
    /// use).
    fn new_file(&self) -> Result<PathBuf> {
        let mut scratch = self.scratch.borrow_mut();
        if scratch.is_none() {
            let beside = std::env::temp_dir().join("g4q-activations");
            *scratch = Some(ScratchDir::beside(&beside).map_err(|e| {
                VerifyError::Input(format!("cannot make a folder to spill activations: {e}"))
            })?);
        }
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let dir = scratch.as_ref().expect("made above").path();
        Ok(dir.join(format!("chunk-{id}.f32")))
    }
}

impl Default for MemoryBudget {
    fn default() -> Self {
        MemoryBudget::new(DEFAULT_MAX_MEMORY)
    }
}

/// What one chunk carries across layers: the residual stream `[T, B]`, the per-layer inputs
/// `[T, L, P]` (E models) and the K/V of source layers that later KV-shared layers read.
#[derive(Default)]
pub struct ChunkState {
    pub h: Vec<f32>,
    pub ple: Option<Vec<f32>>,
    pub kv_stash: BTreeMap<usize, KvPair>,
}

impl ChunkState {
    fn bytes(&self) -> usize {
        let kv: usize = self.kv_stash.values().map(|(k, v)| k.len() + v.len()).sum();
        4 * (self.h.len() + self.ple.as_ref().map_or(0, Vec::len) + kv)
    }
}

enum Slot {
    Empty,
    Memory(ChunkState, usize),
    Disk(PathBuf),
}

/// The states of one pass's chunks, by chunk index.
pub struct ChunkStore<'b> {
    budget: &'b MemoryBudget,
    slots: Vec<Slot>,
}

impl<'b> ChunkStore<'b> {
    pub fn new(budget: &'b MemoryBudget, chunks: usize) -> Self {
        ChunkStore {
            budget,
            slots: (0..chunks).map(|_| Slot::Empty).collect(),
        }
    }

    /// Stores chunk `i`'s state: in memory while the budget allows, else on disk.
    pub fn put(&mut self, i: usize, state: ChunkState) -> Result<()> {
        self.clear(i);
        let bytes = state.bytes();
        self.slots[i] = if self.budget.reserve(bytes) {
            Slot::Memory(state, bytes)
        } else {
            let path = self.budget.new_file()?;
            write_state(&path, &state)?;
            Slot::Disk(path)
        };
        Ok(())
    }

    /// Takes chunk `i`'s state out of the store.
    pub fn take(&mut self, i: usize) -> Result<ChunkState> {
        match std::mem::replace(&mut self.slots[i], Slot::Empty) {
            Slot::Memory(s, bytes) => {
                self.budget.free(bytes);
                Ok(s)
            }
            Slot::Disk(path) => {
                let s = read_state(&path);
                let _ = std::fs::remove_file(&path);
                s
            }
            Slot::Empty => Err(VerifyError::Input(format!(
                "internal: chunk {i} has no stored state"
            ))),
        }
    }

    /// Calls `f` with chunk `i`'s residual stream, leaving the state stored.
    pub fn with_hidden<R>(&self, i: usize, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
        match &self.slots[i] {
            Slot::Memory(s, _) => Ok(f(&s.h)),
            Slot::Disk(path) => Ok(f(&read_state(path)?.h)),
            Slot::Empty => Err(VerifyError::Input(format!(
                "internal: chunk {i} has no stored state"
            ))),
        }
    }

    fn clear(&mut self, i: usize) {
        match std::mem::replace(&mut self.slots[i], Slot::Empty) {
            Slot::Memory(_, bytes) => self.budget.free(bytes),
            Slot::Disk(path) => {
                let _ = std::fs::remove_file(path);
            }
            Slot::Empty => {}
        }
    }
}

impl Drop for ChunkStore<'_> {
    fn drop(&mut self) {
        for i in 0..self.slots.len() {
            self.clear(i);
        }
    }
}

fn spill_err(path: &std::path::Path, e: impl std::fmt::Display) -> VerifyError {
    VerifyError::Input(format!("spilled activations {}: {e}", path.display()))
}

fn put_vec(w: &mut impl Write, v: &[f32]) -> std::io::Result<()> {
    w.write_all(&(v.len() as u64).to_le_bytes())?;
    for x in v {
        w.write_all(&x.to_le_bytes())?;
    }
    Ok(())
}

/// Layout: `h`, a u64 flag and `ple` when present, a u64 count of stashed layers and for each
/// its u64 index, `k` and `v`; every vector a u64 length then little-endian f32s.
fn write_state(path: &std::path::Path, s: &ChunkState) -> Result<()> {
    let file = std::fs::File::create(path).map_err(|e| spill_err(path, e))?;
    let mut w = BufWriter::new(file);
    let mut go = || -> std::io::Result<()> {
        put_vec(&mut w, &s.h)?;
        match &s.ple {
            Some(p) => {
                w.write_all(&1u64.to_le_bytes())?;
                put_vec(&mut w, p)?;
            }
            None => w.write_all(&0u64.to_le_bytes())?,
        }
        w.write_all(&(s.kv_stash.len() as u64).to_le_bytes())?;
        for (&layer, (k, v)) in &s.kv_stash {
            w.write_all(&(layer as u64).to_le_bytes())?;
            put_vec(&mut w, k)?;
            put_vec(&mut w, v)?;
        }
        w.flush()
    };
    go().map_err(|e| spill_err(path, e))
}

fn read_state(path: &std::path::Path) -> Result<ChunkState> {
    let file = std::fs::File::open(path).map_err(|e| spill_err(path, e))?;
    let len = file.metadata().map_err(|e| spill_err(path, e))?.len();
    let mut r = BufReader::new(file);
    let u64_of = |r: &mut BufReader<std::fs::File>| -> Result<u64> {
        let mut b = [0u8; 8];
        r.read_exact(&mut b).map_err(|e| spill_err(path, e))?;
        Ok(u64::from_le_bytes(b))
    };
    let vec_of = |r: &mut BufReader<std::fs::File>| -> Result<Vec<f32>> {
        let mut b = [0u8; 8];
        r.read_exact(&mut b).map_err(|e| spill_err(path, e))?;
        let n = u64::from_le_bytes(b);
        // Our own file, but a size is still checked against it before allocating.
        if n.checked_mul(4).is_none_or(|bytes| bytes > len) {
            return Err(spill_err(path, format!("a vector of {n} values")));
        }
        let mut raw = vec![0u8; n as usize * 4];
        r.read_exact(&mut raw).map_err(|e| spill_err(path, e))?;
        Ok(raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    };
    let h = vec_of(&mut r)?;
    let ple = match u64_of(&mut r)? {
        0 => None,
        _ => Some(vec_of(&mut r)?),
    };
    let mut kv_stash = BTreeMap::new();
    let n = u64_of(&mut r)?;
    for _ in 0..n {
        let layer = usize::try_from(u64_of(&mut r)?).map_err(|e| spill_err(path, e))?;
        let k = vec_of(&mut r)?;
        let v = vec_of(&mut r)?;
        kv_stash.insert(layer, (k, v));
    }
    Ok(ChunkState { h, ple, kv_stash })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(seed: f32) -> ChunkState {
        let mut kv_stash = BTreeMap::new();
        kv_stash.insert(3, (vec![seed, -0.0, f32::MIN_POSITIVE], vec![1.5]));
        ChunkState {
            h: vec![seed, seed * 2.0, f32::MAX],
            ple: Some(vec![seed + 1.0; 5]),
            kv_stash,
        }
    }

    fn same(a: &ChunkState, b: &ChunkState) -> bool {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        bits(&a.h) == bits(&b.h)
            && a.ple.as_deref().map(bits) == b.ple.as_deref().map(bits)
            && a.kv_stash.len() == b.kv_stash.len()
            && a.kv_stash
                .iter()
                .zip(&b.kv_stash)
                .all(|((la, (ka, va)), (lb, (kb, vb)))| {
                    la == lb && bits(ka) == bits(kb) && bits(va) == bits(vb)
                })
    }

    #[test]
    fn states_round_trip_in_memory_and_on_disk() {
        let one = state(1.0).bytes();
        // Room for one state: the second spills.
        let budget = MemoryBudget::new(one);
        let mut store = ChunkStore::new(&budget, 2);
        store.put(0, state(1.0)).unwrap();
        assert!(!budget.spilled());
        store.put(1, state(2.0)).unwrap();
        assert!(budget.spilled());
        assert_eq!(store.with_hidden(1, |h| h[0]).unwrap(), 2.0);
        assert!(same(&store.take(1).unwrap(), &state(2.0)));
        assert!(same(&store.take(0).unwrap(), &state(1.0)));
        assert_eq!(budget.used.get(), 0);
        assert!(store.take(0).is_err());
        println!("checked 2 states, one spilled");
    }
}
