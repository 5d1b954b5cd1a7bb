// Kernels for tests/test_cuda_emulator_numerics.py: every tk:: primitive and warp collective,
// with fragments built exactly as tk_cuda.cuh documents the PTX ISA's layouts. Compiled by g++
// (emulator) and nvcc (sm_80, sm_90) alike.
#include "tk_cuda.cuh"

// ---- conversions (grid-stride loops: a few threads convert many values) ------------------------

TK_KERNEL void convert(tk::ptr<const float> x, tk::ptr<tk::bf16> bf, tk::ptr<tk::f16> hf, tk::ptr<tk::u32> tf,
                       tk::ptr<float> back, int n) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    const float v = x[i];
    bf[i] = tk::from_float<tk::bf16>(v);
    hf[i] = tk::from_float<tk::f16>(v);
    tf[i] = tk::to_tf32(v);
    back[2 * i] = tk::to_float(bf[i]);
    back[2 * i + 1] = tk::to_float(hf[i]);
  }
}

// pack2 and load_pair: out[2i] = pack2(x[2i], x[2i+1]), out[2i+1] = load_pair of the stored halves
TK_KERNEL void pairs(tk::ptr<const float> x, tk::ptr<tk::bf16> bf, tk::ptr<tk::f16> hf, tk::ptr<tk::u32> out,
                     int pairs) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < pairs; i += gridDim.x * blockDim.x) {
    bf[2 * i] = tk::from_float<tk::bf16>(x[2 * i]);
    bf[2 * i + 1] = tk::from_float<tk::bf16>(x[2 * i + 1]);
    hf[2 * i] = tk::from_float<tk::f16>(x[2 * i]);
    hf[2 * i + 1] = tk::from_float<tk::f16>(x[2 * i + 1]);
    out[4 * i] = tk::pack2<tk::bf16>(x[2 * i], x[2 * i + 1]);
    out[4 * i + 1] = tk::load_pair<tk::bf16>(bf + 2 * i);
    out[4 * i + 2] = tk::pack2<tk::f16>(x[2 * i], x[2 * i + 1]);
    out[4 * i + 3] = tk::load_pair(hf + 2 * i);  // element type deduced from the pointer
  }
}

// ---- mma.sync with fragments gathered per the documented layouts ---------------------------------
// One warp. Lane l: g = l / 4, q = l % 4. A [16][K] row-major, B [K][8] row-major (element (k, n)
// at k * 8 + n), C and D [16][8] row-major, all in global memory.

template <class T>
TK_DEVICE tk::u32 column_pair(tk::ptr<const T> B, int k, int n) {  // B[k][n] low, B[k+1][n] high
  return tk::pack2<T>(tk::to_float(B[k * 8 + n]), tk::to_float(B[(k + 1) * 8 + n]));
}

template <class T>
TK_DEVICE void fragments_k16(tk::ptr<const T> A, tk::ptr<const T> B, tk::u32 (&a)[4], tk::u32 (&b)[2]) {
  const int l = threadIdx.x, g = l / 4, q = l % 4;
  a[0] = tk::load_pair<T>(A + g * 16 + 2 * q);  // A[g][2q..2q+1]: adjacent in a row-major row
  a[1] = tk::load_pair<T>(A + (g + 8) * 16 + 2 * q);
  a[2] = tk::load_pair<T>(A + g * 16 + 2 * q + 8);
  a[3] = tk::load_pair<T>(A + (g + 8) * 16 + 2 * q + 8);
  b[0] = column_pair<T>(B, 2 * q, g);
  b[1] = column_pair<T>(B, 2 * q + 8, g);
}

TK_DEVICE void load_acc(tk::ptr<const float> C, float (&acc)[4]) {
  const int l = threadIdx.x, g = l / 4, q = l % 4;
  acc[0] = C[g * 8 + 2 * q];
  acc[1] = C[g * 8 + 2 * q + 1];
  acc[2] = C[(g + 8) * 8 + 2 * q];
  acc[3] = C[(g + 8) * 8 + 2 * q + 1];
}

TK_DEVICE void store_acc(tk::ptr<float> D, const float (&acc)[4]) {
  const int l = threadIdx.x, g = l / 4, q = l % 4;
  D[g * 8 + 2 * q] = acc[0];
  D[g * 8 + 2 * q + 1] = acc[1];
  D[(g + 8) * 8 + 2 * q] = acc[2];
  D[(g + 8) * 8 + 2 * q + 1] = acc[3];
}

