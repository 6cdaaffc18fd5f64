// XLA FFI handlers: BatchNorm in training mode (batch statistics) on NHWC maps, float32 or
// bfloat16, forward and backward through oneDNN's batch_normalization primitives.
//
// Forward: y = (x - mean) / sqrt(var + eps) * scale + shift, with the batch's mean and
// (biased) variance over N, H and W, returned in float32 beside y. Backward: the input
// gradient through the statistics too, and the scale and shift gradients (float32).
// bfloat16 maps are read and written as bfloat16; oneDNN computes in float32 (statistics,
// normalisation) and rounds y and dx once: as Flax's BatchNorm with dtype=bfloat16.
//
// Threads, the engine and the primitive cache: onednn_runtime.h. `SrganBnProbe` builds
// a geometry's two primitives ahead of time and names oneDNN's implementations, so the
// Python side can keep Flax's BatchNorm where oneDNN would use its slow reference code.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>

#include "oneapi/dnnl/dnnl.hpp"
#include "onednn_runtime.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

namespace {

using namespace srgan_onednn;

enum BnKind { kBnFwd = 0, kBnBwd = 1 };

struct BnGeometry {
  int64_t n, h, w, c;
  float eps;
  bool bf16 = false;
  std::string key(BnKind k) const {
    std::string s = std::to_string(k) + (bf16 ? "b" : "f");
    for (int64_t v : {n, h, w, c}) s += "," + std::to_string(v);
    return s + "," + std::to_string(eps);
  }
  std::string Inconsistency() const {
    if (n < 1 || h < 1 || w < 1 || c < 1) return "every size must be >= 1";
    if (!(eps > 0.0f)) return "epsilon must be > 0";
    for (int64_t v : {n, h, w, c})  // oneDNN 3.2's kernels hold sizes in 32-bit ints
      if (v >= (int64_t{1} << 31)) return "a size of 2^31 or more (oneDNN's kernels use 32-bit sizes)";
    return "";
  }
};

struct BnEntry {
  memory::desc data, stat;  // the NHWC map; a float32 vector of C
  dnnl::primitive prim;
  size_t scratchpad_bytes = 0;
  std::string impl;  // oneDNN's implementation, e.g. "bnorm_jit:avx512_core_bf16"
};

const auto kFlags = dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;

std::shared_ptr<BnEntry> BuildBn(const BnGeometry& g, BnKind kind) {
  auto& eng = Engine();
  auto e = std::make_shared<BnEntry>();
  e->data = memory::desc({g.n, g.c, g.h, g.w}, g.bf16 ? dt::bf16 : dt::f32, tag::nhwc);
  e->stat = memory::desc({g.c}, dt::f32, tag::x);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  dnnl::batch_normalization_forward::primitive_desc fwd(eng, dnnl::prop_kind::forward_training, e->data,
                                                        e->data, g.eps, kFlags, attr);
  if (kind == kBnFwd) {
    e->prim = dnnl::batch_normalization_forward(fwd);
    e->scratchpad_bytes = fwd.scratchpad_desc().get_size();
    e->impl = fwd.impl_info_str();
  } else {
    dnnl::batch_normalization_backward::primitive_desc pd(eng, dnnl::prop_kind::backward, e->data, e->data,
                                                          e->data, g.eps, kFlags, fwd, attr);
    e->prim = dnnl::batch_normalization_backward(pd);
    e->scratchpad_bytes = pd.scratchpad_desc().get_size();
    e->impl = pd.impl_info_str();
  }
  return e;
}

Cache<BnEntry>& BnCache() {
  static auto* cache = new Cache<BnEntry>(128);  // never destroyed: the worker may still use it at exit
  return *cache;
}

std::shared_ptr<BnEntry> GetBn(const BnGeometry& g, BnKind kind) {
  return BnCache().Get(g.key(kind), [&] { return BuildBn(g, kind); });
}

bool SameDims(ffi::Span<const int64_t> a, ffi::Span<const int64_t> b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
}

// Runs the cached `kind` primitive of g on XLA's buffers: (argument, buffer, is it the map
// (else a per-channel float32 vector)) for each of its arguments.
struct Arg {
  int id;
  void* data;
  bool map;
};

ffi::Error RunBn(const BnGeometry& g, BnKind kind, std::initializer_list<Arg> args) {
  return Finish(Execute([&] {
    auto e = GetBn(g, kind);
    auto& eng = Engine();
    dnnl::stream s(eng);
    Buf sp(e->scratchpad_bytes);
    std::unordered_map<int, memory> mems;
    for (const Arg& a : args) mems.emplace(a.id, memory(a.map ? e->data : e->stat, eng, a.data));
    mems.emplace(DNNL_ARG_SCRATCHPAD,
                 memory(memory::desc({static_cast<int64_t>(e->scratchpad_bytes)}, dt::u8, tag::x), eng, sp.p));
    e->prim.execute(s, mems);
    s.wait();
  }));
}

template <ffi::DataType T>
using B4 = ffi::Buffer<T, 4>;
template <ffi::DataType T>
using R4 = ffi::ResultBuffer<T, 4>;
using V = ffi::Buffer<ffi::F32, 1>;
using RV = ffi::ResultBuffer<ffi::F32, 1>;

// The geometry of x [N,H,W,C], or an error if a per-channel vector is not of size C.
ffi::Error Geom(ffi::Span<const int64_t> xd, std::initializer_list<int64_t> vector_sizes, float eps, bool bf16,
                BnGeometry* g) {
  *g = {xd[0], xd[1], xd[2], xd[3], eps, bf16};
  for (int64_t s : vector_sizes)
    if (s != g->c) return ffi::Error::InvalidArgument("oneDNN BatchNorm: a per-channel vector's size differs from C");
  std::string bad = g->Inconsistency();
  if (!bad.empty()) return ffi::Error::InvalidArgument("oneDNN BatchNorm: " + bad);
  return ffi::Error::Success();
}

// x, scale, shift -> y, mean, var (biased: the mean square deviation over N, H, W).
template <ffi::DataType T>
ffi::Error Fwd(B4<T> x, V scale, V shift, R4<T> y, RV mean, RV var, float eps) {
  BnGeometry g;
  if (!SameDims(x.dimensions(), y->dimensions()))
    return ffi::Error::InvalidArgument("oneDNN BatchNorm: x and y differ in shape");
  if (auto err = Geom(x.dimensions(), {scale.element_count(), shift.element_count(), mean->element_count(),
                                       var->element_count()},
                      eps, T == ffi::BF16, &g);
      err.failure())
    return err;
  return RunBn(g, kBnFwd,
               {{DNNL_ARG_SRC, x.untyped_data(), true},
                {DNNL_ARG_DST, y->untyped_data(), true},
                {DNNL_ARG_SCALE, scale.untyped_data(), false},
                {DNNL_ARG_SHIFT, shift.untyped_data(), false},
                {DNNL_ARG_MEAN, mean->untyped_data(), false},
                {DNNL_ARG_VARIANCE, var->untyped_data(), false}});
}

// x, dy, mean, var, scale -> dx, dscale, dshift.
template <ffi::DataType T>
ffi::Error Bwd(B4<T> x, B4<T> dy, V mean, V var, V scale, R4<T> dx, RV dscale, RV dshift, float eps) {
  BnGeometry g;
  if (!SameDims(x.dimensions(), dy.dimensions()) || !SameDims(x.dimensions(), dx->dimensions()))
    return ffi::Error::InvalidArgument("oneDNN BatchNorm: x, dy and dx differ in shape");
  if (auto err = Geom(x.dimensions(), {mean.element_count(), var.element_count(), scale.element_count(),
                                       dscale->element_count(), dshift->element_count()},
                      eps, T == ffi::BF16, &g);
      err.failure())
    return err;
  return RunBn(g, kBnBwd,
               {{DNNL_ARG_SRC, x.untyped_data(), true},
                {DNNL_ARG_DIFF_DST, dy.untyped_data(), true},
                {DNNL_ARG_MEAN, mean.untyped_data(), false},
                {DNNL_ARG_VARIANCE, var.untyped_data(), false},
                {DNNL_ARG_SCALE, scale.untyped_data(), false},
                {DNNL_ARG_DIFF_SRC, dx->untyped_data(), true},
                {DNNL_ARG_DIFF_SCALE, dscale->untyped_data(), false},
                {DNNL_ARG_DIFF_SHIFT, dshift->untyped_data(), false}});
}

}  // namespace

