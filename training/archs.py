"""Hair-segmentation architectures, selected by name from a registry.

Every builder takes ``(input_size, width, batch_size)`` and returns a tf_keras functional model that

* takes raw RGB values 0..255 (``Rescaling`` inside: the preprocessing contract),
* ends in a one-channel sigmoid hair probability at the input resolution,
* uses only layers that tfmot pruning and quantization-aware training handle (Conv2D, DepthwiseConv2D,
  BatchNormalization right after a conv, ReLU, MaxPool, bilinear UpSampling2D, Concatenate, Add), so
  every architecture can go through ``hairseg-edge export --prune --qat``.

Registry names: ``custom_cnn``, ``unet``, ``deeplabv3`` (the three of the original study),
``mobile_unet`` (MobileNetV2-style) and ``fused_unet`` (an int8-first mobile design without depthwise
convs: the default, and the architecture of the bundled model). ``width`` scales every channel count.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .keras_compat import keras

layers = keras.layers

#: BatchNorm momentum: Keras' 0.99/0.999 defaults leave the moving statistics far behind the weights
#: when training from scratch for a few thousand steps (inference-mode IoU collapses), see KNOWN-GROUND.
BN_MOMENTUM = 0.9
DEFAULT_ARCH = "fused_unet"


@dataclass(frozen=True)
class ArchSpec:
    name: str
    builder: Callable[..., keras.Model]
    default_width: float
    summary: str


def _ch(n: float, width: float, minimum: int = 8, divisor: int = 8) -> int:
    """Scale a channel count by width, rounded to a multiple of ``divisor`` (SIMD friendly)."""
    v = max(minimum, int(n * width + divisor / 2) // divisor * divisor)
    if v < 0.9 * n * width:  # never round down by more than 10%
        v += divisor
    return v


def _conv_bn_relu(x, filters: int, name: str, kernel: int = 3, stride: int = 1, dilation: int = 1,
                  relu6: bool = False):
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", dilation_rate=dilation,
                      use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.ReLU(6.0 if relu6 else None, name=f"{name}_relu")(x)


def _sep_conv_bn_relu(x, filters: int, name: str, stride: int = 1, dilation: int = 1):
    """Depthwise 3x3 + pointwise 1x1, each followed by BN + ReLU (tfmot-friendly separable conv)."""
    x = layers.DepthwiseConv2D(3, strides=stride, padding="same", dilation_rate=dilation,
                               use_bias=False, name=f"{name}_dw")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_dw_bn")(x)
    x = layers.ReLU(6.0, name=f"{name}_dw_relu")(x)
    x = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_pw")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_pw_bn")(x)
    return layers.ReLU(6.0, name=f"{name}_pw_relu")(x)


def _inputs(input_size: int, batch_size: int | None):
    inp = keras.Input(shape=(input_size, input_size, 3), batch_size=batch_size, name="image")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inp)  # the contract: raw 0..255 in
    return inp, x


def _head(x, name: str = "head", upsample: int = 1):
    x = layers.Conv2D(1, 1, name=f"{name}_logits")(x)
    if upsample > 1:
        x = layers.UpSampling2D(upsample, interpolation="bilinear", name=f"{name}_up")(x)
    # float32 even under a mixed-precision policy: the sigmoid and the loss need the range.
    return layers.Activation("sigmoid", dtype="float32", name="hair_probability")(x)


def _check_size(input_size: int, stride: int) -> None:
    if input_size % stride:
        raise ValueError(f"input size must be a multiple of {stride} for this architecture, got {input_size}")


# --- custom_cnn: the original study's plain encoder-decoder (no skips) ---------------------------------
def build_custom_cnn(input_size: int = 160, width: float = 0.5, batch_size: int | None = None) -> keras.Model:
    """Conv-BN-ReLU encoder (4 poolings) and an upsampling decoder without skip connections."""
    _check_size(input_size, 16)
    inp, x = _inputs(input_size, batch_size)
    filters = [_ch(f, width) for f in (32, 64, 128, 256)]
    for i, f in enumerate(filters):
        x = _conv_bn_relu(x, f, f"enc{i}a")
        x = _conv_bn_relu(x, f, f"enc{i}b")
        x = layers.MaxPooling2D(2, name=f"enc{i}_pool")(x)
    x = _conv_bn_relu(x, _ch(256, width), "bottleneck")
    for i, f in enumerate(reversed(filters)):
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"dec{i}_up")(x)
        x = _conv_bn_relu(x, f, f"dec{i}")
    return keras.Model(inp, _head(x), name="custom_cnn")


# --- unet: the classic U-Net -----------------------------------------------------------------------------
def build_unet(input_size: int = 160, width: float = 0.25, batch_size: int | None = None) -> keras.Model:
    """Ronneberger's U-Net (64..1024 filters at width 1), bilinear upsampling instead of transposed conv."""
    _check_size(input_size, 16)
    inp, x = _inputs(input_size, batch_size)
    filters = [_ch(f, width) for f in (64, 128, 256, 512)]
    skips = []
    for i, f in enumerate(filters):
        x = _conv_bn_relu(x, f, f"enc{i}a")
        x = _conv_bn_relu(x, f, f"enc{i}b")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"enc{i}_pool")(x)
    x = _conv_bn_relu(x, _ch(1024, width), "bottleneck_a")
    x = _conv_bn_relu(x, _ch(1024, width), "bottleneck_b")
    for i, (f, skip) in enumerate(zip(reversed(filters), reversed(skips))):
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"dec{i}_up")(x)
        x = layers.Concatenate(name=f"dec{i}_concat")([x, skip])
        x = _conv_bn_relu(x, f, f"dec{i}a")
        x = _conv_bn_relu(x, f, f"dec{i}b")
    return keras.Model(inp, _head(x), name="unet")


