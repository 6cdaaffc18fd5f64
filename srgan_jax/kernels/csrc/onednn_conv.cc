// XLA FFI handlers: 2-D convolution (NHWC activations, HWIO kernels, float32 or
// bfloat16) forward, input gradient and kernel gradient through oneDNN. bfloat16
// convolutions accumulate in float32 inside oneDNN's kernels (AVX-512 BF16's
// vdpbf16ps, AMX's tiles) and round once to bfloat16 on output.
//
// Threads, the engine and the primitive cache: onednn_runtime.h.
//
// Primitives are built once per geometry and kept in a bounded LRU cache.
// `SrganConvProbe` builds the three primitives of a geometry ahead of time (the
// Python side asks before it lowers a convolution here, and uses XLA's own
// convolution for a geometry oneDNN rejects).
#include <array>
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

enum Kind { kFwd = 0, kBwdData = 1, kBwdWeights = 2, kFused = 3 };
// kFused's post-ops (Geometry::post): y = prelu(conv(x, k) + bias [+ r]), each optional but the bias.
enum Post { kResidual = 1, kPrelu = 2 };

struct Geometry {
  int64_t n, h, w, c, kh, kw, o, ho, wo, sh, sw, pt, pb, pl, pr;
  bool bf16 = false;  // bfloat16 activations and kernel (else float32)
  int64_t post = 0;   // kFused only: Post flags
  std::string key(Kind k) const {
    std::string s = std::to_string(k) + (bf16 ? "b" : "f") + std::to_string(post);
    for (int64_t v : {n, h, w, c, kh, kw, o, ho, wo, sh, sw, pt, pb, pl, pr}) s += "," + std::to_string(v);
    return s;
  }
  // Empty if the sizes are one convolution's: what lax.conv_general_dilated would produce.
  std::string Inconsistency() const {
    if (sh < 1 || sw < 1) return "strides must be >= 1";
    if (pt < 0 || pb < 0 || pl < 0 || pr < 0) return "paddings must be >= 0";
    if (n < 1 || h < 1 || w < 1 || c < 1 || kh < 1 || kw < 1 || o < 1) return "every size must be >= 1";
    int64_t eh = h + pt + pb - kh, ew = w + pl + pr - kw;
    if (eh < 0 || ew < 0) return "the kernel is larger than the padded input";
    if (ho != eh / sh + 1 || wo != ew / sw + 1) return "output size does not match input, kernel, strides and padding";
    // oneDNN 3.2's kernels hold sizes in 32-bit ints: a dimension of 2^31 crashes them (SIGFPE).
    for (int64_t v : {n, h, w, c, kh, kw, o, ho, wo, pt, pb, pl, pr})
      if (v >= (int64_t{1} << 31)) return "a size of 2^31 or more (oneDNN's kernels use 32-bit sizes)";
    return "";
  }
};

struct Entry {
  memory::desc src, dst, w_user;        // NHWC activations, HWIO kernel: the XLA buffers
  dnnl::primitive conv;
  memory::desc weights;                 // the kernel layout the primitive wants
  bool reorder_kernel = false;          // HWIO <-> that layout
  dnnl::primitive kernel_reorder;
  size_t scratchpad_bytes = 0;
  std::string impl;                     // oneDNN's implementation, e.g. "brgconv:avx512_core_bf16"
};

// `conv`, built from `pd`, in e: with its kernel layout, scratchpad, implementation, and the reorder
// between that layout and XLA's HWIO (into it; out of it for a kernel gradient).
template <class PrimitiveDesc>
void Adopt(Entry& e, dnnl::primitive conv, const PrimitiveDesc& pd, const memory::desc& weights, bool kernel_out) {
  e.conv = conv;
  e.weights = weights;
  e.scratchpad_bytes = pd.scratchpad_desc().get_size();
  e.impl = pd.impl_info_str();
  e.reorder_kernel = e.weights != e.w_user;
  if (e.reorder_kernel) {
    memory user(e.w_user, Engine(), nullptr), prim(e.weights, Engine(), nullptr);
    e.kernel_reorder = kernel_out ? dnnl::reorder(prim, user) : dnnl::reorder(user, prim);
  }
}