#define BN_FWD_BIND(T) \
  ffi::Ffi::Bind().Arg<B4<T>>().Arg<V>().Arg<V>().Ret<B4<T>>().Ret<V>().Ret<V>().Attr<float>("eps")
#define BN_BWD_BIND(T)                                                                                      \
  ffi::Ffi::Bind().Arg<B4<T>>().Arg<B4<T>>().Arg<V>().Arg<V>().Arg<V>().Ret<B4<T>>().Ret<V>().Ret<V>().Attr<float>( \
      "eps")

XLA_FFI_DEFINE_HANDLER_SYMBOL(SrganBnFwd, Fwd<ffi::F32>, BN_FWD_BIND(ffi::F32));
XLA_FFI_DEFINE_HANDLER_SYMBOL(SrganBnBwd, Bwd<ffi::F32>, BN_BWD_BIND(ffi::F32));
XLA_FFI_DEFINE_HANDLER_SYMBOL(SrganBnFwdBf16, Fwd<ffi::BF16>, BN_FWD_BIND(ffi::BF16));
XLA_FFI_DEFINE_HANDLER_SYMBOL(SrganBnBwdBf16, Bwd<ffi::BF16>, BN_BWD_BIND(ffi::BF16));

extern "C" {

// Builds (and caches) the forward and backward primitives of {n, h, w, c, bf16} at `eps`.
// Returns 0 with their implementations in `why` ("fwd;bwd", e.g. "bnorm_jit:avx512_core_bf16;..."),
// else 1 with the reason in `why` (NUL-terminated).
__attribute__((visibility("default"))) int SrganBnProbe(const int64_t* dims, float eps, char* why, int64_t why_size) {
  BnGeometry g{dims[0], dims[1], dims[2], dims[3], eps, dims[4] != 0};
  std::string error = g.Inconsistency(), impls;
  if (error.empty()) {
    error = Worker::Get().Run([&] {
      for (BnKind kind : {kBnFwd, kBnBwd}) impls += (impls.empty() ? "" : ";") + GetBn(g, kind)->impl;
    });
  }
  WriteWhy(error.empty() ? impls : error, why, why_size);
  return error.empty() ? 0 : 1;
}

}  // extern "C"