# --- deeplabv3: atrous encoder + ASPP --------------------------------------------------------------------
def build_deeplabv3(input_size: int = 160, width: float = 0.25, batch_size: int | None = None) -> keras.Model:
    """DeepLabV3: a residual-free conv encoder at output stride 8 with atrous convolutions, ASPP
    (1x1, three dilated 3x3 and image pooling) and bilinear upsampling to the input resolution."""
    _check_size(input_size, 8)
    inp, x = _inputs(input_size, batch_size)
    x = _conv_bn_relu(x, _ch(64, width), "stem_a", stride=2)
    x = _conv_bn_relu(x, _ch(64, width), "stem_b")
    x = _conv_bn_relu(x, _ch(128, width), "block1_a", stride=2)
    x = _conv_bn_relu(x, _ch(128, width), "block1_b")
    x = _conv_bn_relu(x, _ch(256, width), "block2_a", stride=2)
    x = _conv_bn_relu(x, _ch(256, width), "block2_b")
    # Output stride stays 8 from here: dilation replaces further striding (atrous convolution).
    x = _conv_bn_relu(x, _ch(512, width), "block3_a", dilation=2)
    x = _conv_bn_relu(x, _ch(512, width), "block3_b", dilation=4)
    feat = input_size // 8
    aspp_ch = _ch(256, width)
    # Rates 6/12/18 are for 65x65 feature maps; scale them to this feature size so taps stay inside.
    rates: list[int] = []
    for r in (6, 12, 18):
        rates.append(max(len(rates) + 1, round(r * feat / 65 * 2), rates[-1] + 1 if rates else 1))
    branches = [_conv_bn_relu(x, aspp_ch, "aspp_1x1", kernel=1)]
    for r in rates:
        branches.append(_conv_bn_relu(x, aspp_ch, f"aspp_d{r}", dilation=r))
    pooled = layers.GlobalAveragePooling2D(keepdims=True, name="aspp_pool")(x)
    pooled = _conv_bn_relu(pooled, aspp_ch, "aspp_pool_proj", kernel=1)
    pooled = layers.UpSampling2D(feat, interpolation="bilinear", name="aspp_pool_up")(pooled)
    branches.append(pooled)
    x = layers.Concatenate(name="aspp_concat")(branches)
    x = _conv_bn_relu(x, aspp_ch, "aspp_proj", kernel=1)
    x = _conv_bn_relu(x, aspp_ch, "head_conv")
    return keras.Model(inp, _head(x, upsample=8), name="deeplabv3")


# --- mobile_unet: MobileNetV2-style encoder + light U-Net decoder -----------------------------------------
def _inverted_residual(x, expansion: int, out_ch: int, stride: int, name: str):
    in_ch = x.shape[-1]
    y = x
    if expansion != 1:
        y = layers.Conv2D(in_ch * expansion, 1, use_bias=False, name=f"{name}_expand")(y)
        y = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_expand_bn")(y)
        y = layers.ReLU(6.0, name=f"{name}_expand_relu")(y)
    y = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"{name}_dw")(y)
    y = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_dw_bn")(y)
    y = layers.ReLU(6.0, name=f"{name}_dw_relu")(y)
    y = layers.Conv2D(out_ch, 1, use_bias=False, name=f"{name}_project")(y)
    y = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_project_bn")(y)
    if stride == 1 and in_ch == out_ch:
        y = layers.Add(name=f"{name}_add")([x, y])
    return y


