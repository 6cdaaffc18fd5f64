// XLA FFI handlers: the parameter gradients of a bias add and of PReLU on bfloat16 maps, summed
// in float32 in one pass over the map.
//
// XLA:CPU sums a bfloat16 map in float32 by first writing a float32 copy of it, then
// reducing that (YNNPACK): on G's 16 x 48 x 48 x 256 upsampling map those copies alone
// took ~17 ms of a 0.28 s SRResNet step (AMX Xeon). Here each element is read once:
//   SrganBiasGradBf16:  dy [M, C] -> db [C] = sum over M of dy (float32)
//   SrganPreluBwdBf16:  x, dy [M]  -> dx = dy where x >= 0, else bf16(slope * dy);
//                                     dslope = sum of x * dy where x < 0 (float32)
// (as autodiff of srgan.PReLU / fast_conv.add_bias computes them; rounding to bf16 is
// round-to-nearest-even, as XLA's). LeakyReLU: SrganLeakyFwdBf16 (y = x where x >= 0, else
// bf16(slope * x)); its input gradient is SrganPreluBwdBf16's dx with the constant slope. The loops are cloned for x86-64-v4 (AVX-512 BW) and v3 (AVX2): the
// baseline build's SSE2 code ran them 2.2x slower. Threads: onednn_runtime.h's team.
#pragma GCC optimize("O3")  // vectorised loops (the build is -O2)

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "onednn_runtime.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using namespace srgan_onednn;

inline float ToF32(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint16_t ToBf16(float f) {  // round to nearest even; NaN stays NaN
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16, quiet_nan = (u >> 16) | 0x40u;
  return static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded);  // a select: vectorises
}

__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) void AddRows(const uint16_t* dy, int64_t rows,
                                                                           int64_t c, float* acc) {
  for (int64_t r = 0; r < rows; ++r) {
    const uint16_t* row = dy + r * c;
#pragma omp simd
    for (int64_t j = 0; j < c; ++j) acc[j] += ToF32(row[j]);
  }
}

// dy: [..., C] (any rank >= 1) -> db: [C].
ffi::Error BiasGrad(ffi::AnyBuffer dy, ffi::ResultBuffer<ffi::F32, 1> db) {
  if (dy.element_type() != ffi::BF16) return ffi::Error::InvalidArgument("bias gradient: dy must be bfloat16");
  auto dims = dy.dimensions();
  if (dims.size() == 0 || dims.back() != db->element_count())
    return ffi::Error::InvalidArgument("bias gradient: db's size differs from dy's last dimension");
  const int64_t c = dims.back(), m = c ? static_cast<int64_t>(dy.element_count()) / c : 0;
  const auto* in = static_cast<const uint16_t*>(dy.untyped_data());
  float* out = db->typed_data();
  return Finish(Execute([&] {
    std::vector<float> partial(static_cast<size_t>(omp_get_max_threads()) * c, 0.0f);
    const int teams = ForChunks(m, 64, [&](int t, int64_t lo, int64_t hi) {
      AddRows(in + lo * c, hi - lo, c, partial.data() + static_cast<size_t>(t) * c);
    });
    for (int64_t j = 0; j < c; ++j) {
      float s = 0.0f;
      for (int t = 0; t < teams; ++t) s += partial[static_cast<size_t>(t) * c + j];
      out[j] = s;
    }
  }));
}

__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) float PreluRows(const uint16_t* x, const uint16_t* dy,
                                                                              uint16_t* dx, int64_t n, float slope) {
  float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) {
    const float xv = ToF32(x[i]), g = ToF32(dy[i]);
    const bool pass = xv >= 0.0f;  // jnp.where(x >= 0, ...): NaN takes the slope's branch
    dx[i] = pass ? dy[i] : ToBf16(slope * g);
    acc += pass ? 0.0f : xv * g;
  }
  return acc;
}

// x, dy: the same shape; slope: a float32 scalar -> dx (x's shape), dslope (scalar).
ffi::Error PreluBwd(ffi::AnyBuffer x, ffi::AnyBuffer dy, ffi::Buffer<ffi::F32, 0> slope,
                    ffi::Result<ffi::AnyBuffer> dx, ffi::ResultBuffer<ffi::F32, 0> dslope) {
  if (x.element_type() != ffi::BF16 || dy.element_type() != ffi::BF16 || dx->element_type() != ffi::BF16)
    return ffi::Error::InvalidArgument("PReLU gradient: x, dy and dx must be bfloat16");
  if (x.element_count() != dy.element_count() || x.element_count() != dx->element_count())
    return ffi::Error::InvalidArgument("PReLU gradient: x, dy and dx differ in size");
  const int64_t m = static_cast<int64_t>(x.element_count());
  const auto* xs = static_cast<const uint16_t*>(x.untyped_data());
  const auto* gs = static_cast<const uint16_t*>(dy.untyped_data());
  auto* out = static_cast<uint16_t*>(dx->untyped_data());
  const float a = *slope.typed_data();
  float* ds = dslope->typed_data();
  return Finish(Execute([&] {
    std::vector<float> partial(omp_get_max_threads(), 0.0f);
    const int teams = ForChunks(m, 4096, [&](int t, int64_t lo, int64_t hi) {
      partial[t] = PreluRows(xs + lo, gs + lo, out + lo, hi - lo, a);
    });
    float s = 0.0f;
    for (int t = 0; t < teams; ++t) s += partial[t];
    *ds = s;
  }));
}

__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) void LeakyRows(const uint16_t* x,
                                                                                             uint16_t* y, int64_t n,
                                                                                             float slope) {
  for (int64_t i = 0; i < n; ++i) {
    const float xv = ToF32(x[i]);
    y[i] = xv >= 0.0f ? x[i] : ToBf16(slope * xv);
  }
}

// LeakyReLU forward: y = x where x >= 0, else bf16(slope * x) (slope: an attribute).
ffi::Error LeakyFwd(ffi::AnyBuffer x, ffi::Result<ffi::AnyBuffer> y, float slope) {
  if (x.element_type() != ffi::BF16 || y->element_type() != ffi::BF16)
    return ffi::Error::InvalidArgument("LeakyReLU: x and y must be bfloat16");
  if (x.element_count() != y->element_count()) return ffi::Error::InvalidArgument("LeakyReLU: x and y differ in size");
  const int64_t m = static_cast<int64_t>(x.element_count());
  const auto* xs = static_cast<const uint16_t*>(x.untyped_data());
  auto* out = static_cast<uint16_t*>(y->untyped_data());
  return Finish(Execute([&] {
    ForChunks(m, 4096, [&](int, int64_t lo, int64_t hi) { LeakyRows(xs + lo, out + lo, hi - lo, slope); });
  }));
}

}  // namespace

using Vec = ffi::Buffer<ffi::F32, 1>;
using Scalar = ffi::Buffer<ffi::F32, 0>;

XLA_FFI_DEFINE_HANDLER_SYMBOL(SrganBiasGradBf16, BiasGrad, ffi::Ffi::Bind().Arg<ffi::AnyBuffer>().Ret<Vec>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(
    SrganPreluBwdBf16, PreluBwd,
    ffi::Ffi::Bind().Arg<ffi::AnyBuffer>().Arg<ffi::AnyBuffer>().Arg<Scalar>().Ret<ffi::AnyBuffer>().Ret<Scalar>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(SrganLeakyFwdBf16, LeakyFwd,
                              ffi::Ffi::Bind().Arg<ffi::AnyBuffer>().Ret<ffi::AnyBuffer>().Attr<float>("slope"));
