// XLA FFI handlers: 2-D convolution (NHWC activations, HWIO kernels, float32)
// forward, input gradient and kernel gradient through oneDNN.
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

namespace {

enum Kind { kFwd = 0, kBwdData = 1, kBwdWeights = 2 };

struct Geometry {
  int64_t n, h, w, c, kh, kw, o, ho, wo, sh, sw, pt, pb, pl, pr;
  std::string key(Kind k) const {
    std::string s = std::to_string(k);
    for (int64_t v : {n, h, w, c, kh, kw, o, ho, wo, sh, sw, pt, pb, pl, pr}) s += "," + std::to_string(v);
    return s;
  }
};

struct Entry {
  memory::desc src, dst, w_user;        // NHWC activations, HWIO kernel: the XLA buffers
  dnnl::primitive conv;
  memory::desc weights;                 // the kernel layout the primitive wants
  bool reorder_kernel = false;          // HWIO <-> that layout
  dnnl::primitive kernel_reorder;
  size_t scratchpad_bytes = 0;
};

dnnl::engine& Engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

struct Buf {  // 64-byte aligned scratch
  explicit Buf(size_t bytes) : p(bytes ? std::aligned_alloc(64, (bytes + 63) / 64 * 64) : nullptr) {}
  ~Buf() { std::free(p); }
  void* p;
};

std::shared_ptr<Entry> Build(const Geometry& g, Kind kind) {
  auto& eng = Engine();
  auto e = std::make_shared<Entry>();
  e->src = memory::desc({g.n, g.c, g.h, g.w}, dt::f32, tag::nhwc);
  e->dst = memory::desc({g.n, g.o, g.ho, g.wo}, dt::f32, tag::nhwc);
  e->w_user = memory::desc({g.o, g.c, g.kh, g.kw}, dt::f32, tag::hwio);
  const memory::desc &src = e->src, &dst = e->dst, &w_user = e->w_user;
  memory::desc w_any({g.o, g.c, g.kh, g.kw}, dt::f32, tag::any);
  memory::dims strides{g.sh, g.sw}, pad_l{g.pt, g.pl}, pad_r{g.pb, g.pr};
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  auto alg = dnnl::algorithm::convolution_direct;
  dnnl::convolution_forward::primitive_desc fwd(eng, dnnl::prop_kind::forward_training, alg, src, w_any,
                                                dst, strides, pad_l, pad_r, attr);
  if (kind == kFwd) {
    e->conv = dnnl::convolution_forward(fwd);
    e->weights = fwd.weights_desc();
    e->scratchpad_bytes = fwd.scratchpad_desc().get_size();
  } else if (kind == kBwdData) {
    dnnl::convolution_backward_data::primitive_desc pd(eng, alg, src, w_any, dst, strides, pad_l, pad_r,
                                                       fwd, attr);
    e->conv = dnnl::convolution_backward_data(pd);
    e->weights = pd.weights_desc();
    e->scratchpad_bytes = pd.scratchpad_desc().get_size();
  } else {
    dnnl::convolution_backward_weights::primitive_desc pd(eng, alg, src, w_any, dst, strides, pad_l,
                                                          pad_r, fwd, attr);
    e->conv = dnnl::convolution_backward_weights(pd);
    e->weights = pd.diff_weights_desc();
    e->scratchpad_bytes = pd.scratchpad_desc().get_size();
  }
  e->reorder_kernel = e->weights != w_user;
  if (e->reorder_kernel) {
    e->kernel_reorder = kind == kBwdWeights ? dnnl::reorder(memory(e->weights, eng, nullptr), memory(w_user, eng, nullptr))
                                            : dnnl::reorder(memory(w_user, eng, nullptr), memory(e->weights, eng, nullptr));
  }
  return e;
}

std::shared_ptr<Entry> Get(const Geometry& g, Kind kind) {
  static std::mutex mu;
  static std::unordered_map<std::string, std::shared_ptr<Entry>> cache;
  std::string key = g.key(kind);
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  auto e = Build(g, kind);
  cache.emplace(key, e);
  return e;
}

// x: [N,H,W,C], k: [KH,KW,C,O], y: [N,HO,WO,O]; `kind` says which of the three is the output.
ffi::Error Run(Kind kind, float* x, float* k, float* y, const Geometry& g) {
  try {
    auto e = Get(g, kind);
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
    } else if (kind == kBwdData) {
      e->conv.execute(s, {{DNNL_ARG_DIFF_SRC, x_mem}, {DNNL_ARG_WEIGHTS, k_mem}, {DNNL_ARG_DIFF_DST, y_mem},
                          {DNNL_ARG_SCRATCHPAD, sp_mem}});
    } else {
      e->conv.execute(s, {{DNNL_ARG_SRC, x_mem}, {DNNL_ARG_DIFF_WEIGHTS, k_mem}, {DNNL_ARG_DIFF_DST, y_mem},
                          {DNNL_ARG_SCRATCHPAD, sp_mem}});
      if (e->reorder_kernel) e->kernel_reorder.execute(s, {{DNNL_ARG_FROM, k_mem}, {DNNL_ARG_TO, k_user}});
    }
    s.wait();
  } catch (const dnnl::error& err) {
    return ffi::Error(ffi::ErrorCode::kInternal, std::string("oneDNN: ") + err.what());
  } catch (const std::exception& err) {  // e.g. bad_alloc: never let it cross the FFI boundary
    return ffi::Error(ffi::ErrorCode::kInternal, std::string("oneDNN convolution: ") + err.what());
  }
  return ffi::Error::Success();
}