// kFused: inference forward with the bias and oneDNN post-ops: a residual sum (binary add of a
// map of y's shape and dtype), then PReLU with one slope (a runtime float32 scalar); all in
// float32 inside the kernel, one rounding to y's dtype.
std::shared_ptr<Entry> Build(const Geometry& g, Kind kind) {
  auto& eng = Engine();
  auto e = std::make_shared<Entry>();
  const dt t = g.bf16 ? dt::bf16 : dt::f32;
  e->src = memory::desc({g.n, g.c, g.h, g.w}, t, tag::nhwc);
  e->dst = memory::desc({g.n, g.o, g.ho, g.wo}, t, tag::nhwc);
  e->w_user = memory::desc({g.o, g.c, g.kh, g.kw}, t, tag::hwio);
  const memory::desc &src = e->src, &dst = e->dst;
  memory::desc w_any({g.o, g.c, g.kh, g.kw}, t, tag::any);
  memory::dims strides{g.sh, g.sw}, pad_l{g.pt, g.pl}, pad_r{g.pb, g.pr};
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  auto alg = dnnl::algorithm::convolution_direct;
  if (kind == kFused) {
    dnnl::post_ops ops;
    if (g.post & kResidual) ops.append_binary(dnnl::algorithm::binary_add, dst);
    if (g.post & kPrelu) ops.append_prelu(0);  // mask 0: one slope for every element
    attr.set_post_ops(ops);
    memory::desc bias({g.o}, dt::f32, tag::x);
    dnnl::convolution_forward::primitive_desc pd(eng, dnnl::prop_kind::forward_inference, alg, src, w_any,
                                                 bias, dst, strides, pad_l, pad_r, attr);
    Adopt(*e, dnnl::convolution_forward(pd), pd, pd.weights_desc(), false);
    return e;
  }
  dnnl::convolution_forward::primitive_desc fwd(eng, dnnl::prop_kind::forward_training, alg, src, w_any,
                                                dst, strides, pad_l, pad_r, attr);
  if (kind == kFwd) {
    Adopt(*e, dnnl::convolution_forward(fwd), fwd, fwd.weights_desc(), false);
  } else if (kind == kBwdData) {
    dnnl::convolution_backward_data::primitive_desc pd(eng, alg, src, w_any, dst, strides, pad_l, pad_r,
                                                       fwd, attr);
    Adopt(*e, dnnl::convolution_backward_data(pd), pd, pd.weights_desc(), false);
  } else {
    dnnl::convolution_backward_weights::primitive_desc pd(eng, alg, src, w_any, dst, strides, pad_l,
                                                          pad_r, fwd, attr);
    Adopt(*e, dnnl::convolution_backward_weights(pd), pd, pd.diff_weights_desc(), true);
  }
  return e;
}

Cache<Entry>& PrimitiveCache() {
  // a train step at one size uses ~100 (G, D, VGG x 3 kinds); never destroyed: the worker may
  // still use it at exit
  static auto* cache = new Cache<Entry>(256);
  return *cache;
}