TK_KERNEL void mma_bf16(tk::ptr<const tk::bf16> A, tk::ptr<const tk::bf16> B, tk::ptr<const float> C,
                        tk::ptr<float> D) {
  tk::u32 a[4], b[2];
  float acc[4];
  fragments_k16<tk::bf16>(A, B, a, b);
  load_acc(C, acc);
  tk::mma_m16n8k16_bf16(acc, a, b);
  store_acc(D, acc);
}

TK_KERNEL void mma_f16(tk::ptr<const tk::f16> A, tk::ptr<const tk::f16> B, tk::ptr<const float> C,
                       tk::ptr<float> D) {
  tk::u32 a[4], b[2];
  float acc[4];
  fragments_k16<tk::f16>(A, B, a, b);
  load_acc(C, acc);
  tk::mma_m16n8k16_f16(acc, a, b);
  store_acc(D, acc);
}

// m16n8k8 tf32: A [16][8], B [8][8]; a[0] = A[g][q], a[1] = A[g+8][q], a[2] = A[g][q+4], a[3] = A[g+8][q+4],
// b[0] = B[q][g], b[1] = B[q+4][g]
TK_KERNEL void mma_tf32(tk::ptr<const float> A, tk::ptr<const float> B, tk::ptr<const float> C, tk::ptr<float> D) {
  const int l = threadIdx.x, g = l / 4, q = l % 4;
  tk::u32 a[4] = {tk::to_tf32(A[g * 8 + q]), tk::to_tf32(A[(g + 8) * 8 + q]), tk::to_tf32(A[g * 8 + q + 4]),
                  tk::to_tf32(A[(g + 8) * 8 + q + 4])};
  tk::u32 b[2] = {tk::to_tf32(B[q * 8 + g]), tk::to_tf32(B[(q + 4) * 8 + g])};
  float acc[4];
  load_acc(C, acc);
  tk::mma_m16n8k8_tf32(acc, a, b);
  store_acc(D, acc);
}

// The usual tile path: A [16][16] and B [16][8] staged row-major in shared memory, A's fragments by
// ldmatrix_x4 (lane l gives row l % 16 at column (l / 16) * 8), B's by ldmatrix_x2_trans (lane l
// gives row k = l % 16), then mma: D = C + A.B.
TK_KERNEL void mma_bf16_ldmatrix(tk::ptr<const tk::bf16> A, tk::ptr<const tk::bf16> B, tk::ptr<const float> C,
                                 tk::ptr<float> D) {
  TK_SHARED(tk::bf16, sa, 16 * 16);
  TK_SHARED(tk::bf16, sb, 16 * 8);
  const int l = threadIdx.x;
  for (int i = l; i < 256; i += 32) sa[i] = A[i];
  for (int i = l; i < 128; i += 32) sb[i] = B[i];
  __syncwarp();
  tk::u32 a[4], b[2];
  tk::ldmatrix_x4(a, sa + (l % 16) * 16 + (l / 16) * 8);
  tk::ldmatrix_x2_trans(b, sb + (l % 16) * 8);
  float acc[4];
  load_acc(C, acc);
  tk::mma_m16n8k16_bf16(acc, a, b);
  store_acc(D, acc);
}

// ---- ldmatrix, every form: the shared matrix is 32 rows of 8 16-bit values; lane l gives the
// address of row perm[l]. out[form][lane][reg] for forms x1, x1.trans, x2, x2.trans, x4, x4.trans.
TK_KERNEL void ldmatrix_forms(tk::ptr<const short> src, tk::ptr<const int> perm, tk::ptr<tk::u32> out) {
  TK_SHARED(short, m, 32 * 8);
  const int l = threadIdx.x;
  for (int i = l; i < 256; i += 32) m[i] = src[i];
  __syncwarp();
  auto row = m + perm[l] * 8;
  auto o = out + l * 4;
  tk::u32 r1[1], r2[2], r4[4];
  tk::ldmatrix_x1(r1, row);
  o[0] = r1[0];
  tk::ldmatrix_x1_trans(r1, row);
  o[128] = r1[0];
  tk::ldmatrix_x2(r2, row);
  o[256] = r2[0], o[257] = r2[1];
  tk::ldmatrix_x2_trans(r2, row);
  o[384] = r2[0], o[385] = r2[1];
  tk::ldmatrix_x4(r4, row);
  o[512] = r4[0], o[513] = r4[1], o[514] = r4[2], o[515] = r4[3];
  tk::ldmatrix_x4_trans(r4, row);
  o[640] = r4[0], o[641] = r4[1], o[642] = r4[2], o[643] = r4[3];
}

