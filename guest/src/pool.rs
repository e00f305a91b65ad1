//! The WebAssembly builds' allocator: small blocks in size classes, kept on free lists, over
//! wasi-libc's `malloc` for the rest.
//!
//! Every call into the component allocates and frees hundreds of small blocks: each string
//! the host lowers (`cabi_realloc`), each one the guest returns (freed after the call), the
//! decision's annotations, a placed pod's entry. wasi-libc's dlmalloc costs several calls per
//! block (`__rust_alloc` → `malloc` → `dlmalloc`, bins, a header per block), and profiles of
//! the `decide` and `delta` benches put a fifth of the component's time there (issue #6).
//! Rust hands `dealloc` the block's layout, so a size class needs no header: a block of up to
//! [`LARGEST`] bytes is taken from its class's free list, or cut from a 64 KiB chunk, and
//! given back to that list. Blocks are never returned to `malloc`; a class keeps as many as
//! were ever live at once (the ledger's own strings and the largest batch of deltas), which
//! linear memory would keep anyway, since it never shrinks.
//!
//! Only [`class`], the choice of a class, is built natively (and tested); the allocator itself
//! is built for both WebAssembly builds (the component, `wasm32-wasip2`, and the
//! kube-scheduler-wasm-extension module, `wasm32-wasip1`), each of which runs one thread.

/// Block sizes, in bytes: multiples of 16, so that every block is 16-aligned.
pub const SIZES: [usize; 13] = [16, 32, 48, 64, 80, 96, 128, 160, 192, 256, 320, 384, 512];

/// The largest block a class holds; larger ones go to `malloc`.
pub const LARGEST: usize = SIZES[SIZES.len() - 1];

/// The alignment every block has.
pub const ALIGN: usize = 16;

/// The class of a block of `size` bytes aligned to `align`: the index in [`SIZES`] of the
/// smallest size that holds it; `None` for a block larger than [`LARGEST`] or aligned to
/// more than [`ALIGN`].
pub fn class(size: usize, align: usize) -> Option<usize> {
    if size > LARGEST || align > ALIGN {
        return None;
    }
    // By steps of ALIGN bytes: step `i` holds the sizes `ALIGN * (i - 1) + 1 ..= ALIGN * i`.
    const BY_STEP: [u8; LARGEST / ALIGN + 1] = {
        let mut table = [0u8; LARGEST / ALIGN + 1];
        let mut step = 0;
        let mut class = 0;
        while step < table.len() {
            while SIZES[class] < step * ALIGN {
                class += 1;
            }
            table[step] = class as u8;
            step += 1;
        }
        table
    };
    Some(BY_STEP[size.div_ceil(ALIGN)] as usize)
}

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)] // a global allocator is unsafe by nature; the class arithmetic is safe code
mod global {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::UnsafeCell;
    use std::ptr;

    use super::{ALIGN, SIZES, class};

    /// Bytes asked of `malloc` at a time for small blocks.
    const CHUNK: usize = 64 * 1024;

    struct Pools {
        /// Per class, the first free block; each free block holds the next one's address.
        free: [*mut u8; SIZES.len()],
        /// The part of the current chunk not yet cut into blocks.
        next: *mut u8,
        end: *mut u8,
    }

    pub struct Pool(UnsafeCell<Pools>);

    // SAFETY: both WebAssembly builds run one thread (neither target has threads), so the
    // pools are never touched by two at once.
    unsafe impl Sync for Pool {}

    impl Pool {
        /// # Safety
        /// No other reference to the pools may be live: the allocator's methods are the
        /// only users, and none of them calls another while it holds this one.
        #[allow(clippy::mut_from_ref)]
        unsafe fn pools(&self) -> &mut Pools {
            // SAFETY: see the function's contract.
            unsafe { &mut *self.0.get() }
        }
    }

    #[global_allocator]
    static POOL: Pool = Pool(UnsafeCell::new(Pools {
        free: [ptr::null_mut(); SIZES.len()],
        next: ptr::null_mut(),
        end: ptr::null_mut(),
    }));