// x: [N,H,W,C], k: [KH,KW,C,O], y: [N,HO,WO,O]; `kind` says which of them is the output (kFused: y,
// with `post` = {bias [O] float32, residual like y, slope float32 [1]}; the last two read only with
// their Post flag in g.post).
ffi::Error Run(Kind kind, void* x, void* k, void* y, const Geometry& g, std::array<void*, 3> post = {}) {
  std::string bad = g.Inconsistency();
  if (!bad.empty()) return ffi::Error::InvalidArgument("oneDNN convolution: " + bad);
  return Finish(Execute([&] {
    auto e = PrimitiveCache().Get(g.key(kind), [&] { return Build(g, kind); });
    auto& eng = Engine();
    dnnl::stream s(eng);
    memory x_mem(e->src, eng, x), y_mem(e->dst, eng, y), k_user(e->w_user, eng, k);
    Buf kbuf(e->reorder_kernel ? e->weights.get_size() : 0), sp(e->scratchpad_bytes);
    memory k_mem = e->reorder_kernel ? memory(e->weights, eng, kbuf.p) : k_user;
    memory sp_mem(memory::desc({static_cast<int64_t>(e->scratchpad_bytes)}, dt::u8, tag::x), eng, sp.p);
    if (kind != kBwdWeights && e->reorder_kernel) {
      e->kernel_reorder.execute(s, {{DNNL_ARG_FROM, k_user}, {DNNL_ARG_TO, k_mem}});
    }
    if (kind == kFwd) {
      e->conv.execute(s, {{DNNL_ARG_SRC, x_mem}, {DNNL_ARG_WEIGHTS, k_mem}, {DNNL_ARG_DST, y_mem},
                          {DNNL_ARG_SCRATCHPAD, sp_mem}});
    } else if (kind == kFused) {
      std::unordered_map<int, memory> args{{DNNL_ARG_SRC, x_mem}, {DNNL_ARG_WEIGHTS, k_mem}, {DNNL_ARG_DST, y_mem},
                                           {DNNL_ARG_SCRATCHPAD, sp_mem},
                                           {DNNL_ARG_BIAS, memory({{g.o}, dt::f32, tag::x}, eng, post[0])}};
      int index = 0;
      if (g.post & kResidual) args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(index++) | DNNL_ARG_SRC_1] = memory(e->dst, eng, post[1]);
      if (g.post & kPrelu) {
        memory::desc one({1, 1, 1, 1}, dt::f32, tag::abcd);
        args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(index++) | DNNL_ARG_WEIGHTS] = memory(one, eng, post[2]);
      }
      e->conv.execute(s, args);
    } else if (kind == kBwdData) {
      e->conv.execute(s, {{DNNL_ARG_DIFF_SRC, x_mem}, {DNNL_ARG_WEIGHTS, k_mem}, {DNNL_ARG_DIFF_DST, y_mem},
                          {DNNL_ARG_SCRATCHPAD, sp_mem}});
    } else {
      e->conv.execute(s, {{DNNL_ARG_SRC, x_mem}, {DNNL_ARG_DIFF_WEIGHTS, k_mem}, {DNNL_ARG_DIFF_DST, y_mem},
                          {DNNL_ARG_SCRATCHPAD, sp_mem}});
      if (e->reorder_kernel) e->kernel_reorder.execute(s, {{DNNL_ARG_FROM, k_mem}, {DNNL_ARG_TO, k_user}});
    }
    s.wait();
  }));
}

// The dims of x, k and y (each rank 4: the FFI binding checks) and the attributes.
Geometry Geom(ffi::Span<const int64_t> xd, ffi::Span<const int64_t> kd, ffi::Span<const int64_t> yd,
              int64_t sh, int64_t sw, int64_t pt, int64_t pb, int64_t pl, int64_t pr) {
  return {xd[0], xd[1], xd[2], xd[3], kd[0], kd[1], yd[3], yd[1], yd[2], sh, sw, pt, pb, pl, pr};
}

// The checks the geometry alone cannot make: N, C and O agree across the three buffers.
ffi::Error Agree(ffi::Span<const int64_t> xd, ffi::Span<const int64_t> kd, ffi::Span<const int64_t> yd) {
  if (xd[0] != yd[0]) return ffi::Error::InvalidArgument("oneDNN convolution: batch sizes differ");
  if (xd[3] != kd[2]) return ffi::Error::InvalidArgument("oneDNN convolution: input channels differ from the kernel's");
  if (yd[3] != kd[3]) return ffi::Error::InvalidArgument("oneDNN convolution: output channels differ from the kernel's");
  return ffi::Error::Success();
}

template <ffi::DataType T>
using B4 = ffi::Buffer<T, 4>;
template <ffi::DataType T>
using R4 = ffi::ResultBuffer<T, 4>;

template <ffi::DataType T>
ffi::Error Fwd(B4<T> x, B4<T> k, R4<T> y, int64_t sh, int64_t sw, int64_t pt, int64_t pb, int64_t pl, int64_t pr) {
  if (auto err = Agree(x.dimensions(), k.dimensions(), y->dimensions()); err.failure()) return err;
  auto g = Geom(x.dimensions(), k.dimensions(), y->dimensions(), sh, sw, pt, pb, pl, pr);
  g.bf16 = T == ffi::BF16;
  return Run(kFwd, x.untyped_data(), k.untyped_data(), y->untyped_data(), g);
}

