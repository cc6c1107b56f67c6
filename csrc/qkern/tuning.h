// tuning.h: every speed-tuning constant of the drivers and the thread pool, with what it trades. None of
// them changes a result: K is never split, so any value gives the same integers (docs/speed-design.md).
#pragma once

#include <cstdint>

namespace qk {

// Threads. Below this many multiply-adds a call stays on the calling thread: waking a worker costs about as
// much as the call (M=1, K=N=512 does not pay for the hand-off; M=1, K=N=1024 does, because each thread
// starts on its own contiguous range of panels and finds them in its L2 on the next call).
constexpr int64_t kParallelMacs = int64_t{1} << 19;
// Threads. What one output row costs beyond its multiply-adds (its share of a tile's widening, pointers and
// output stage), counted in multiply-adds against kParallelMacs: a 1-channel head (M = 32768, K = 8, N = 1)
// has 0.26M multiply-adds but takes hundreds of microseconds in row costs, which two threads halve.
constexpr int64_t kRowCostMacs = 256;

// Narrow GEMMs. Outputs of at most kRowBlockMaxN columns without a weight zero point run as a GEMM of
// R = kRowBlockCols / n times fewer, R times longer rows against R copies of B on a block diagonal (the same
// integers: the other blocks' weights are zeros), while R*K stays within kRowBlockMaxK. A 1-4 column tile
// spends most of its time on per-tile costs, not multiply-adds; 2 threads, M = 32768, N = 1: K = 8 3.4x,
// 16 2.2x, 32 1.5x faster, 64 even.
constexpr int64_t kRowBlockMaxN = 4;
constexpr int64_t kRowBlockCols = 8;
constexpr int64_t kRowBlockMaxK = 256;

// Threads. How long a worker spins for the next call before sleeping on the futex: longer burns a core
// between calls, shorter pays a wake-up (0.1-1 ms on a 2-vCPU VM, where the idle vCPU halts) on
// back-to-back calls such as a model's layers. Time, not an iteration count: `pause` costs differ by CPU.
constexpr int64_t kSpinMicroseconds = 2000;
// Threads. A spinning thread reads the clock, and a spinning worker yields its CPU (to a caller that shares
// it), every this many spins: more often costs the spinner its reaction time, less often delays the caller.
constexpr int kSpinsPerCheck = 256;

// Blocking. Budget for the K x NC block of packed B that the m-tiles of one task share: about half of a
// 1 MiB L2, so B streams from L2 while the other half holds A rows, the output and the other thread's data.
constexpr int64_t kL2BlockBytes = 512 * 1024;
// Blocking. At most this many m-tiles per task. Up to this many in the whole call, each task is one panel
// over all rows (threads split N: B is read once); more tiles per task amortise the panel's start-up but
// leave fewer tasks to balance between threads.
constexpr int64_t kMaxTilesPerTask = 8;
// Blocking. Small M (up to kMaxTilesPerTask m-tiles): blocks of panels per thread. Each block prepares its
// tiles' rows once (M = 16 with one panel a task widened its three tiles again for every panel: a tenth of
// the call; 16x768x3072 at 2 threads 474 -> 410 us); more blocks balance better between threads (a thread
// steals whole blocks; 2 per thread was slower at 32x1024x1024).
constexpr int64_t kSmallMTasksPerThread = 8;

// Row sums. Activation rows are summed on the pool in blocks of about this many bytes: smaller blocks pay
// task overhead, larger ones leave a thread idle on small inputs.
constexpr int64_t kRowSumBlockBytes = 64 * 1024;

// conv3x3. Up to this many input channels B is packed as three 3*C-deep taps, one per kernel row, read in
// place (narrow layers: nine short taps cost more in tap switches than in arithmetic); above it, nine
// C-deep taps. Larger values grow each tile's scratch (kMaxMR x 3 x 3*C bytes on the stack).
constexpr int64_t kSmallCinMax = 64;
// conv3x3. Up to this many input channels (first layers) each tile copies its 9*C-byte windows into a
// patch and multiplies one tap: three taps of 3*C <= 18 bytes cost more in tap switches and K tails than
// the copy; from C = 8 on, the copy costs more than it saves (docs/speed-design.md S8).
constexpr int64_t kPatchCinMax = 6;

// conv3x3 first layers (KernelInfo::first_layer). Each call widens the input rows of its output rows in
// bands of about this many bytes (each band re-widens the 3 - stride rows it shares with the previous one):
// small enough to stay in L2 next to the output, large enough that the shared rows are a few percent.
constexpr int64_t kFirstLayerBandBytes = 64 * 1024;
// conv3x3 first layers. Blocks of output rows per thread: more balance better between threads (a thread
// steals whole blocks), fewer pay less for the weights' per-call layout and the bands' shared rows.
constexpr int64_t kFirstLayerTasksPerThread = 4;

// conv3x3. Up to this input width a padding-1 conv first copies its input into a buffer with a real border
// of x_zero_point bytes and runs as padding 0: a narrow image has a large share of border windows, each
// assembled pixel by pixel (8x8: half of them, the conv 1.4x slower than on the copy); a wide one pays
// the copy for a few percent of border windows. For the kernels that multiply A as int16 (AVX2, 8-bit A)
// the copy is also widened, so that each byte is widened once per call instead of once per tile and tap.
constexpr int64_t kBorderCopyMaxWidth = 32;
// conv3x3. On the int16 kernels, stride-1 convs of up to this many input channels use the widened copy at
// any width: each input byte sits in the kernel rows of three consecutive windows, which the tiles would
// widen three times. In-process A/B, 2 threads, time with / without: 8x64x64 8->8 0.70, 64x64 8->16 0.61,
// 128x128 16->16 0.80, 2x112x112 16->32 0.89, 4x64x64 32->32 0.84, 224x224 32->32 0.93, 256x256 8->8
// 0.90. With 64 channels it is even (56x56 64->64 0.97, 64->32 0.99); at stride 2, where fewer windows
// share a byte, 0.93-1.23 (224x224 8->16 1.23), so wide stride-2 convs keep the tiles' widening.
constexpr int64_t kWideInputMaxCin = 32;
// conv3x3. The widened copy's largest size: a larger input (a big batch, a large image) keeps the tiles'
// widening rather than allocate twice its bytes for the call.
constexpr int64_t kWideInputMaxBytes = int64_t{32} << 20;

}  // namespace qk