// ---- shuffles and votes ----------------------------------------------------------------------
// out[kind][width][arg][lane], kinds idx, up, down, xor; widths 1..32; lane l holds 10 l + 1;
// idx's source lane is (7 l + arg) % 64 (past the width: taken modulo the width).
TK_KERNEL void shuffles(tk::ptr<const int> args, tk::ptr<int> out, int nargs) {
  const int l = threadIdx.x;
  const int v = 10 * l + 1;
  int w_index = 0;
  for (int w = 1; w <= 32; w *= 2, ++w_index) {
    for (int a = 0; a < nargs; ++a) {
      const int arg = args[a];
      auto o = out + ((w_index * nargs) + a) * 32 + l;
      const int stride = 6 * nargs * 32;
      o[0] = __shfl_sync(0xffffffffu, v, (7 * l + arg) % 64, w);
      o[stride] = __shfl_up_sync(0xffffffffu, v, arg, w);
      o[2 * stride] = __shfl_down_sync(0xffffffffu, v, arg, w);
      o[3 * stride] = __shfl_xor_sync(0xffffffffu, v, arg, w);
    }
  }
}

// Values wider and other than int: float, double, long long (the default width 32).
TK_KERNEL void shuffle_types(tk::ptr<float> f, tk::ptr<double> d, tk::ptr<long long> ll) {
  const int l = threadIdx.x;
  f[l] = __shfl_xor_sync(0xffffffffu, 0.5f * l, 3);
  d[l] = __shfl_down_sync(0xffffffffu, 1e300 * l, 2);
  ll[l] = __shfl_sync(0xffffffffu, (1ll << 40) * l + l, 31 - l);
}

// pred = ((l * mul + add) % 3 == 0) per pattern; out[pattern] = {ballot, any, all}
TK_KERNEL void votes(tk::ptr<const int> patterns, tk::ptr<tk::u32> out, int n) {
  const int l = threadIdx.x;
  for (int p = 0; p < n; ++p) {
    const int pred = (l * patterns[2 * p] + patterns[2 * p + 1]) % 3 == 0;
    const tk::u32 ballot = __ballot_sync(0xffffffffu, pred);
    const int any = __any_sync(0xffffffffu, pred);
    const int all = __all_sync(0xffffffffu, pred);
    if (l == 0) out[3 * p] = ballot, out[3 * p + 1] = any, out[3 * p + 2] = all;
  }
}

// Two warps exchange through shared memory with only a warp barrier between (each reads its own
// warp's slots), and the block reduces with shuffles: out[warp] = sum of x over the warp.
TK_KERNEL void warp_sync_sum(tk::ptr<const float> x, tk::ptr<float> y, tk::ptr<float> sums) {
  TK_SHARED(float, s, 64);
  const int t = threadIdx.x, lane = t % 32, base = t - lane;
  s[t] = x[t];
  __syncwarp();
  y[t] = s[base + (lane + 1) % 32];
  float v = x[t];
  for (int m = 16; m >= 1; m /= 2) v += __shfl_xor_sync(0xffffffffu, v, m);
  if (lane == 0) sums[t / 32] = v;
}

// ---- cp.async ----------------------------------------------------------------------------------
// 32 threads copy 64 chunks of 16 bytes: chunk t in group 0, chunk t + 32 in group 1 (zero-filled
// by odd threads). After wait<1> each thread reads its own chunks into `early` (group 0 is there;
// group 1 may still be in flight: the emulator keeps it poisoned until its wait); after wait<0>
// and a barrier, `out` gets the whole tile.
TK_KERNEL void copies(tk::ptr<const float> src, tk::ptr<float> out, tk::ptr<float> early) {
  TK_SHARED(float, s, 256);
  const int t = threadIdx.x;
  tk::cp_async_16(s + 4 * t, src + 4 * t);
  tk::cp_async_commit();
  tk::cp_async_16(s + 4 * (t + 32), src + 4 * (t + 32), t % 2 == 0);
  tk::cp_async_commit();
  tk::cp_async_wait<1>();
  for (int i = 0; i < 4; ++i) {
    early[4 * t + i] = s[4 * t + i];
    early[128 + 4 * t + i] = s[4 * (t + 32) + i];
  }
  tk::cp_async_wait<0>();
  __syncthreads();
  for (int i = t; i < 256; i += 32) out[i] = s[i];
}
