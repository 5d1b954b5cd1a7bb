// A persistent LSTM step loop (tests/test_cuda_emulator.py, and the emulator's timing figure):
// D = 32 hidden units, B = 16 batch rows, 4 blocks x 128 threads launched cooperatively. Gate row
// 4 u + g is gate g (i, f, z, o) of unit u; each of the 16 warps owns one m16 x n8 tile of the
// 128 x 16 pre-activations and keeps its 16 x 32 slice of R in registers (bf16 A fragments) for
// the whole sequence. Per step: gates = R . y (mma, k = 32 in two k16 steps) + b, grid sync,
// the pointwise update of (c, y) for one (unit, batch) pair per thread, grid sync.
#include "tk_cuda.cuh"

#include <math.h>  // redundant, but a kernel may include it: the emulator's declarations agree with it

namespace step {
constexpr int D = 32, B = 16, ROWS = 4 * D;
TK_DEVICE float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
}  // namespace step

TK_KERNEL void TK_LAUNCH_BOUNDS(128, 1)
lstm_steps(tk::ptr<const tk::bf16> r,    // [4 D][D] row-major: row 4 u + g
           tk::ptr<const float> bias,    // [4 D]
           tk::ptr<tk::bf16> y,          // [B][D] the hidden state exchanged between blocks (in: y0)
           tk::ptr<float> c,             // [B][D] cell state (in: c0, out: final)
           tk::ptr<float> gates,         // [4 D][B] pre-activations of the step
           tk::ptr<float> out,           // [T][B][D] y after every step, fp32
           int steps) {
  using namespace step;
  const int warp = blockIdx.x * 4 + threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, q = lane % 4;
  const int m0 = (warp / 2) * 16, n0 = (warp % 2) * 8;  // this warp's tile of gates
  tk::u32 a[2][4];
  for (int ks = 0; ks < 2; ++ks) {
    const int k0 = ks * 16;
    a[ks][0] = tk::load_pair<tk::bf16>(r + (m0 + g) * D + k0 + 2 * q);
    a[ks][1] = tk::load_pair<tk::bf16>(r + (m0 + g + 8) * D + k0 + 2 * q);
    a[ks][2] = tk::load_pair<tk::bf16>(r + (m0 + g) * D + k0 + 2 * q + 8);
    a[ks][3] = tk::load_pair<tk::bf16>(r + (m0 + g + 8) * D + k0 + 2 * q + 8);
  }
  const int unit = (blockIdx.x * 128 + threadIdx.x) % D, row = (blockIdx.x * 128 + threadIdx.x) / D;
  for (int t = 0; t < steps; ++t) {
    // B operand: B[k][n] = y[n0 + n][k]; b[0] = B[2q..2q+1][g], b[1] = B[2q+8..2q+9][g]
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int ks = 0; ks < 2; ++ks) {
      tk::u32 b[2] = {tk::load_pair<tk::bf16>(y + (n0 + g) * D + ks * 16 + 2 * q),
                      tk::load_pair<tk::bf16>(y + (n0 + g) * D + ks * 16 + 2 * q + 8)};
      tk::mma_m16n8k16_bf16(acc, a[ks], b);
    }
    gates[(m0 + g) * B + n0 + 2 * q] = acc[0] + bias[m0 + g];
    gates[(m0 + g) * B + n0 + 2 * q + 1] = acc[1] + bias[m0 + g];
    gates[(m0 + g + 8) * B + n0 + 2 * q] = acc[2] + bias[m0 + g + 8];
    gates[(m0 + g + 8) * B + n0 + 2 * q + 1] = acc[3] + bias[m0 + g + 8];
    tk::grid_sync();
    const float i = sigmoid(gates[(4 * unit + 0) * B + row]);
    const float f = sigmoid(gates[(4 * unit + 1) * B + row]);
    const float z = tanhf(gates[(4 * unit + 2) * B + row]);
    const float o = sigmoid(gates[(4 * unit + 3) * B + row]);
    const float c_new = f * c[row * D + unit] + i * z;
    const float y_new = o * tanhf(c_new);
    c[row * D + unit] = c_new;
    y[row * D + unit] = tk::from_float<tk::bf16>(y_new);
    out[(t * B + row) * D + unit] = y_new;
    tk::grid_sync();
  }
}
