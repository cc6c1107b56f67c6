// conv_patch_avx2.cc: a first layer's int16 patch rows with whole-vector loads, widening and stores.
#include <immintrin.h>

#include "qkern/kernel_list.h"

namespace qk {

namespace {

// One kernel row: its 3*C bytes (and the bytes after them, up to the load's width) widened and stored at
// dst. 3*C <= 8: one 8-byte load and a 16-byte store; <= 16: one 16-byte load and a 32-byte store; else
// (C = 6) those plus 8 more bytes.
template <int C, bool kSigned>
inline void put_kernel_row(const uint8_t* src, uint8_t* dst) {
  const auto widen8 = [](__m128i v) { return kSigned ? _mm_cvtepi8_epi16(v) : _mm_cvtepu8_epi16(v); };
  const auto widen16 = [](__m128i v) { return kSigned ? _mm256_cvtepi8_epi16(v) : _mm256_cvtepu8_epi16(v); };
  if constexpr (3 * C <= 8) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), widen8(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(src))));
  } else {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), widen16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src))));
    if constexpr (3 * C > 16)
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 32),
                       widen8(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + 16))));
  }
}

template <int C, bool kSigned>
int put_rows(const uint8_t* corner, int64_t step, int64_t row_bytes, int n, const uint8_t* end, uint8_t* dst,
             int64_t dst_stride) {
  // Bytes read from a kernel row's first byte: 8, 16 or 24.
  constexpr int64_t kRead = 3 * C <= 8 ? 8 : 3 * C <= 16 ? 16 : 24;
  int i = 0;
  // Kernel rows in order: each store's tail past 3*C elements is overwritten by the next row's store.
  // The bound as a distance: a pointer past the array's end may not even be formed.
  for (const uint8_t* c = corner; i < n && end - c >= 2 * row_bytes + kRead; ++i, c += step, dst += dst_stride) {
    put_kernel_row<C, kSigned>(c, dst);
    put_kernel_row<C, kSigned>(c + row_bytes, dst + 6 * C);
    put_kernel_row<C, kSigned>(c + 2 * row_bytes, dst + 12 * C);
  }
  return i;
}

template <int C>
int put_rows(bool is_signed, const uint8_t* corner, int64_t step, int64_t row_bytes, int n, const uint8_t* end,
             uint8_t* dst, int64_t dst_stride) {
  return is_signed ? put_rows<C, true>(corner, step, row_bytes, n, end, dst, dst_stride)
                   : put_rows<C, false>(corner, step, row_bytes, n, end, dst, dst_stride);
}

}  // namespace

int patch_rows__avx2(int channels, bool is_signed, const uint8_t* corner, int64_t step, int64_t row_bytes, int n,
                     const uint8_t* end, uint8_t* dst, int64_t dst_stride) {
  switch (channels) {
    case 1: return put_rows<1>(is_signed, corner, step, row_bytes, n, end, dst, dst_stride);
    case 2: return put_rows<2>(is_signed, corner, step, row_bytes, n, end, dst, dst_stride);
    case 3: return put_rows<3>(is_signed, corner, step, row_bytes, n, end, dst, dst_stride);
    case 4: return put_rows<4>(is_signed, corner, step, row_bytes, n, end, dst, dst_stride);
    case 5: return put_rows<5>(is_signed, corner, step, row_bytes, n, end, dst, dst_stride);
    case 6: return put_rows<6>(is_signed, corner, step, row_bytes, n, end, dst, dst_stride);
    default: return 0;
  }
}

}  // namespace qk
