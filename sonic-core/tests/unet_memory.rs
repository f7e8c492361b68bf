//! Peak host memory of loading `unet.pth`, counted by a global allocator (the CPU backend keeps
//! tensors on the heap). One test function: the counter is process-wide, so nothing else may
//! run beside it.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::golden;
use sonic_core::models::unet::{UNetConfig, load_unet};
use sonic_core::weights::{Checkpoint, LoadOptions};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(size: usize) {
    let now = CURRENT.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Loading streams the file: the heap peak is the loaded model plus a few tensors in flight,
/// never the model plus the whole file. Checked on the fixture's `unet.pth` (the released
/// file's 1492 keys, F32) loaded as f32, where holding the file twice would double the peak.
#[test]
fn loading_holds_one_tensor_of_the_file_at_a_time() {
    let path = golden("unet").join("unet.pth");
    let config = UNetConfig::from_diffusers_file(golden("unet").join("unet/config.json")).unwrap();
    let checkpoint = Checkpoint::open(&path).unwrap();
    let largest = checkpoint
        .keys()
        .map(|k| checkpoint.shape(k).unwrap().iter().product::<usize>() * 4)
        .max()
        .unwrap();
    drop(checkpoint);
    let file = std::fs::metadata(&path).unwrap().len() as usize;

    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let (model, report) = load_unet::<common::TestBackend>(
        &config,
        &path,
        LoadOptions::default(),
        &Default::default(),
    )
    .unwrap();
    let peak = PEAK.load(Ordering::Relaxed) - base;
    let model_bytes = report.parameters * 4;
    drop(model);

    // The tensors are the whole file but for the zip/pickle framing.
    assert!(model_bytes <= file && file < model_bytes + model_bytes / 10);
    // Model + three copies of the largest tensor (raw bytes, decoded values, device copy) +
    // 4 MiB of metadata (1492 key names, shapes, the pickle).
    let bound = model_bytes + 3 * largest + (4 << 20);
    assert!(
        peak <= bound,
        "peak {peak} B > bound {bound} B (model {model_bytes} B, largest tensor {largest} B)"
    );
    assert!(
        peak < model_bytes + file / 2,
        "peak {peak} B: the file is held twice"
    );
}