    // SAFETY: a block is handed out once until it is given back (free lists and the chunk's
    // unused part are disjoint); every block is `SIZES[c]` bytes, at least the size asked,
    // and 16-aligned (chunks are 16-aligned and sizes multiples of 16); the rest is `System`'s.
    unsafe impl GlobalAlloc for Pool {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let Some(c) = class(layout.size(), layout.align()) else {
                // SAFETY: forwarded as given.
                return unsafe { System.alloc(layout) };
            };
            // SAFETY: the only reference for the length of this call.
            let p = unsafe { self.pools() };
            let head = p.free[c];
            if !head.is_null() {
                // SAFETY: a free block of this class, holding the next free one's address.
                p.free[c] = unsafe { head.cast::<*mut u8>().read() };
                return head;
            }
            let size = SIZES[c];
            if (p.end as usize) - (p.next as usize) < size {
                // SAFETY: a non-zero size and a power-of-two alignment.
                let chunk =
                    unsafe { System.alloc(Layout::from_size_align_unchecked(CHUNK, ALIGN)) };
                if chunk.is_null() {
                    return chunk;
                }
                // What is left of the previous chunk is too small for this class: it goes to
                // the smaller classes' lists, largest blocks first.
                let mut rest = (p.end as usize) - (p.next as usize);
                for (k, &s) in SIZES.iter().enumerate().rev() {
                    while rest >= s {
                        // SAFETY: `s` bytes of the chunk not handed out, 16-aligned.
                        unsafe { p.next.cast::<*mut u8>().write(p.free[k]) };
                        p.free[k] = p.next;
                        // SAFETY: within the previous chunk.
                        p.next = unsafe { p.next.add(s) };
                        rest -= s;
                    }
                }
                p.next = chunk;
                // SAFETY: the end of the chunk just allocated.
                p.end = unsafe { chunk.add(CHUNK) };
            }
            let block = p.next;
            // SAFETY: within the current chunk (checked above).
            p.next = unsafe { p.next.add(size) };
            block
        }

        unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
            match class(layout.size(), layout.align()) {
                // SAFETY: `System` handed it out (same layout, same choice of class).
                None => unsafe { System.dealloc(block, layout) },
                Some(c) => {
                    // SAFETY: the only reference for the length of this call.
                    let p = unsafe { self.pools() };
                    // SAFETY: a block of this class, given back: it holds the list's head.
                    unsafe { block.cast::<*mut u8>().write(p.free[c]) };
                    p.free[c] = block;
                }
            }
        }

        unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let (old, new) = (
                class(layout.size(), layout.align()),
                class(new_size, layout.align()),
            );
            match (old, new) {
                // SAFETY: `System` handed it out, and keeps it.
                (None, None) => unsafe { System.realloc(block, layout, new_size) },
                // The block already holds the new size.
                (Some(a), Some(b)) if a == b => block,
                _ => {
                    // SAFETY: the caller's layout with the new size is valid (its contract).
                    let moved = unsafe {
                        self.alloc(Layout::from_size_align_unchecked(new_size, layout.align()))
                    };
                    if !moved.is_null() {
                        // SAFETY: both blocks hold at least the smaller size, and are distinct.
                        unsafe {
                            ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                            self.dealloc(block, layout);
                        }
                    }
                    moved
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_size_takes_the_smallest_class_that_holds_it() {
        for size in 0..=LARGEST {
            let c = class(size, 8).expect("small enough");
            assert!(SIZES[c] >= size, "{size} fits its class");
            assert!(
                c == 0 || SIZES[c - 1] < size,
                "{size}: no smaller class holds it"
            );
        }
        assert_eq!(class(LARGEST + 1, 8), None);
        assert_eq!(class(16, 32), None, "more than 16-aligned goes to malloc");
        assert_eq!(class(1, 1), Some(0));
        assert!(SIZES.iter().all(|s| s % ALIGN == 0));
    }
}