# (expansion t, channels c, repeats n, stride s) as in MobileNetV2, the tail trimmed (128 channels,
# expansion 4, no 320-channel stage): hair needs context at stride 32, not rich features, and the tail
# holds most of the weights (this keeps the int8 file near 300 KB at width 0.5).
_MBV2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 3, 2), (6, 96, 2, 1), (4, 128, 2, 2))


def build_mobile_unet(input_size: int = 160, width: float = 0.5, batch_size: int | None = None,
                      decoder_channels: tuple[int, ...] = (64, 48, 32, 24)) -> keras.Model:
    """MobileNetV2 inverted-residual encoder (width multiplier) + separable-conv U-Net decoder.

    Skips at strides 16, 8, 4 and 2; each decoder stage upsamples bilinearly, concatenates the skip and
    applies one depthwise-separable conv. The head predicts at stride 2 and upsamples bilinearly, which
    halves the decoder's cost at the full resolution with no visible loss on hair boundaries.
    """
    _check_size(input_size, 32)
    inp, x = _inputs(input_size, batch_size)
    x = _conv_bn_relu(x, _ch(32, width), "stem", stride=2, relu6=True)
    skips = {}
    stride = 2
    block = 0
    for t, c, n, s in _MBV2_STAGES:
        if s == 2:
            skips[stride] = x
            stride *= 2
        for i in range(n):
            x = _inverted_residual(x, t, _ch(c, width), s if i == 0 else 1, f"block{block}")
            block += 1
    # x is at stride 32; skips at 16, 8, 4, 2.
    dec_width = max(width, 0.35) / 0.5  # the decoder is already slim; scale it gently
    for i, (skip_stride, ch) in enumerate(zip((16, 8, 4, 2), decoder_channels)):
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"dec{i}_up")(x)
        x = layers.Concatenate(name=f"dec{i}_concat")([x, skips[skip_stride]])
        x = _sep_conv_bn_relu(x, _ch(ch, dec_width), f"dec{i}")
    return keras.Model(inp, _head(x, upsample=2), name="mobile_unet")


# --- fused_unet: an int8-first mobile design (dense convs where int8 pays) ------------------------------
def _fused_block(x, out_ch: int, stride: int, name: str, expansion: int = 2):
    """Fused inverted residual (EfficientNetV2 / MobileDets "fused IBN"): one dense 3x3 conv expands,
    a 1x1 conv projects. At high resolution a dense 3x3 conv keeps XNNPACK's int8 GEMM kernels busy,
    where a depthwise conv is memory-bound and gains little from int8."""
    in_ch = x.shape[-1]
    y = _conv_bn_relu(x, (in_ch if stride == 1 else out_ch) * expansion, f"{name}_fused", stride=stride,
                      relu6=True)
    y = layers.Conv2D(out_ch, 1, use_bias=False, name=f"{name}_project")(y)
    y = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_project_bn")(y)
    if stride == 1 and in_ch == out_ch:
        y = layers.Add(name=f"{name}_add")([x, y])
    return y


def _fused_decoder(x, skips, width: float):
    """fused_unet's decoder, shared by fused_unet_ctx: from stride 32, bilinear x2 steps, each adding a
    1x1-projected skip, then a 3x3 conv. The layer names are part of saved models and checkpoints."""
    dec = {16: _ch(48, width), 8: _ch(32, width), 4: _ch(24, width), 2: _ch(16, width)}
    x = _conv_bn_relu(x, dec[16], "dec_in", kernel=1)
    for i, s in enumerate((16, 8, 4, 2)):
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"dec{i}_up")(x)
        skip = layers.Conv2D(x.shape[-1], 1, use_bias=False, name=f"dec{i}_skip")(skips[s])
        skip = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"dec{i}_skip_bn")(skip)
        x = layers.Add(name=f"dec{i}_add")([x, skip])
        x = _conv_bn_relu(x, dec[s], f"dec{i}", relu6=True)
    return x


