//! Convolution entry points of the models: burn's ops, or sonic's own CPU kernel
//! (`nn::cpu::conv`, feature `flex`) when the backend is `Flex`, the input f32 and the
//! convolution stride 1, dilation 1, one group, symmetric padding — every 3x3 and 1x1
//! convolution of the UNet, the VAE and RIFE's flow blocks, and the temporal 3x1x1 ones.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv3d, ConvTranspose2d};
use burn::prelude::Backend;
use burn::tensor::Tensor;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;

/// `conv.forward(x)`, through sonic's CPU kernel where it applies.
///
/// # Shapes
/// - `x`: `[batch, channels_in, height, width]`
/// - returns `[batch, channels_out, height_out, width_out]`
pub fn conv2d_forward<B: Backend>(conv: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    #[cfg(feature = "flex")]
    {
        use burn::nn::PaddingConfig2d;
        let [kh, kw] = conv.kernel_size;
        let padding = match conv.padding {
            PaddingConfig2d::Valid => Some([0, 0]),
            // Stride 1 and an odd kernel: (k - 1) / 2 on both sides.
            PaddingConfig2d::Same if kh % 2 == 1 && kw % 2 == 1 => Some([kh / 2, kw / 2]),
            PaddingConfig2d::Explicit(top, left, bottom, right)
                if top == bottom && left == right =>
            {
                Some([top, left])
            }
            _ => None,
        };
        if let (Some(padding), [1, 1], [1, 1], 1) =
            (padding, conv.stride, conv.dilation, conv.groups)
        {
            return conv2d_stride1(
                x,
                conv.weight.val(),
                conv.bias.as_ref().map(Param::val),
                padding,
            );
        }
    }
    conv.forward(x)
}

/// A stride-1, dilation-1, one-group 2-D convolution with symmetric zero padding `padding`
/// (`[rows, columns]`), through sonic's CPU kernel where it applies and burn's `conv2d`
/// otherwise.
///
/// # Shapes
/// - `x`: `[batch, channels_in, height, width]`
/// - `weight`: `[channels_out, channels_in, kernel_h, kernel_w]`
/// - `bias`: `[channels_out]`
/// - returns `[batch, channels_out, height + 2 * padding[0] - kernel_h + 1, ...]`
pub fn conv2d_stride1<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    padding: [usize; 2],
) -> Tensor<B, 4> {
    #[cfg(feature = "flex")]
    if let Some(y) = cpu_conv2d(&x, &weight, bias.as_ref(), padding) {
        return y;
    }
    conv2d(
        x,
        weight,
        bias,
        ConvOptions::new([1, 1], padding, [1, 1], 1),
    )
}

/// The convolution on sonic's CPU kernel, or `None` when it does not apply (another backend,
/// dtype or layout, or a weight that does not match the input). The tensors are cloned
/// (a reference count), not copied.
#[cfg(feature = "flex")]
fn cpu_conv2d<B: Backend>(
    x: &Tensor<B, 4>,
    weight: &Tensor<B, 4>,
    bias: Option<&Tensor<B, 1>>,
    padding: [usize; 2],
) -> Option<Tensor<B, 4>> {
    use super::cpu::{conv, from_flex, to_flex};
    let [batch, cin, h, w] = x.dims();
    let [cout, weight_cin, kh, kw] = weight.dims();
    let geometry = conv::Geometry {
        batch,
        cin,
        h,
        w,
        cout,
        kh,
        kw,
        ph: padding[0],
        pw: padding[1],
    };
    let (oh, ow) = geometry.output_hw()?;
    if weight_cin != cin {
        return None;
    }
    let x = to_flex(x.clone()).ok()?;
    let weight = to_flex(weight.clone()).ok()?;
    let bias = match bias {
        Some(bias) => Some(to_flex(bias.clone()).ok()?),
        None => None,
    };
    let out = conv::conv2d(
        x.values(),
        weight.values(),
        bias.as_ref().map(|b| b.values()),
        &geometry,
    );
    Some(from_flex(out, [batch, cout, oh, ow]))
}

/// `conv.forward(x)`, through sonic's CPU kernel (`nn::cpu::conv::conv_transpose2d_k4s2`) for
/// the 4x4, stride-2, padding-1 transposed convolutions (RIFE's upsampling heads) on `Flex`,
/// burn's op otherwise.
///
/// # Shapes
/// - `x`: `[batch, channels_in, height, width]`
/// - returns `[batch, channels_out, height_out, width_out]` (`2 * height` for the kernel's case)
pub fn conv_transpose2d_forward<B: Backend>(
    conv: &ConvTranspose2d<B>,
    x: Tensor<B, 4>,
) -> Tensor<B, 4> {
    #[cfg(feature = "flex")]
    if conv.kernel_size == [4, 4]
        && conv.stride == [2, 2]
        && conv.padding == [1, 1]
        && conv.padding_out == [0, 0]
        && conv.dilation == [1, 1]
        && conv.groups == 1
    {
        use super::cpu::{conv as kernel, from_flex, to_flex};
        let [batch, cin, h, w] = x.dims();
        let [weight_cin, cout, _, _] = conv.weight.dims();
        let bias = match conv.bias.as_ref().map(|bias| to_flex(bias.val())) {
            None => Some(None),
            Some(Ok(bias)) => Some(Some(bias)),
            Some(Err(_)) => None,
        };
        if let (true, Some(bias), Ok(weight)) =
            (weight_cin == cin, bias, to_flex(conv.weight.val()))
        {
            match to_flex(x) {
                Ok(x) => {
                    let out = kernel::conv_transpose2d_k4s2(
                        x.values(),
                        weight.values(),
                        bias.as_ref().map(|b| b.values()),
                        [batch, cin, h, w],
                        cout,
                    );
                    return from_flex(out, [batch, cout, 2 * h, 2 * w]);
                }
                Err(x) => return conv.forward(x),
            }
        }
    }
    conv.forward(x)
}

/// Applies a Conv3d whose kernel is `(k, 1, 1)` with padding `(k/2, 0, 0)` (stride 1), as a 2-D
/// convolution over `[b, c, f, h*w]` with kernel `(k, 1)`: the same sums, on the
/// better-optimised op. Frames beyond the clip are zeros.
///
/// # Shapes
/// - `x`: `[b, in_channels, f, h, w]`
/// - returns `[b, out_channels, f, h, w]`
pub fn temporal_conv<B: Backend>(conv: &Conv3d<B>, x: Tensor<B, 5>) -> Tensor<B, 5> {
    let [b, _, f, h, w] = x.dims();
    let weight = conv.weight.val();
    let [out, cin, k, kh, kw] = weight.dims();
    debug_assert!(kh == 1 && kw == 1, "temporal_conv needs a (k, 1, 1) kernel");
    let weight = weight.reshape([out, cin, k, kh * kw]);
    let y = conv2d_stride1(
        x.reshape([b, cin, f, h * w]),
        weight,
        conv.bias.as_ref().map(Param::val),
        [k / 2, 0],
    );
    y.reshape([b, out, f, h, w])
}