template <ffi::DataType T>
ffi::Error BwdData(B4<T> dy, B4<T> k, R4<T> dx, int64_t sh, int64_t sw, int64_t pt, int64_t pb, int64_t pl, int64_t pr) {
  if (auto err = Agree(dx->dimensions(), k.dimensions(), dy.dimensions()); err.failure()) return err;
  auto g = Geom(dx->dimensions(), k.dimensions(), dy.dimensions(), sh, sw, pt, pb, pl, pr);
  g.bf16 = T == ffi::BF16;
  return Run(kBwdData, dx->untyped_data(), k.untyped_data(), dy.untyped_data(), g);
}

template <ffi::DataType T>
ffi::Error BwdWeights(B4<T> x, B4<T> dy, R4<T> dk, int64_t sh, int64_t sw, int64_t pt, int64_t pb, int64_t pl, int64_t pr) {
  if (auto err = Agree(x.dimensions(), dk->dimensions(), dy.dimensions()); err.failure()) return err;
  auto g = Geom(x.dimensions(), dk->dimensions(), dy.dimensions(), sh, sw, pt, pb, pl, pr);
  g.bf16 = T == ffi::BF16;
  return Run(kBwdWeights, x.untyped_data(), dk->untyped_data(), dy.untyped_data(), g);
}

template <ffi::DataType T>
ffi::Error Fused(B4<T> x, B4<T> k, ffi::Buffer<ffi::F32, 1> bias, B4<T> r, ffi::Buffer<ffi::F32, 1> slope, R4<T> y,
                 int64_t sh, int64_t sw, int64_t pt, int64_t pb, int64_t pl, int64_t pr, int64_t post) {
  if (auto err = Agree(x.dimensions(), k.dimensions(), y->dimensions()); err.failure()) return err;
  if (post < 0 || post > (kResidual | kPrelu)) return ffi::Error::InvalidArgument("oneDNN convolution: unknown post-ops");
  if (bias.dimensions()[0] != k.dimensions()[3])
    return ffi::Error::InvalidArgument("oneDNN convolution: the bias's size differs from the output channels");
  auto rd = r.dimensions(), yd = y->dimensions();
  if ((post & kResidual) && !(rd[0] == yd[0] && rd[1] == yd[1] && rd[2] == yd[2] && rd[3] == yd[3]))
    return ffi::Error::InvalidArgument("oneDNN convolution: the residual's shape differs from the output's");
  if ((post & kPrelu) && slope.dimensions()[0] != 1)
    return ffi::Error::InvalidArgument("oneDNN convolution: PReLU takes one slope");
  auto g = Geom(x.dimensions(), k.dimensions(), y->dimensions(), sh, sw, pt, pb, pl, pr);
  g.bf16 = T == ffi::BF16;
  g.post = post;
  return Run(kFused, x.untyped_data(), k.untyped_data(), y->untyped_data(), g,
             {bias.untyped_data(), r.untyped_data(), slope.untyped_data()});
}

}  // namespace

#define CONV_ATTRS                                                                             \
  .Attr<int64_t>("sh").Attr<int64_t>("sw").Attr<int64_t>("pt").Attr<int64_t>("pb").Attr<int64_t>("pl") \
      .Attr<int64_t>("pr")

#define CONV_BIND(T) ffi::Ffi::Bind().Arg<B4<T>>().Arg<B4<T>>().Ret<B4<T>>() CONV_ATTRS

XLA_FFI_DEFINE_HANDLER_SYMBOL(SrganConvFwd, Fwd<ffi::F32>, CONV_BIND(ffi::F32));
XLA_FFI_DEFINE_HANDLER_SYMBOL(SrganConvBwdData, BwdData<ffi::F32>, CONV_BIND(ffi::F32));
XLA_FFI_DEFINE_HANDLER_SYMBOL(SrganConvBwdWeights, BwdWeights<ffi::F32>, CONV_BIND(ffi::F32));
XLA_FFI_DEFINE_HANDLER_SYMBOL(SrganConvFwdBf16, Fwd<ffi::BF16>, CONV_BIND(ffi::BF16));
XLA_FFI_DEFINE_HANDLER_SYMBOL(SrganConvBwdDataBf16, BwdData<ffi::BF16>, CONV_BIND(ffi::BF16));
XLA_FFI_DEFINE_HANDLER_SYMBOL(SrganConvBwdWeightsBf16, BwdWeights<ffi::BF16>, CONV_BIND(ffi::BF16));

