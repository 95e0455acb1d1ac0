// Top-k of an extend's index scores, mapped through the page table in the same kernel.
//
// Compiled by SGLang's JIT (`load_jit`) after SGLang 0.5.23's own
// `deepseek_v4/topk_v2.cuh`, whose ragged k-pool kernel this launches with pools of one
// token: row b keeps the top-k of scores[b, ks : ks + seq_lens[b]] (ks = row_starts[b],
// else 0) and writes page_table[row_index[b], position] for each kept position, -1
// padded. That is what SGLang's legacy `fast_topk_transform_fused` does for a PAGED
// (bf16 KV, page size 1) extend, with the selection of SGLang's v2 top-k.
// SGLang 0.5.23 compiles its packed PAGED v2 entry point (`transform_packed`) for ROCm
// only, and its k-pool entry point refuses a pool of one token; the kernel itself is
// exact for a pool of one (no expansion, no tail). See backend/topk.py.
//
// `scores` is written in place: the <= 3 columns ahead of an unaligned window are
// masked, as in SGLang's ragged v2 top-k. The buffer must have no other reader.

namespace sglang::indexcache {

template <bool kUsePDL>
struct PagedExtendTopK {
  static void transform(
      const tvm::ffi::TensorView scores,                          // [rows, >= window] fp32
      const tvm::ffi::TensorView seq_lens,                        // [rows] int32
      const tvm::ffi::Optional<tvm::ffi::TensorView> row_starts,  // [rows] int32
      const tvm::ffi::TensorView page_table,                      // [requests, slots] int32
      const tvm::ffi::TensorView row_index,                       // [rows] int32: each row's request
      const tvm::ffi::TensorView out) {                           // [rows, topk] int32
    using namespace host;
    auto B = SymbolicSize{"rows"};
    auto S = SymbolicSize{"score_stride"};
    auto K = SymbolicSize{"topk"};
    auto O = SymbolicSize{"out_stride"};
    auto device_ = SymbolicDevice{};
    device_.set_options<kDLGPU>();

    TensorMatcher({B, -1}).with_strides({S, 1}).with_dtype<float>().with_device(device_).ensure_alignment(16).verify(
        scores);
    TensorMatcher({B}).with_dtype<int32_t>().with_device(device_).verify(seq_lens);
    TensorMatcher({B}).with_dtype<int32_t>().with_device(device_).verify(row_index);
    TensorMatcher({B, K}).with_strides({O, 1}).with_dtype<int32_t>().with_device(device_).verify(out);
    TensorMatcher({-1, -1}).with_strides({-1, 1}).with_dtype<int32_t>().with_device(device_).verify(page_table);
    const int32_t* row_starts_ptr = nullptr;
    if (row_starts.has_value()) {
      TensorMatcher({B}).with_dtype<int32_t>().with_device(device_).verify(row_starts.value());
      row_starts_ptr = static_cast<const int32_t*>(row_starts.value().data_ptr());
    }
    RuntimeCheck(S.unwrap() % 4 == 0, "score_stride must be a multiple of 4 (16-byte vectorized load)");
    const auto topk = static_cast<uint32_t>(K.unwrap());
    RuntimeCheck(topk > 0 && topk <= kMaxTopK, "topk must be in (0, 2048]");
    const auto rows = static_cast<uint32_t>(B.unwrap());
    RuntimeCheck(rows > 0, "no rows");

    const auto params = TopKRaggedKpoolParams{
        .scores = static_cast<float*>(scores.data_ptr()),
        .pool_lens = static_cast<const int32_t*>(seq_lens.data_ptr()),
        .row_starts = row_starts_ptr,
        .token_seq_lens = nullptr,  // no open tail pool
        .page_table = static_cast<const int32_t*>(page_table.data_ptr()),
        .page_table_row_index = static_cast<const int32_t*>(row_index.data_ptr()),
        .out_offsets = nullptr,
        .out = static_cast<int32_t*>(out.data_ptr()),
        .score_stride = S.unwrap(),
        .page_table_stride = page_table.stride(0),
        .out_stride = O.unwrap(),
        .topk = topk,
        .page_bits = 0,  // page size 1: a kept position's slot is page_table[row][position]
        .pool_bits = 0,  // pools of one token: a kept pool is a kept position
        .out_cols = topk,
    };
    LaunchKernel(rows, kBlockSize, device_.unwrap())
        .config({.use_pdl = kUsePDL})
        .launch(topk_ragged_kpool_kernel<kUsePDL>, params);
  }
};

}  // namespace sglang::indexcache
