// model_ops_avx2.cc: the model ops compiled with AVX2, plus an AVX2 add (eq. (M3)): eight lanes gather
// their two table terms, and the output multiply runs in 64-bit lanes exactly as the scalar int64 code.
#include <immintrin.h>

#include <type_traits>

#define MODEL_OPS_ADD add_avx2
#include "qkern/model_ops_impl.inc"

namespace qk {
namespace {

// floor(v / 2^count) for int64 lanes: AVX2 has no 64-bit arithmetic shift, and for m = (v < 0 ? ~0 : 0)
// floor(v / 2^t) = ~floor(~v / 2^t) on negative v, i.e. (logical shift of v ^ m) ^ m.
inline __m256i sra64(__m256i v, __m128i count) {
  const __m256i m = _mm256_cmpgt_epi64(_mm256_setzero_si256(), v);
  return _mm256_xor_si256(_mm256_srl_epi64(_mm256_xor_si256(v, m), count), m);
}

inline __m256i clamp64(__m256i v, __m256i lo, __m256i hi) {
  v = _mm256_blendv_epi8(v, lo, _mm256_cmpgt_epi64(lo, v));
  return _mm256_blendv_epi8(v, hi, _mm256_cmpgt_epi64(v, hi));
}

template <typename To>
void add_rows(const uint8_t* a, const uint8_t* b, To* out, int64_t i0, int64_t i1, const int32_t* t1,
              const int32_t* t2, const AddParams& p) {
  const int64_t mo = p.mo, round = int64_t{1} << (30 - p.so), lo = p.qmin - p.out_zp, hi = p.qmax - p.out_zp;
  const int total = 31 - p.so;
  const __m256i vmo = _mm256_set1_epi64x(mo), vround = _mm256_set1_epi64x(round);
  const __m256i vlo = _mm256_set1_epi64x(lo), vhi = _mm256_set1_epi64x(hi), vzo = _mm256_set1_epi32(p.out_zp);
  const __m128i count = _mm_cvtsi32_si128(total);
  int64_t i = i0;
  for (; i + 8 <= i1; i += 8) {
    const __m256i ia = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(a + i)));
    const __m256i ib = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b + i)));
    const __m256i sum = _mm256_add_epi32(_mm256_i32gather_epi32(t1, ia, 4), _mm256_i32gather_epi32(t2, ib, 4));
    // |sum| < 2^29 and mo < 2^31: each 64-bit product is exact (mul_epi32 reads the low, signed half).
    __m256i even = _mm256_add_epi64(_mm256_mul_epi32(sum, vmo), vround);
    __m256i odd = _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(sum, 32), vmo), vround);
    even = clamp64(sra64(even, count), vlo, vhi);
    odd = clamp64(sra64(odd, count), vlo, vhi);
    const __m256i r = _mm256_add_epi32(_mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA), vzo);
    // Every lane is in [qmin, qmax], inside To's range, so the saturating packs are plain narrowing.
    const __m256i r16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(r, r), 0x08);
    const __m128i lo16 = _mm256_castsi256_si128(r16);
    __m128i r8;
    if constexpr (std::is_same_v<To, uint8_t>) {
      r8 = _mm_packus_epi16(lo16, lo16);
    } else {
      r8 = _mm_packs_epi16(lo16, lo16);
    }
    _mm_storel_epi64(reinterpret_cast<__m128i*>(out + i), r8);
  }
  for (; i < i1; ++i) {
    const int64_t sum = static_cast<int64_t>(t1[a[i]]) + t2[b[i]];
    out[i] = static_cast<To>(std::clamp((sum * mo + round) >> total, lo, hi) + p.out_zp);
  }
}

void add_avx2(DType at, const void* a, DType bt, const void* b, DType ot, void* out, int64_t n, const AddParams& p) {
  int32_t t1[256], t2[256];
  with_type(at, [&](auto ai) {
    with_type(bt, [&](auto bi) { add_tables<decltype(ai), decltype(bi)>(p, t1, t2); });
  });
  const uint8_t* ab = static_cast<const uint8_t*>(a);
  const uint8_t* bb = static_cast<const uint8_t*>(b);
  with_type(ot, [&](auto oi) {
    using To = decltype(oi);
    To* o = static_cast<To*>(out);
    parallel_for((n + kChunk - 1) / kChunk, [&](int64_t t) {
      add_rows<To>(ab, bb, o, t * kChunk, std::min(n, (t + 1) * kChunk), t1, t2, p);
    });
  });
}

}  // namespace

const ModelOpsTable& model_ops__avx2() {
  static const ModelOpsTable table = MODEL_OPS_TABLE();
  return table;
}

}  // namespace qk