#define FUSED_BIND(T)                                                                                       \
  ffi::Ffi::Bind().Arg<B4<T>>().Arg<B4<T>>().Arg<ffi::Buffer<ffi::F32, 1>>().Arg<B4<T>>().Arg<ffi::Buffer<ffi::F32, 1>>() \
      .Ret<B4<T>>() CONV_ATTRS.Attr<int64_t>("post")

XLA_FFI_DEFINE_HANDLER_SYMBOL(SrganConvFused, Fused<ffi::F32>, FUSED_BIND(ffi::F32));
XLA_FFI_DEFINE_HANDLER_SYMBOL(SrganConvFusedBf16, Fused<ffi::BF16>, FUSED_BIND(ffi::BF16));

// ----------------------------------------------------------------------------
// Plain C entry points for the Python side (ctypes).

extern "C" {

// Builds (and caches) the forward, input-gradient and kernel-gradient primitives of
// one geometry {n, h, w, c, kh, kw, o, ho, wo, sh, sw, pt, pb, pl, pr, bf16}. Returns 0
// if oneDNN takes all three, with their implementations in `why` ("fwd;bwd_data;bwd_weights",
// e.g. "brgconv:avx512_core_bf16;..."), else 1 with the reason in `why` (NUL-terminated).
__attribute__((visibility("default"))) int SrganConvProbe(const int64_t* dims, char* why, int64_t why_size) {
  Geometry g{dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], dims[6], dims[7],
             dims[8], dims[9], dims[10], dims[11], dims[12], dims[13], dims[14]};
  g.bf16 = dims[15] != 0;
  std::string error = g.Inconsistency(), impls;
  if (error.empty()) {
    error = Worker::Get().Run([&] {
      for (Kind kind : {kFwd, kBwdData, kBwdWeights}) {
        impls += (impls.empty() ? "" : ";") + PrimitiveCache().Get(g.key(kind), [&] { return Build(g, kind); })->impl;
      }
    });
  }
  WriteWhy(error.empty() ? impls : error, why, why_size);
  return error.empty() ? 0 : 1;
}

// Builds (and caches) the fused inference primitive of a geometry {.. as above .., bf16, post}.
// Returns 0 with its implementation in `why`, else 1 with the reason.
__attribute__((visibility("default"))) int SrganConvFusedProbe(const int64_t* dims, char* why, int64_t why_size) {
  Geometry g{dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], dims[6], dims[7],
             dims[8], dims[9], dims[10], dims[11], dims[12], dims[13], dims[14]};
  g.bf16 = dims[15] != 0;
  g.post = dims[16];
  std::string error = g.Inconsistency(), impl;
  if (error.empty() && (g.post < 0 || g.post > (kResidual | kPrelu))) error = "unknown post-ops";
  if (error.empty()) {
    error = Worker::Get().Run([&] { impl = PrimitiveCache().Get(g.key(kFused), [&] { return Build(g, kFused); })->impl; });
  }
  WriteWhy(error.empty() ? impl : error, why, why_size);
  return error.empty() ? 0 : 1;
}

__attribute__((visibility("default"))) void SrganConvCacheInfo(int64_t* size, int64_t* capacity) {
  PrimitiveCache().Info(size, capacity);
}

__attribute__((visibility("default"))) void SrganConvSetCacheCapacity(int64_t capacity) {
  PrimitiveCache().SetCapacity(capacity);
}

// The size of each OpenMP team that runs oneDNN calls (at most two teams: see the top).
__attribute__((visibility("default"))) int SrganConvThreads() { return Worker::Get().threads(); }

// The instruction set oneDNN's kernels use on this CPU (its dispatcher's choice).
__attribute__((visibility("default"))) const char* SrganConvIsa() {
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::sse41: return "sse41";
    case dnnl::cpu_isa::avx: return "avx";
    case dnnl::cpu_isa::avx2: return "avx2";
    case dnnl::cpu_isa::avx2_vnni: return "avx2_vnni";
    case dnnl::cpu_isa::avx2_vnni_2: return "avx2_vnni_2";
    case dnnl::cpu_isa::avx512_core: return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_fp16: return "avx512_core_fp16";
    case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
    case dnnl::cpu_isa::avx512_core_amx_fp16: return "avx512_core_amx_fp16";
    default: return "other";
  }
}

}  // extern "C"
