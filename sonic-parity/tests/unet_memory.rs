//! Peak host memory of loading `unet.pth`, counted by a global allocator (the CPU backend keeps
//! tensors on the heap). One test function: the counter is process-wide, so nothing else may
//! run beside it.

mod common;

use burn::tensor::DType;
use common::golden;
use sonic_core::models::unet::{UNetConfig, load_unet};
use sonic_core::weights::{Checkpoint, LoadOptions};

mod heap;

/// Peak heap growth (bytes) while `f` runs, above what was allocated when it started.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = heap::reset_peak();
    let out = f();
    (out, heap::peak() - base)
}

/// Loading streams the file: the heap peak is either the checkpoint's metadata being parsed
/// (burn-store's pickle reader: about 12 KB per key, independent of the tensor sizes) or the
/// loaded model plus a few tensors in flight; never the model plus the whole file. Checked on the
/// fixture's `unet.pth` (the released file's 1492 keys, F32) loaded as f16, as Sonic runs the
/// UNet: there the file is twice the model.
#[test]
fn loading_as_f16_holds_one_tensor_of_the_file_at_a_time() {
    let path = golden("unet").join("unet.pth");
    let config = UNetConfig::from_diffusers_file(golden("unet").join("unet/config.json")).unwrap();
    let file = std::fs::metadata(&path).unwrap().len() as usize;

    // Opening alone: names, shapes, dtypes and a reader per tensor, no tensor data.
    let (checkpoint, open_peak) = peak_during(|| Checkpoint::open(&path).unwrap());
    let retained = heap::current();
    let largest = checkpoint
        .keys()
        .map(|k| checkpoint.shape(k).unwrap().iter().product::<usize>() * 4)
        .max()
        .unwrap();
    drop(checkpoint);
    let retained = retained - heap::current();
    assert!(
        open_peak < 12_000 * 1492 + (1 << 20),
        "open peak {open_peak} B"
    );

    let ((model, report), peak) = peak_during(|| {
        load_unet::<common::TestBackend>(
            &config,
            &path,
            LoadOptions::with_dtype(DType::F16),
            &common::device(),
        )
        .unwrap()
    });
    let model_bytes = report.parameters * 2;
    assert_eq!(report.stored_dtypes.get("F32"), Some(&1492));
    assert_eq!(model.conv_in.weight.val().dtype(), DType::F16);
    assert_eq!(
        model.conv_out.bias.as_ref().unwrap().val().dtype(),
        DType::F16
    );
    drop(model);

    // The f32 tensors are the whole file but for the zip/pickle framing.
    assert!(2 * model_bytes <= file && file < 2 * model_bytes + model_bytes / 5);
    // Metadata, then model + four f32 copies of the largest tensor in flight (raw bytes,
    // decoded values, f16 conversion, device copy), with 1 MiB of slack.
    let streaming = (retained + model_bytes + 4 * largest).max(open_peak) + (1 << 20);
    assert!(
        peak <= streaming,
        "peak {peak} B > {streaming} B (open {open_peak} B, model {model_bytes} B, largest \
         tensor {largest} B)"
    );
    assert!(
        peak < retained + model_bytes + file,
        "peak {peak} B: the file is held beside the model"
    );
}