Geometry Geom(ffi::Span<const int64_t> xd, ffi::Span<const int64_t> kd, ffi::Span<const int64_t> yd,
              int64_t sh, int64_t sw, int64_t pt, int64_t pb, int64_t pl, int64_t pr) {
  return {xd[0], xd[1], xd[2], xd[3], kd[0], kd[1], yd[3], yd[1], yd[2], sh, sw, pt, pb, pl, pr};
}

ffi::Error Fwd(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> k, ffi::ResultBuffer<ffi::F32> y, int64_t sh,
               int64_t sw, int64_t pt, int64_t pb, int64_t pl, int64_t pr) {
  auto g = Geom(x.dimensions(), k.dimensions(), y->dimensions(), sh, sw, pt, pb, pl, pr);
  return Run(kFwd, x.typed_data(), k.typed_data(), y->typed_data(), g);
}

ffi::Error BwdData(ffi::Buffer<ffi::F32> dy, ffi::Buffer<ffi::F32> k, ffi::ResultBuffer<ffi::F32> dx,
                   int64_t sh, int64_t sw, int64_t pt, int64_t pb, int64_t pl, int64_t pr) {
  auto g = Geom(dx->dimensions(), k.dimensions(), dy.dimensions(), sh, sw, pt, pb, pl, pr);
  return Run(kBwdData, dx->typed_data(), k.typed_data(), dy.typed_data(), g);
}

ffi::Error BwdWeights(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> dy, ffi::ResultBuffer<ffi::F32> dk,
                      int64_t sh, int64_t sw, int64_t pt, int64_t pb, int64_t pl, int64_t pr) {
  auto g = Geom(x.dimensions(), dk->dimensions(), dy.dimensions(), sh, sw, pt, pb, pl, pr);
  return Run(kBwdWeights, x.typed_data(), dk->typed_data(), dy.typed_data(), g);
}

}  // namespace

#define CONV_ATTRS                                                                             \
  .Attr<int64_t>("sh").Attr<int64_t>("sw").Attr<int64_t>("pt").Attr<int64_t>("pb").Attr<int64_t>("pl") \
      .Attr<int64_t>("pr")

XLA_FFI_DEFINE_HANDLER_SYMBOL(SrganConvFwd, Fwd,
                              ffi::Ffi::Bind().Arg<ffi::Buffer<ffi::F32>>().Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>() CONV_ATTRS);
XLA_FFI_DEFINE_HANDLER_SYMBOL(SrganConvBwdData, BwdData,
                              ffi::Ffi::Bind().Arg<ffi::Buffer<ffi::F32>>().Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>() CONV_ATTRS);
XLA_FFI_DEFINE_HANDLER_SYMBOL(SrganConvBwdWeights, BwdWeights,
                              ffi::Ffi::Bind().Arg<ffi::Buffer<ffi::F32>>().Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>() CONV_ATTRS);