def build_fused_unet(input_size: int = 160, width: float = 0.75, batch_size: int | None = None) -> keras.Model:
    """Int8-first mobile U-Net: fused blocks at strides 4-8 (where the time goes), plain 3x3 convs at
    strides 16-32, and a decoder that adds 1x1-projected skips to the upsampled path before one 3x3 conv.

    Why no depthwise convs: int8 buys ~3x on dense convs but ~1.3x on a depthwise-heavy net (a depthwise
    conv is memory-bound), and every output channel of a quantized conv carries a scale, a zero point
    and an int32 bias (28 bytes), which a depthwise conv's 9 weights per channel cannot amortise: the
    int8 file of ``mobile_unet`` is 0.45x its float32 file, this one's 0.29x (benchmarks/results).
    Addition instead of concatenation keeps the decoder narrow; the head predicts at stride 2.
    """
    _check_size(input_size, 32)
    inp, x = _inputs(input_size, batch_size)
    ch = {s: _ch(c, width) for s, c in {2: 16, 4: 24, 8: 40, 16: 64, 32: 96}.items()}
    x = _conv_bn_relu(x, ch[2], "stem", stride=2, relu6=True)
    skips = {2: x}
    x = _fused_block(x, ch[4], 2, "fused0")
    skips[4] = x = _fused_block(x, ch[4], 1, "fused1")
    x = _fused_block(x, ch[8], 2, "fused2")
    skips[8] = x = _fused_block(x, ch[8], 1, "fused3")
    x = _conv_bn_relu(x, ch[16], "tail0", stride=2, relu6=True)
    skips[16] = x = _conv_bn_relu(x, ch[16], "tail1", relu6=True)
    x = _conv_bn_relu(x, ch[32], "tail2", stride=2, relu6=True)
    x = _conv_bn_relu(x, ch[32], "tail3", relu6=True)
    x = _fused_decoder(x, skips, width)
    return keras.Model(inp, _head(x, upsample=2), name="fused_unet")


# --- fused_unet_ctx: the accurate tier's design (fused_unet + depth and context at low resolution) -----
def _residual_conv(x, name: str):
    """Two 3x3 conv-BN with ReLU6 between and an identity skip (a ResNet basic block). Used at strides
    16-32 only: there a 3x3 conv costs few MACs per weight, so depth buys capacity almost free of time."""
    ch = x.shape[-1]
    y = _conv_bn_relu(x, ch, f"{name}_a", relu6=True)
    y = layers.Conv2D(ch, 3, padding="same", use_bias=False, name=f"{name}_b_conv")(y)
    y = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_b_bn")(y)
    return layers.Add(name=f"{name}_add")([x, y])


def _context_module(x, name: str = "ctx"):
    """Image-level context at stride 32 (a light ASPP): the features, a dilated 3x3 view and the global
    average (1x1 conv, spread back bilinearly), concatenated and projected by a 1x1 conv. Hair vs. a
    hair-coloured background is often a question of where the head is in the frame, which a 7x7 map's
    3x3 convs do not see whole."""
    ch = x.shape[-1]
    local = _conv_bn_relu(x, ch, f"{name}_dil", dilation=2, relu6=True)
    pooled = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(x)
    pooled = _conv_bn_relu(pooled, ch, f"{name}_pool_proj", kernel=1, relu6=True)
    pooled = layers.UpSampling2D(x.shape[1], interpolation="bilinear", name=f"{name}_pool_up")(pooled)
    x = layers.Concatenate(name=f"{name}_concat")([x, local, pooled])
    return _conv_bn_relu(x, ch, f"{name}_proj", kernel=1, relu6=True)


def build_fused_unet_ctx(input_size: int = 256, width: float = 1.0, batch_size: int | None = None,
                         low_res_blocks: int = 2) -> keras.Model:
    """fused_unet made larger where it is cheap: one more fused block at stride 8, ``low_res_blocks``
    residual 3x3 blocks at stride 16 and at stride 32, and a context module (dilated + image pooling)
    before the decoder; the decoder and the stride-2/4 layers, where the time goes, are fused_unet's.
    Same layer vocabulary as fused_unet (no depthwise convs: int8-first), so it prunes and takes QAT."""
    _check_size(input_size, 32)
    inp, x = _inputs(input_size, batch_size)
    ch = {s: _ch(c, width) for s, c in {2: 16, 4: 24, 8: 40, 16: 64, 32: 96}.items()}
    x = _conv_bn_relu(x, ch[2], "stem", stride=2, relu6=True)
    skips = {2: x}
    x = _fused_block(x, ch[4], 2, "fused0")
    skips[4] = x = _fused_block(x, ch[4], 1, "fused1")
    x = _fused_block(x, ch[8], 2, "fused2")
    x = _fused_block(x, ch[8], 1, "fused3")
    skips[8] = x = _fused_block(x, ch[8], 1, "fused4")
    x = _conv_bn_relu(x, ch[16], "tail0", stride=2, relu6=True)
    x = _conv_bn_relu(x, ch[16], "tail1", relu6=True)
    for i in range(low_res_blocks):
        x = _residual_conv(x, f"res16_{i}")
    skips[16] = x
    x = _conv_bn_relu(x, ch[32], "tail2", stride=2, relu6=True)
    x = _conv_bn_relu(x, ch[32], "tail3", relu6=True)
    for i in range(low_res_blocks):
        x = _residual_conv(x, f"res32_{i}")
    x = _context_module(x)
    x = _fused_decoder(x, skips, width)
    return keras.Model(inp, _head(x, upsample=2), name="fused_unet_ctx")


REGISTRY: dict[str, ArchSpec] = {
    "custom_cnn": ArchSpec("custom_cnn", build_custom_cnn, 0.5,
                           "plain conv encoder-decoder, BatchNorm+ReLU, no skips (original study)"),
    "unet": ArchSpec("unet", build_unet, 0.25, "classic U-Net with skip connections (original study)"),
    "deeplabv3": ArchSpec("deeplabv3", build_deeplabv3, 0.25,
                          "atrous encoder at output stride 8 + ASPP (original study)"),
    "mobile_unet": ArchSpec("mobile_unet", build_mobile_unet, 0.5,
                            "MobileNetV2 inverted residuals + separable U-Net decoder"),
    "fused_unet": ArchSpec("fused_unet", build_fused_unet, 0.75,
                           "int8-first mobile U-Net: fused and plain 3x3 convs, no depthwise (default)"),
    "fused_unet_ctx": ArchSpec("fused_unet_ctx", build_fused_unet_ctx, 1.0,
                               "fused_unet + residual depth and a context module at strides 16-32 "
                               "(the large tier)"),
}


def arch_names() -> list[str]:
    return list(REGISTRY)


def get_arch(name: str) -> ArchSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, REGISTRY, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown architecture {name!r}{hint}; choose from {', '.join(REGISTRY)}") from None


def build_model(arch: str = DEFAULT_ARCH, input_size: int = 160, width: float | None = None,
                batch_size: int | None = None) -> keras.Model:
    """Build a registered architecture. ``batch_size=1`` gives the fixed-batch graph used for export."""
    spec = get_arch(arch)
    if width is not None and not 0.05 <= width <= 4.0:
        raise ValueError(f"width must be in [0.05, 4], got {width}")
    return spec.builder(input_size=input_size, width=spec.default_width if width is None else width,
                        batch_size=batch_size)


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates of one forward pass (convolutions and dense layers; the rest is noise)."""
    total = 0
    for layer in model.layers:
        cls = type(layer).__name__
        if cls not in ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose", "Dense"):
            continue
        out_shape = layer.output_shape
        out_h, out_w = (out_shape[1], out_shape[2]) if len(out_shape) == 4 else (1, 1)
        in_ch = layer.input_shape[-1]
        if cls == "Conv2D":
            kh, kw = layer.kernel_size
            total += out_h * out_w * kh * kw * in_ch * layer.filters
        elif cls == "DepthwiseConv2D":
            kh, kw = layer.kernel_size
            total += out_h * out_w * kh * kw * in_ch * layer.depth_multiplier
        elif cls == "SeparableConv2D":
            kh, kw = layer.kernel_size
            total += out_h * out_w * (kh * kw * in_ch * layer.depth_multiplier
                                      + in_ch * layer.depth_multiplier * layer.filters)
        elif cls == "Conv2DTranspose":
            kh, kw = layer.kernel_size
            in_shape = layer.input_shape
            total += in_shape[1] * in_shape[2] * kh * kw * in_ch * layer.filters
        else:
            total += in_ch * layer.units
    return int(total)


def describe_archs(input_size: int = 256) -> list[dict]:
    """Parameters and MACs of every registered architecture at its default width."""
    rows = []
    for name, spec in REGISTRY.items():
        m = build_model(name, input_size=input_size, batch_size=1)
        rows.append({"arch": name, "width": spec.default_width, "input_size": input_size,
                     "params": int(m.count_params()), "macs": count_macs(m), "summary": spec.summary})
        del m
        keras.backend.clear_session()
    return rows
